"""Per-language compile and run steps for everything except Python (which uses warm workers).

Each submission is compiled once (its own time limit, inside a sandbox whose only
writable host directory is the build dir), then every run gets a fresh sandbox with the
build dir read-only at /box. A missing toolchain is status `unavailable` naming the tool.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from coder_align.sandbox import bwrap, seccomp
from coder_align.sandbox.results import (
    COMPILE_ERROR, MEMORY_EXCEEDED, OK, RUNTIME_ERROR, TIMEOUT, UNAVAILABLE, ExecutionResult,
)

ALIASES = {"py": "python", "python3": "python", "c++": "cpp", "js": "javascript", "node": "javascript",
           "golang": "go", "rs": "rust", "sh": "bash", "shell": "bash"}

COMPILE_MEMORY_MB = 4096
NPROC = 128  # JVM and Go runtimes start a dozen threads each; threads count as processes
OOM_MARKERS = ("bad_alloc", "OutOfMemoryError", "out of memory", "Cannot allocate memory",
               "memory allocation of", "MemoryError")


@dataclass
class Language:
    name: str
    source_file: str
    tool: str  # the executable whose absence makes the language unavailable
    compile: list[str] | None  # run in the build dir; None: nothing to compile
    run: list[str]  # {mem} is the memory limit in MB
    env: dict[str, str] = field(default_factory=dict)
    limit_address_space: bool = True  # JVM and V8 reserve far more address space than they use


LANGUAGES = {
    "c": Language("c", "main.c", "gcc", ["gcc", "-O2", "-std=gnu17", "-o", "main", "main.c", "-lm"], ["/box/main"]),
    "cpp": Language("cpp", "main.cpp", "g++", ["g++", "-O2", "-std=c++17", "-o", "main", "main.cpp"], ["/box/main"]),
    "java": Language("java", "Main.java", "javac", ["javac", "-J-Xmx512m", "-encoding", "UTF-8", "{file}"],
                     ["java", "-Xmx{mem}m", "-Xss64m", "-XX:+UseSerialGC", "-cp", "/box", "{main_class}"],
                     limit_address_space=False),
    "javascript": Language("javascript", "main.js", "node", ["node", "--check", "main.js"],
                           ["node", "--max-old-space-size={mem}", "/box/main.js"], limit_address_space=False),
    "go": Language("go", "main.go", "go", ["go", "build", "-o", "main", "main.go"], ["/box/main"],
                   env={"GOCACHE": "/tmp/gocache", "GOPATH": "/tmp/gopath", "GO111MODULE": "off",
                        "CGO_ENABLED": "0"}),
    "rust": Language("rust", "main.rs", "rustc", ["rustc", "-O", "-o", "main", "main.rs"], ["/box/main"]),
    "bash": Language("bash", "main.sh", "bash", ["bash", "-n", "main.sh"], ["bash", "/box/main.sh"]),
}


def normalise(language: str) -> str:
    lang = ALIASES.get(language.lower(), language.lower())
    if lang != "python" and lang not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; known: python, {', '.join(LANGUAGES)}")
    return lang


@lru_cache(maxsize=None)
def find_tool(tool: str) -> tuple[str, list[tuple[str, str]]] | None:
    """(absolute path of the real tool, extra read-only mounts it needs), or None."""
    path = shutil.which(tool) or next(
        (str(p) for p in [Path.home() / ".cargo" / "bin" / tool] if p.exists()), None)
    if path is None:
        return None
    real = os.path.realpath(path)
    if tool == "rustc" and "/.cargo/" in path:
        # a rustup proxy: find the toolchain it stands for and mount only that
        out = subprocess.run([path, "--print", "sysroot"], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            return None
        sysroot = out.stdout.strip()
        return os.path.join(sysroot, "bin", "rustc"), [(sysroot, sysroot)]
    mounts = []
    if not real.startswith("/usr/"):
        prefix = str(Path(real).parents[1])
        mounts.append((prefix, prefix))
    return real, mounts


@lru_cache(maxsize=1)
def _candidate_filter() -> bytes:
    return seccomp.build_filter()


def _status(res: dict, stderr: str) -> str:
    if res["timed_out"] or res["signal"] == 24:  # SIGXCPU: the CPU rlimit
        return TIMEOUT
    if res["exit_code"] == 0:
        return OK
    if any(m in stderr for m in OOM_MARKERS):
        return MEMORY_EXCEEDED
    return RUNTIME_ERROR


def _to_result(res: dict, status: str | None = None) -> ExecutionResult:
    stdout = res["stdout"].decode("utf-8", "replace")
    stderr = res["stderr"].decode("utf-8", "replace")
    if res["sandbox_failed"]:
        status, stderr = UNAVAILABLE, f"sandbox failed to start: {stderr[-2000:]}"
    return ExecutionResult(
        status=status or _status(res, stderr), exit_code=res["exit_code"], stdout=stdout, stderr=stderr,
        stdout_truncated=res["stdout_truncated"], stderr_truncated=res["stderr_truncated"],
        duration=res["duration"], signal=res["signal"],
    )


class Build:
    """One compiled submission: `compile()` once, then `run(stdin)` per case."""

    def __init__(self, source: str, language: str, sandboxed: bool, output_cap: int):
        self.lang = LANGUAGES[language]
        self.sandboxed = sandboxed
        self.output_cap = output_cap
        self.dir = tempfile.mkdtemp(prefix=f"coder_align_{language}_")
        os.chmod(self.dir, 0o755)  # the run step reads it as the sandbox user
        self.vars = {"file": self.lang.source_file, "main_class": "Main"}
        if language == "java":
            m = re.search(r"public\s+(?:final\s+)?class\s+(\w+)", source)
            self.vars["main_class"] = m.group(1) if m else "Main"
            self.vars["file"] = f"{self.vars['main_class']}.java"
        Path(self.dir, self.vars["file"]).write_text(source)
        found = find_tool(self.lang.tool)
        self.missing = None if found else self.lang.tool
        self.tool_path, self.mounts = found or (None, [])

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _argv(self, template: list[str], mem: int) -> list[str]:
        argv = [a.format(mem=mem, **self.vars) for a in template]
        if argv[0] == self.lang.tool:
            argv[0] = self.tool_path
        elif not argv[0].startswith("/"):
            argv[0] = shutil.which(argv[0]) or argv[0]
        return argv

    def _exec(self, argv, *, stdin: bytes, timeout: float, memory_mb: int | None, compiling: bool):
        env = dict(self.lang.env)
        if self.sandboxed:
            if compiling:
                cmd = bwrap.bwrap_command(argv, ro_binds=self.mounts, rw_binds=[(self.dir, "/box")],
                                          env=env, chdir="/box")
            else:
                # a compiled binary does not need its toolchain; an interpreter under /usr
                # is mounted anyway; skip what the sandbox user could not read
                mounts = [m for m in self.mounts if bwrap.readable_by_sandbox_user(m[0])]
                cmd = bwrap.bwrap_command(argv, ro_binds=mounts + [(self.dir, "/box")], env=env)
            # a toolchain only root can read (rustup under /root) compiles as the caller;
            # the program itself always runs as the unprivileged sandbox user
            as_sandbox_user = not compiling or bwrap.readable_by_sandbox_user(self.tool_path)
            if compiling and as_sandbox_user and bwrap.drop_privileges():
                os.chown(self.dir, bwrap.SANDBOX_UID, bwrap.SANDBOX_UID)
            kw = dict(bwrap.popen_user_kwargs(as_sandbox_user), env=bwrap.BWRAP_ENV)
            cwd = None
        else:
            cmd = [a.replace("/box", self.dir) for a in argv]
            kw = {"env": {"PATH": bwrap.PATH_ENV, "HOME": self.dir, "LANG": "C.UTF-8", **env}}
            cwd = self.dir
        if self.sandboxed and shutil.which("prlimit"):
            # set inside the sandbox: there it counts only this sandbox's processes, whereas
            # set on bwrap itself it would also cap every other sandbox of the same host uid
            cmd[cmd.index("--") + 1:cmd.index("--") + 1] = [shutil.which("prlimit"), f"--nproc={NPROC}", "--"]
        preexec = bwrap.limits_preexec(int(timeout) + 1, memory_mb, 256, None)
        # the program, never its compiler, runs under the candidate filter
        program = None if compiling else _candidate_filter()
        return bwrap.supervise(cmd, stdin=stdin, timeout=timeout, output_cap=self.output_cap,
                               seccomp_filter=program, preexec_fn=preexec, cwd=cwd, **kw)

    def compile(self, timeout: float) -> ExecutionResult:
        if self.missing:
            return ExecutionResult(UNAVAILABLE, stderr=f"toolchain not found: `{self.missing}` is not installed")
        if self.lang.compile is None:
            return ExecutionResult(OK)
        res = self._exec(self._argv(self.lang.compile, 0), stdin=b"", timeout=timeout,
                         memory_mb=COMPILE_MEMORY_MB if self.lang.limit_address_space else None,
                         compiling=True)
        if res["timed_out"]:
            return _to_result(res, TIMEOUT)
        return _to_result(res, OK if res["exit_code"] == 0 else COMPILE_ERROR)  # sandbox failure wins

    def run(self, stdin: str, timeout: float, memory_mb: int) -> ExecutionResult:
        argv = self._argv(self.lang.run, memory_mb)
        res = self._exec(argv, stdin=stdin.encode(), timeout=timeout,
                         memory_mb=memory_mb if self.lang.limit_address_space else None, compiling=False)
        return _to_result(res)
