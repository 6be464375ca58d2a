"""Checks a stage runs before it spends minutes loading a model: can the sandbox judge code here?

A stage whose scores come from the sandbox (GRPO's judging rewards, `eval run`) would
otherwise load a model, generate for an hour and report rewards that are all None or a
pass@1 of 0.0 that says nothing about the model. Not here: the sandbox itself
(the rest of `coder_align.sandbox`), which this only calls.
"""

from __future__ import annotations

from coder_align.sandbox import bwrap, local, remote, routing
from coder_align.sandbox.bwrap import SandboxUnavailable


class PreflightError(RuntimeError):
    """The machine cannot do what the stage needs (sandbox missing or failing); says how to fix it."""


INSTALL_HINT = ("install bubblewrap (`make install` does as root; else `sudo apt-get install -y bubblewrap`) "
                "or check that bwrap can create user namespaces here")


def require_sandbox(languages, what: str, hint: str = "") -> None:
    """Raise `PreflightError("<what>: <the problem> (<hint>)")` when `sandbox_problem` finds one."""
    problem = sandbox_problem(languages)
    if problem:
        raise PreflightError(f"{what}: {problem}" + (f" ({hint})" if hint else ""))


def sandbox_problem(languages=("python",), timeout: float = 30.0) -> str | None:
    """Why the sandbox cannot judge code here, or None when a trivial Python check passes
    and every language in `languages` has its toolchain."""
    servers = remote.active_config()
    if servers is not None:  # code is judged on sandbox servers: ask them, not this machine
        job = {"source": "def f():\n    return 1\n", "tests": ["assert f() == 1"], "timeout": timeout}
        report = routing.check_many([job], return_exceptions=True)[0]
        if not report.passed:
            return (f"the sandbox servers {', '.join(servers.endpoints)} did not judge a trivial Python check "
                    f"('{report.status}': {(report.error or '').strip()[-300:]})")
        return None
    if bwrap.find_bwrap() is None:
        return f"bubblewrap (`bwrap`) is not installed, so code cannot be run isolated; {INSTALL_HINT}"
    try:
        report = local.check("def f():\n    return 1\n", ["assert f() == 1"], timeout=timeout)
    except (SandboxUnavailable, OSError) as e:
        return f"{type(e).__name__}: {e}; {INSTALL_HINT}"
    if not report.passed:
        detail = (report.error or "").strip().splitlines()
        return (f"a trivial Python check came back '{report.status}'"
                + (f" ({detail[-1][:300]})" if detail else "") + f"; {INSTALL_HINT}")
    missing = []
    for language in sorted({str(lang).lower() for lang in languages} - {"python", "py", "python3"}):
        try:
            if not local.toolchain_available(language):
                missing.append(language)
        except (KeyError, ValueError):
            missing.append(f"{language} (not a sandbox language)")
    if missing:
        return f"no toolchain for {', '.join(missing)}: code in it would be judged 'unavailable'"
    return None
