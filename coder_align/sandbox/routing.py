"""Where `check_many` and `compile_check` are judged: on sandbox servers when some are configured, else here.

The one place that chooses between `remote.py` (the servers of `remote.configure` or
$CODER_ALIGN_SANDBOX_URLS) and `local.py` (this machine). `local=True` keeps a call on this
machine (a sandbox server judges its own requests so). Not routed: `run` and `check`, which
always run here (`local.py`).
"""

from __future__ import annotations

# `local` is also the routed functions' keyword: the module goes by another name here
from coder_align.sandbox import languages, remote
from coder_align.sandbox import local as on_this_machine
from coder_align.sandbox.results import ExecutionResult, TestReport


def compile_check(source: str, language: str = "python", *, import_check: bool = False,
                  timeout: float = 30.0, allow_unsandboxed: bool = False, local: bool = False) -> ExecutionResult:
    """Does it compile? Python: syntax only, or with `import_check` also run its top level.
    On sandbox servers when they are configured and not `local` (see `check_many`)."""
    language = languages.normalise(language)
    config = None if local else remote.active_config()
    if config is not None:
        return remote.compile_check(source, language, import_check, timeout, config)
    return on_this_machine.compile_check(source, language, import_check=import_check, timeout=timeout,
                                         allow_unsandboxed=allow_unsandboxed)


def check_many(jobs: list[dict], workers: int | None = None, *, return_exceptions: bool = False,
               local: bool = False) -> list[TestReport]:
    """`check(**job)` for every job, concurrently; reports in the order of `jobs`.

    With `return_exceptions`, a job whose arguments are unusable or whose sandbox cannot
    start yields an `unavailable` report carrying the error instead of raising.
    When sandbox servers are configured ($CODER_ALIGN_SANDBOX_URLS or `remote.configure`)
    and not `local`, the jobs are judged there instead (`remote.py`); a job no server could
    judge is `unavailable`.
    """
    config = None if local else remote.active_config()
    if config is not None:
        return remote.check_many(jobs, config, return_exceptions=return_exceptions)
    return on_this_machine.check_many(jobs, workers, return_exceptions=return_exceptions)
