"""What a request to the sandbox server may ask for, how its jobs run, and SandboxFusion's answer format.

Validation applies the same rules as a local `check` (language, test format) plus the
server's limits (`ServeConfig`), and raises `BadRequest` (a 4xx) naming the field. The
jobs run exactly as a local `check`/`run`/`compile_check` would, on the scheduler's
threads; a failure of the machine, or an exception of the checker on one job, is that
job's `unavailable`, never an exception (so never its whole batch's). Not here: the queue
(`scheduler.py`) and HTTP (`app.py`).
"""

from __future__ import annotations

import inspect
import logging
import math
import os
from typing import Any

from coder_align.sandbox import harness, languages, local, testcases
from coder_align.sandbox.bwrap import SandboxUnavailable
from coder_align.sandbox.results import (
    COMPILE_ERROR, OK, TIMEOUT, UNAVAILABLE, ExecutionResult, TestReport,
)
from coder_align.sandbox.server.config import ServeConfig

log = logging.getLogger("coder_align.sandbox.server")

# SandboxFusion's language names -> ours; the rest of its list is refused with 400
SF_LANGUAGES = {"python": "python", "cpp": "cpp", "nodejs": "javascript", "go": "go", "java": "java",
                "bash": "bash", "rust": "rust", "c": "c"}
COMPILED = {"c", "cpp", "java", "go", "rust"}  # report a compile_result, as SandboxFusion does


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# ---- what a job may ask for ----------------------------------------------------------------

_CHECK_PARAMS = [p for p in inspect.signature(local.check).parameters if p != "allow_unsandboxed"]


def validate_check_job(job: Any, config: ServeConfig, where: str = "job") -> dict:
    """A `check` job as the server will run it, or BadRequest naming the field. The same rules
    as a local `check` (language, test format), plus this server's limits."""
    if not isinstance(job, dict):
        raise BadRequest(f"{where} must be an object with 'source' and 'tests', got {type(job).__name__}")
    unknown = sorted(set(job) - set(_CHECK_PARAMS))
    if unknown:
        raise BadRequest(f"{where}: unknown field(s) {unknown}; allowed: {_CHECK_PARAMS}")
    for key in ("source", "tests"):
        if key not in job:
            raise BadRequest(f"{where}: missing field '{key}'")
    if not isinstance(job["source"], str):
        raise BadRequest(f"{where}.source must be a string")
    job = dict(job)
    try:
        job["language"] = languages.normalise(str(job.get("language", "python")))
        tests = job["tests"]
        if testcases.is_io_cases(tests):
            if len(tests) > config.max_cases_per_job:
                raise BadRequest(f"{where}: {len(tests)} stdin/stdout cases; this server takes at most "
                                 f"{config.max_cases_per_job} per job")
            for i, case in enumerate(tests):
                if "stdout" not in case:
                    raise ValueError(f"tests[{i}] has no 'stdout' key")
                if not all(isinstance(case.get(k, ""), str) for k in ("stdin", "stdout")):
                    raise ValueError(f"tests[{i}]: 'stdin' and 'stdout' must be strings")
        elif job["language"] != "python":
            if not isinstance(tests, str):  # a str: a test program in that language
                raise ValueError(f"{job['language']}: tests must be a test program or a list of "
                                 "{'stdin', 'stdout'} cases")
        elif not isinstance(tests, (str, list)):
            raise ValueError("tests must be a list of asserts, a test program, or stdin/stdout cases")
        else:
            testcases.parse_python_tests(tests)
    except SyntaxError as e:
        raise BadRequest(f"{where}.tests is not valid Python (syntax error: {e})") from None
    except (ValueError, TypeError) as e:
        raise BadRequest(f"{where}: {e}") from None
    except (RecursionError, MemoryError):  # the parser's own limits: `assert ----...1`, nested 10**5 deep
        raise BadRequest(f"{where}.tests is nested too deeply to parse") from None
    _number(job, "timeout", 10.0, config.max_timeout, where)
    _number(job, "compile_timeout", 30.0, config.max_compile_timeout, where)
    _number(job, "memory_mb", 1024, config.max_memory_mb, where, integer=True)
    if job.get("float_tolerance") is not None:
        _number(job, "float_tolerance", None, math.inf, where)
    if "strict" in job and not isinstance(job["strict"], bool):
        raise BadRequest(f"{where}.strict must be true or false")
    return job


def _number(job: dict, key: str, default, maximum, where: str, integer: bool = False) -> None:
    value = job.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        raise BadRequest(f"{where}.{key} must be a {'whole ' if integer else ''}number, got {value!r}")
    if not 0 < value <= maximum:
        raise BadRequest(f"{where}.{key}={value} is outside this server's limits (0, {maximum}]")
    job[key] = int(value) if integer else float(value)


def validate_compile_check(body: Any, config: ServeConfig) -> dict:
    if not isinstance(body, dict):
        raise BadRequest("request body must be {\"source\", \"language\", \"import_check\", \"timeout\"}")
    unknown = sorted(set(body) - {"source", "language", "import_check", "timeout"})
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown}; allowed: import_check, language, source, timeout")
    if not isinstance(body.get("source"), str):
        raise BadRequest("field 'source' is required and must be a string")
    try:
        job = {"source": body["source"], "language": languages.normalise(str(body.get("language", "python"))),
               "import_check": body.get("import_check", False)}
    except ValueError as e:
        raise BadRequest(str(e)) from None
    if not isinstance(job["import_check"], bool):
        raise BadRequest("import_check must be true or false")
    job["timeout"] = body.get("timeout", 30.0)
    _number(job, "timeout", None, config.max_compile_timeout, "request")
    return job


def run_compile_check(job: dict, allow_unsandboxed: bool) -> ExecutionResult:
    try:
        return local.compile_check(job["source"], job["language"], import_check=job["import_check"],
                                   timeout=job["timeout"], allow_unsandboxed=allow_unsandboxed)
    except (SandboxUnavailable, OSError, RuntimeError) as e:
        return ExecutionResult(UNAVAILABLE, stderr=f"sandbox: {type(e).__name__}: {e}")
    except Exception as e:  # a bug met by this job: no verdict, and no 500 (see run_check)
        log.exception("compile_check raised; the job is reported unavailable")
        return ExecutionResult(UNAVAILABLE, stderr=f"sandbox: {type(e).__name__}: {str(e)[:500]}")


def validate_run_code(body: Any, config: ServeConfig) -> dict:
    """SandboxFusion's RunCodeRequest, checked against this server's limits."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object (SandboxFusion RunCodeRequest)")
    known = {"code", "language", "compile_timeout", "run_timeout", "memory_limit_MB", "stdin", "files", "fetch_files"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown}; allowed: {sorted(known)}")
    if not isinstance(body.get("code"), str):
        raise BadRequest("field 'code' is required and must be a string", 422)
    lang = body.get("language")
    if not isinstance(lang, str):
        raise BadRequest("field 'language' is required and must be a string", 422)
    if lang not in SF_LANGUAGES:
        raise BadRequest(f"language {lang!r} is not supported by this server; supported: {sorted(SF_LANGUAGES)}")
    stdin = body.get("stdin")
    if stdin is not None and not isinstance(stdin, str):
        raise BadRequest("field 'stdin' must be a string or null", 422)
    files = body.get("files") or {}
    if not isinstance(files, dict) or any(v is not None for v in files.values()):
        raise BadRequest("'files' is not supported by this server (send the program as 'code' only)")
    if body.get("fetch_files"):
        raise BadRequest("'fetch_files' is not supported by this server")
    job = {"code": body["code"], "language": SF_LANGUAGES[lang], "stdin": stdin or "",
           "run_timeout": body.get("run_timeout", 10), "compile_timeout": body.get("compile_timeout", 10)}
    mem = body.get("memory_limit_MB", -1)
    if isinstance(mem, (int, float)) and not isinstance(mem, bool) and mem <= 0:
        mem = config.default_memory_mb  # SandboxFusion's -1, "no limit": here always a limit
    job["memory_mb"] = mem
    _number(job, "run_timeout", None, config.max_timeout, "request")
    _number(job, "compile_timeout", None, config.max_compile_timeout, "request")
    _number(job, "memory_mb", None, config.max_memory_mb, "request.memory_limit_MB", integer=True)
    return job


# ---- running jobs (blocking; called on the executor's threads) ------------------------------

def run_check(job: dict, allow_unsandboxed: bool, max_output: int = 64 << 10) -> TestReport:
    try:
        report = local.check(**job, allow_unsandboxed=allow_unsandboxed)
    except (SandboxUnavailable, OSError, RuntimeError) as e:  # the machine, not the candidate
        return TestReport(False, 0, 0, UNAVAILABLE, error=f"sandbox: {type(e).__name__}: {e}")
    except Exception as e:
        # a bug of the checker met by this job: no verdict for it, and none lost for the
        # rest of its batch (a 500 would make its whole /check_many request unavailable)
        log.exception("check raised on one job; it is reported unavailable")
        return TestReport(False, 0, 0, UNAVAILABLE, error=f"sandbox: the checker failed on this job: "
                                                           f"{type(e).__name__}: {str(e)[:500]}")
    # a batch of flooding candidates must not make a response of hundreds of MB
    for name in ("stdout", "stderr"):
        text = getattr(report, name)
        if len(text) > max_output:
            setattr(report, name, text[:max_output] + f"\n[{len(text) - max_output} more characters cut by the server]")
    return report


def run_program(job: dict, allow_unsandboxed: bool) -> tuple[ExecutionResult | None, ExecutionResult | None]:
    """(compile result or None, run result or None), as SandboxFusion reports one /run_code."""
    lang = job["language"]
    try:
        if lang not in COMPILED:
            result = local.run(job["code"], lang, job["stdin"], job["run_timeout"], job["memory_mb"],
                               allow_unsandboxed=allow_unsandboxed, compile_timeout=job["compile_timeout"])
            return None, result
        build = languages.Build(job["code"], lang, local.use_bwrap(allow_unsandboxed), local.OUTPUT_CAP)
        try:
            compiled = build.compile(job["compile_timeout"])
            if compiled.status != OK:
                return compiled, None
            return compiled, build.run(job["stdin"], job["run_timeout"], job["memory_mb"])
        finally:
            build.close()
    except (SandboxUnavailable, OSError, RuntimeError) as e:
        return None, ExecutionResult(UNAVAILABLE, stderr=f"sandbox: {type(e).__name__}: {e}")
    except Exception as e:  # a bug met by this job: no verdict, and no 500 (see run_check)
        log.exception("run raised; the job is reported unavailable")
        return None, ExecutionResult(UNAVAILABLE, stderr=f"sandbox: {type(e).__name__}: {str(e)[:500]}")


def run_code_job(job: dict, allow_unsandboxed: bool) -> dict:
    return run_code_response(*run_program(job, allow_unsandboxed), python=job["language"] == "python")


def command_result(result: ExecutionResult | None, compiling: bool = False, python: bool = False) -> dict | None:
    """ExecutionResult -> SandboxFusion's CommandRunResult."""
    if result is None:
        return None
    if result.status == UNAVAILABLE:
        status, code = "Error", None
    elif result.status == TIMEOUT:
        status, code = "TimeLimitExceeded", None
    else:
        status = "Finished"
        if result.exit_code is not None:
            code = result.exit_code
        elif result.signal:
            code = -result.signal  # what Python's subprocess (and so SandboxFusion) reports
        else:
            code = 0 if result.status == OK else 1
        if python and code in (harness.EXIT_COMPILE, harness.EXIT_MEMORY):
            code = 1  # SyntaxError, MemoryError: CPython exits 1 (the worker's 97 and 98 are internal)
        if result.status != OK and code == 0:
            code = 1  # a failure must never read as success
    return {"status": status, "execution_time": round(result.duration, 6), "return_code": code,
            "stdout": result.stdout, "stderr": result.stderr}


def run_code_response(compiled, ran, python: bool = False) -> dict:
    results = [r for r in (command_result(compiled, True), command_result(ran, python=python)) if r is not None]
    status, message = "Success", ""
    if any(r["status"] == "Error" for r in results):
        status = "SandboxError"
        message = next(r["stderr"] for r in results if r["status"] == "Error")[-2000:]
    elif any(r["status"] == "TimeLimitExceeded" or r["return_code"] != 0 for r in results):
        status = "Failed"
    verdict = (ran or compiled).status if (ran or compiled) else UNAVAILABLE
    if compiled is not None and compiled.status != OK and compiled.status != UNAVAILABLE:
        verdict = COMPILE_ERROR
    return {"status": status, "message": message, "compile_result": command_result(compiled, True),
            "run_result": command_result(ran, python=python), "executor_pod_name": os.environ.get("MY_POD_NAME"),
            "files": {}, "coder_align_status": verdict}
