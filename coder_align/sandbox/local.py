"""Running and judging code on this machine: `run`, `check`, `compile_check`, `check_many`.

Python jobs go to the warm workers (`pool.py`), other languages are compiled and run one
sandbox at a time (`languages.py`); the verdict is decided here, from what the sandbox
sends back (`testcases.py`, `hostcheck.py`). Not here: choosing sandbox servers over this
machine (`routing.py`, `remote.py`), and the isolation itself (`bwrap.py`, `seccomp.py`,
`cgroups.py`, `worker.py`).
"""

from __future__ import annotations

import base64
import concurrent.futures
import os
import threading
import warnings

from coder_align.sandbox import bwrap, codec, harness, languages, testcases
from coder_align.sandbox.pool import get_pool
from coder_align.sandbox.results import (
    COMPILE_ERROR, MEMORY_EXCEEDED, OK, RUNTIME_ERROR, TIMEOUT, UNAVAILABLE, WRONG_ANSWER,
    ExecutionResult, TestDetail, TestReport,
)

OUTPUT_CAP = 1 << 20
FSIZE_MB = 64
PY_NPROC = 64
_warned = threading.Event()


def use_bwrap(allow_unsandboxed: bool) -> bool:
    """Whether jobs run in bubblewrap: yes where it is installed; else SandboxUnavailable,
    or with `allow_unsandboxed` no (warned once per process)."""
    # through the module, so that a test that takes bwrap away (patching bwrap.find_bwrap) is obeyed here
    if bwrap.find_bwrap():
        return True
    if not allow_unsandboxed:
        bwrap.require_bwrap()  # raises, naming the package
    if not _warned.is_set():
        _warned.set()
        warnings.warn(
            "bubblewrap is not installed: running model code WITHOUT a sandbox (rlimits and a "
            "process group only; it can read your files and use the network)", RuntimeWarning, 2)
    return False


def _py_job(mode: str, source: str, stdin: str, timeout: float, memory_mb: int, sandboxed: bool) -> dict:
    return {"mode": mode, "source": source, "stdin": stdin, "timeout": float(timeout),
            "memory_mb": int(memory_mb), "fsize_mb": FSIZE_MB, "output_cap": OUTPUT_CAP,
            "nproc": PY_NPROC if sandboxed else None}


def _decode_stream(part) -> tuple[str, bool]:
    if not part:
        return "", False
    return base64.b64decode(part["b64"]).decode("utf-8", "replace"), bool(part["truncated"])


def _py_result(report: dict) -> ExecutionResult:
    stdout, out_trunc = _decode_stream(report.get("stdout"))
    stderr, err_trunc = _decode_stream(report.get("stderr"))
    code, sig = report.get("exit_code"), report.get("signal")
    if report.get("infra_error"):
        status, stderr = UNAVAILABLE, stderr + "\n[sandbox] " + report["infra_error"]
    elif report.get("oom_killed"):  # the job's memory cgroup hit memory_mb
        status, stderr = MEMORY_EXCEEDED, stderr + "\n[sandbox] killed at the memory limit"
    elif report.get("worker_died"):
        # only the candidate can kill its own worker mid-job
        status, stderr = RUNTIME_ERROR, stderr + "\n[sandbox] worker killed during the job"
    elif report.get("timed_out") or sig == 24:  # SIGXCPU: CPU rlimit
        status = TIMEOUT
    elif code == harness.EXIT_COMPILE:
        status = COMPILE_ERROR
    elif code == harness.EXIT_MEMORY or stderr.rstrip().endswith("MemoryError"):
        status = MEMORY_EXCEEDED
    elif code == 0:
        status = OK
    else:
        status = RUNTIME_ERROR
    return ExecutionResult(status, code, stdout, stderr, out_trunc, err_trunc,
                           float(report.get("duration", 0.0)), sig)


def run(source: str, language: str = "python", stdin: str = "", timeout: float = 10.0,
        memory_mb: int = 1024, *, allow_unsandboxed: bool = False,
        compile_timeout: float = 30.0) -> ExecutionResult:
    """Compile (if needed) and run `source` once with `stdin`; never raises for the code's faults."""
    language = languages.normalise(language)
    sandboxed = use_bwrap(allow_unsandboxed)
    if language == "python":
        report = get_pool(sandboxed).execute(_py_job("run", source, stdin, timeout, memory_mb, sandboxed), None)
        return _py_result(report)
    build = languages.Build(source, language, sandboxed, OUTPUT_CAP)
    try:
        compiled = build.compile(compile_timeout)
        if compiled.status != OK:
            return compiled if compiled.status != TIMEOUT else ExecutionResult(
                COMPILE_ERROR, stderr="compilation timed out", duration=compiled.duration)
        return build.run(stdin, timeout, memory_mb)
    finally:
        build.close()


def compile_check(source: str, language: str = "python", *, import_check: bool = False,
                  timeout: float = 30.0, allow_unsandboxed: bool = False) -> ExecutionResult:
    """Does it compile, here? Python: syntax only, or with `import_check` also run its top level."""
    language = languages.normalise(language)
    sandboxed = use_bwrap(allow_unsandboxed)
    if language == "python":
        mode = "import" if import_check else "compile"
        return _py_result(get_pool(sandboxed).execute(_py_job(mode, source, "", timeout, 1024, sandboxed), None))
    build = languages.Build(source, language, sandboxed, OUTPUT_CAP)
    try:
        result = build.compile(timeout)
        return result if result.status != TIMEOUT else ExecutionResult(COMPILE_ERROR, stderr="compilation timed out")
    finally:
        build.close()


def check(source: str, tests, language: str = "python", timeout: float = 10.0, memory_mb: int = 1024,
          *, float_tolerance: float | None = None, compile_timeout: float = 30.0,
          allow_unsandboxed: bool = False, strict: bool = True) -> TestReport:
    """Judge `source` against `tests`: a list of assert strings (MBPP), a test program
    (HumanEval: `def check(candidate): ...` plus a call), or `[{"stdin", "stdout"}, ...]`;
    in another language, cases or a test program in it (`languages.check_program`: exit status).

    `timeout` covers the whole run (all asserts) for Python tests, and each case for
    stdin/stdout cases. `strict` (Python tests): a non-literal object the candidate returns
    fails any truth test (`assert is_prime(7)`), since its truthiness is the candidate's word.
    """
    language = languages.normalise(language)
    sandboxed = use_bwrap(allow_unsandboxed)
    if testcases.is_io_cases(tests):
        return _check_io(source, tests, language, timeout, memory_mb, float_tolerance, compile_timeout, sandboxed)
    if language != "python":
        if isinstance(tests, str):  # a test program in the candidate's language (MultiPL-E's form)
            return languages.check_program(source, tests, language, timeout, memory_mb, compile_timeout, sandboxed,
                                           OUTPUT_CAP)
        raise ValueError(f"{language}: tests must be a test program or a list of {{'stdin', 'stdout'}} cases")
    return _check_python(source, testcases.parse_python_tests(tests), timeout, memory_mb, sandboxed, strict)


def _check_python(source, spec: testcases.PythonTests, timeout, memory_mb, sandboxed, strict) -> TestReport:
    if spec.setup:  # an asserts list's set-up (MBPP's `import math`) runs in the candidate's module
        # too, as in MBPP's own one-module program: else `math.sqrt` unimported fails here and passes there
        source = source + "\n" + spec.setup + "\n"
    job = _py_job("check", source, "", timeout, memory_mb, sandboxed)
    calls = testcases.encoded_calls(spec)
    if calls is not None:  # no test code to run: the candidate process makes the calls
        report = get_pool(sandboxed).execute(dict(job, calls=calls), None)
        results, setup_error = testcases.results_of_calls(spec.tests, report.get("calls"), strict), None
    else:
        payload = {"setup": spec.setup, "entry_points": spec.entry_points, "strict": bool(strict),
                   "tests": [{"kind": "value", "code": t.expr} if isinstance(t, testcases.ValueTest)
                             else {"kind": "stmt", "code": t.source} for t in spec.tests]}
        report = get_pool(sandboxed).execute(job, payload)
        verdict = report.get("verdict")
        results = verdict.get("results") if isinstance(verdict, dict) and verdict.get("id") == report.get("id") else None
        setup_error = verdict.get("setup_error") if isinstance(verdict, dict) else None
    execution = _py_result(report)
    isolation = ("host_compare" if calls is not None or all(isinstance(t, testcases.ValueTest) for t in spec.tests)
                 else "split_process")
    if not isinstance(results, list) or len(results) != len(spec.tests):
        results = [None] * len(spec.tests)
    details = [_judge(test, result, execution) for test, result in zip(spec.tests, results)]
    n_passed = sum(d.passed for d in details)
    passed = n_passed == len(details)
    if passed:
        status = OK
    elif execution.status == UNAVAILABLE or setup_error:
        status = UNAVAILABLE if execution.status == UNAVAILABLE else RUNTIME_ERROR
    elif None in results:
        status = execution.status if execution.status != OK else RUNTIME_ERROR
    elif any(d.error and d.error.startswith("MemoryError") for d in details):
        status = MEMORY_EXCEEDED
    elif any(d.error and not d.error.startswith(("AssertionError", "wrong value")) for d in details):
        status = RUNTIME_ERROR
    else:
        status = WRONG_ANSWER
    error = setup_error or (None if passed else (execution.stderr[-2000:] or None))
    return TestReport(passed, n_passed, len(details), status, isolation, details,
                      execution.stdout, execution.stderr, execution.duration, error)


def _judge(test, result, execution: ExecutionResult) -> TestDetail:
    """One test's detail. Whatever the candidate's value makes go wrong here (it is the
    candidate's value: a malformed one, one too big to print) fails the test, never the check."""
    try:
        return _judge_value(test, result, execution)
    except Exception as e:
        return TestDetail(False, test.source, f"unjudgeable value: {type(e).__name__}")


def _judge_value(test, result, execution: ExecutionResult) -> TestDetail:
    text = test.source
    if result is None:
        return TestDetail(False, text, f"no result ({execution.status})")
    if "error" in result:
        return TestDetail(False, text, str(result["error"]))
    if isinstance(test, testcases.ValueTest):
        try:
            actual = codec.decode(result["value"])
        except Exception as e:
            return TestDetail(False, text, f"malformed value: {e}")
        if testcases.values_equal(actual, test.expected):
            return TestDetail(True, text)
        return TestDetail(False, text, f"wrong value: got {_short(actual)}")
    return TestDetail(bool(result.get("ok") is True), text, None if result.get("ok") is True else "no pass")


def _short(value) -> str:
    return testcases.short_repr(value)


def _check_io(source, cases, language, timeout, memory_mb, tol, compile_timeout, sandboxed) -> TestReport:
    for i, case in enumerate(cases):
        if "stdout" not in case:
            raise ValueError(f"tests[{i}] has no 'stdout' key: {sorted(case)}")
    build = None
    if language == "python":
        compiled = _py_result(get_pool(sandboxed).execute(
            _py_job("compile", source, "", compile_timeout, 1024, sandboxed), None))

        def run_case(stdin):
            job = _py_job("run", source, stdin, timeout, memory_mb, sandboxed)
            return _py_result(get_pool(sandboxed).execute(job, None))
    else:
        build = languages.Build(source, language, sandboxed, OUTPUT_CAP)
        compiled = build.compile(compile_timeout)

        def run_case(stdin):
            return build.run(stdin, timeout, memory_mb)
    try:
        if compiled.status != OK:
            status = UNAVAILABLE if compiled.status == UNAVAILABLE else COMPILE_ERROR
            return TestReport(False, 0, len(cases), status, "host_compare",
                              error=(compiled.stderr or "compilation timed out")[-4000:])
        details, statuses, last, total = [], [], None, 0.0
        for case in cases:
            last = run_case(str(case.get("stdin", "")))
            total += last.duration
            ok = last.status == OK and testcases.outputs_match(last.stdout, str(case["stdout"]), tol)
            err = None if ok else (f"{last.status}: {last.stderr[-500:]}" if last.status != OK else "wrong output")
            details.append(TestDetail(ok, f"stdin={str(case.get('stdin', ''))[:100]!r}", err))
            statuses.append(last.status)
        n_passed = sum(d.passed for d in details)
        failed = [s for s, d in zip(statuses, details) if not d.passed]
        status = OK if not failed else next((s for s in failed if s != OK), WRONG_ANSWER)
        return TestReport(n_passed == len(cases), n_passed, len(cases), status, "host_compare", details,
                          last.stdout if last else "", last.stderr if last else "",
                          total, None)
    finally:
        if build is not None:
            build.close()


def check_many(jobs: list[dict], workers: int | None = None, *, return_exceptions: bool = False) -> list[TestReport]:
    """`check(**job)` for every job, here, concurrently; reports in the order of `jobs`.
    With `return_exceptions`, a job that raises yields an `unavailable` report instead."""
    workers = workers or os.cpu_count() or 1
    get_pool(bwrap.find_bwrap() is not None, min_workers=workers)  # let the shared pool grow to `workers`

    def one(job):
        try:
            return check(**job)
        except Exception as e:
            if not return_exceptions:
                raise
            return TestReport(False, 0, 0, UNAVAILABLE, error=f"{type(e).__name__}: {e}")

    if len(jobs) <= 1:
        return [one(job) for job in jobs]
    with concurrent.futures.ThreadPoolExecutor(min(workers, len(jobs))) as ex:
        return list(ex.map(one, jobs))


def toolchain_available(language: str) -> bool:
    """Whether `language` can run here (used by tests and the CLI's help)."""
    language = languages.normalise(language)
    if language == "python":
        return True
    return languages.find_tool(languages.LANGUAGES[language].tool) is not None

