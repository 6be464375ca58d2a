"""Per-language compile and run steps for everything except Python (which uses warm workers).

Each submission is compiled once (its own time limit, inside a sandbox whose only
writable host directory is the build dir), then every run gets a fresh sandbox with the
build dir read-only at /box. A missing toolchain is status `unavailable` naming the tool.

`check_program` judges a test program in the candidate's language (MultiPL-E's form:
source, then tests that assert and exit non-zero on a failure), by its exit status.
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
    COMPILE_ERROR, MEMORY_EXCEEDED, OK, RUNTIME_ERROR, TIMEOUT, UNAVAILABLE, ExecutionResult, TestDetail, TestReport,
)

ALIASES = {"py": "python", "python3": "python", "c++": "cpp", "js": "javascript", "node": "javascript",
           "golang": "go", "rs": "rust", "sh": "bash", "shell": "bash", "ts": "typescript",
           "cs": "csharp", "c#": "csharp"}

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
    # a run that exits 0 but wrote one of these to stderr failed (Mono's Debug.Assert only prints)
    fail_markers: tuple[str, ...] = ()
    # test programs (`check_program`): other steps where the plain ones would not test
    # (Java ignores `assert` without -ea; Go's tests need `go test`)
    program_file: str | None = None
    program_compile: list[str] | None = None
    program_run: list[str] | None = None
    host_config: tuple[str, ...] = ()  # read-only mounts the toolchain needs beyond /usr (Mono's /etc/mono)


# Mono logs that seccomp refused it a thread priority (harmless) on stdout, where it would
# spoil stdin/stdout cases; its log goes to the sandbox's private /tmp instead
MONO_LOG = "/tmp/mono.log"

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
    # tsc type-checks (a type error is a compile error, as in MultiPL-E) and writes main.js
    "typescript": Language("typescript", "main.ts", "tsc", ["tsc", "--target", "es2020", "main.ts"],
                           ["node", "--max-old-space-size={mem}", "/box/main.js"], limit_address_space=False),
    "php": Language("php", "main.php", "php", ["php", "-l", "main.php"],
                    ["php", "-d", "memory_limit={mem}M", "/box/main.php"]),
    # Mono: MultiPL-E's C# tests use Debug.Assert, live only with DEBUG defined; a failed one
    # prints to the trace listener and carries on, hence the marker
    "csharp": Language("csharp", "main.cs", "mcs",
                       ["mcs", "-d:DEBUG", "-r:System.Numerics.dll", "-out:main.exe", "main.cs"],
                       ["mono", "/box/main.exe"],
                       env={"MONO_TRACE_LISTENER": "Console.Error", "MONO_LOG_DEST": MONO_LOG},
                       limit_address_space=False, fail_markers=("System.Diagnostics.DefaultTraceListener.Fail",),
                       host_config=("/etc/mono",)),
}
LANGUAGES["java"].program_run = ["java", "-ea", "-Xmx{mem}m", "-Xss64m", "-XX:+UseSerialGC", "-cp", "/box", "{main_class}"]
# no -O2 for test programs, as MultiPL-E: with it GCC takes a function that falls off its end
# (a model's comment-only body) as unreachable and may drop the asserts that call it: exit 0
LANGUAGES["cpp"].program_compile = ["g++", "-std=c++17", "-o", "main", "main.cpp"]
LANGUAGES["go"].program_file = "main_test.go"
LANGUAGES["go"].program_compile = ["go", "test", "-c", "-o", "main", "main_test.go"]


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


def java_main_class(source: str) -> str:
    """The class to run: the public one (it names the file), else the one that declares
    `main` (MultiPL-E's `class Problem`), else Main.

    >>> java_main_class("class Problem {\\n public static void main(String[] a) {}\\n}")
    'Problem'
    """
    public = re.search(r"public\s+(?:final\s+)?class\s+(\w+)", source)
    if public:
        return public.group(1)
    main = re.search(r"static\s+void\s+main\s*\(", source)
    if main:
        declared = re.findall(r"\bclass\s+(\w+)", source[:main.start()])
        if declared:
            return declared[-1]
    return "Main"


class Build:
    """One compiled submission: `compile()` once, then `run(stdin)` per case."""

    def __init__(self, source: str, language: str, sandboxed: bool, output_cap: int, program: bool = False):
        self.lang = LANGUAGES[language]
        self.sandboxed = sandboxed
        self.output_cap = output_cap
        # a test program may need other steps than a stdin/stdout program (Language.program_*)
        self.steps = (self.lang.program_compile or self.lang.compile if program else self.lang.compile,
                      self.lang.program_run or self.lang.run if program else self.lang.run)
        self.dir = tempfile.mkdtemp(prefix=f"coder_align_{language}_")
        os.chmod(self.dir, 0o755)  # the run step reads it as the sandbox user
        self.vars = {"file": (self.lang.program_file if program else None) or self.lang.source_file,
                     "main_class": "Main"}
        if language == "java":
            self.vars["main_class"] = java_main_class(source)
            self.vars["file"] = f"{self.vars['main_class']}.java"
        Path(self.dir, self.vars["file"]).write_text(source)
        found = find_tool(self.lang.tool)
        self.missing = None if found else self.lang.tool
        self.tool_path, self.mounts = found or (None, [])
        self.mounts = self.mounts + [(p, p) for p in self.lang.host_config if os.path.isdir(p)]

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
        if self.steps[0] is None:
            return ExecutionResult(OK)
        res = self._exec(self._argv(self.steps[0], 0), stdin=b"", timeout=timeout,
                         memory_mb=COMPILE_MEMORY_MB if self.lang.limit_address_space else None,
                         compiling=True)
        if res["timed_out"]:
            return _to_result(res, TIMEOUT)
        result = _to_result(res, OK if res["exit_code"] == 0 else COMPILE_ERROR)  # sandbox failure wins
        if result.status == COMPILE_ERROR and not result.stderr.strip():
            result.stderr = result.stdout  # tsc reports its errors on stdout
        return result

    def run(self, stdin: str, timeout: float, memory_mb: int) -> ExecutionResult:
        argv = self._argv(self.steps[1], memory_mb)
        res = self._exec(argv, stdin=stdin.encode(), timeout=timeout,
                         memory_mb=memory_mb if self.lang.limit_address_space else None, compiling=False)
        result = _to_result(res)
        if result.status == OK and any(m in result.stderr for m in self.lang.fail_markers):
            result.status = RUNTIME_ERROR
        return result


def check_program(source: str, tests: str, language: str, timeout: float, memory_mb: int, compile_timeout: float,
                  sandboxed: bool, output_cap: int) -> TestReport:
    """Judge `source` followed by `tests`, a test program in the same language (MultiPL-E's
    HumanEval: asserts in a `main`, a test function...), by the program's exit status.

    Unlike Python tests and stdin/stdout cases, the verdict is the candidate process's own
    word: code that exits 0 before the tests run passes. Fine for benchmarks of honest
    models (it is how MultiPL-E and DeepSeek-Coder judge); for training on rewards prefer
    stdin/stdout cases, whose outputs are compared outside the sandbox.
    """
    build = Build(source.rstrip("\n") + "\n" + tests, language, sandboxed, output_cap, program=True)
    try:
        compiled = build.compile(compile_timeout)
        if compiled.status != OK:
            status = UNAVAILABLE if compiled.status == UNAVAILABLE else COMPILE_ERROR
            return TestReport(False, 0, 1, status, "exit_status",
                              error=(compiled.stderr or compiled.stdout or "compilation timed out")[-4000:],
                              duration=compiled.duration)
        result = build.run("", timeout, memory_mb)
        passed = result.status == OK
        error = None if passed else f"{result.status} (exit {result.exit_code}): {(result.stderr or result.stdout)[-2000:]}"
        return TestReport(passed, int(passed), 1, result.status, "exit_status",
                          [TestDetail(passed, "test program", None if passed else result.status)],
                          result.stdout, result.stderr, result.duration, error)
    finally:
        build.close()
