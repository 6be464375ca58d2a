"""The sandbox over HTTP: `coder-align sandbox serve`, one machine of a sandbox fleet.

    coder-align sandbox serve --host 127.0.0.1 --port 8080 --workers 8
    CODER_ALIGN_SANDBOX_TOKEN=... coder-align sandbox serve --host 0.0.0.0 --port 8080

Endpoints:
- `POST /run_code`: SandboxFusion's request and response (its status words: `Success`,
  `Failed`, `SandboxError`; per command `Finished`, `TimeLimitExceeded`, `Error`), so
  SandboxFusion's own client and verl's sandbox_fusion reward use this server unchanged.
- `POST /check`, `POST /check_many`: `sandbox.check` on this machine; the verdict (a
  `TestReport`) is decided here, on the trusted side, exactly as a local `check` decides it.
- `POST /compile_check`: `sandbox.compile_check` (an `ExecutionResult`).
- `GET /health`, `GET /metrics` (Prometheus text; `?format=json` for JSON).

What it adds to the local sandbox: a bearer token (required for any bind other than
loopback), a request size cap, per-field limits (timeouts, memory, jobs per request), a
bounded queue (a request that does not fit gets 429 with Retry-After, never unbounded
memory), and cancelling a disconnected client's queued jobs. Every bad request gets a 4xx
with a message; an infrastructure failure inside a job is that job's `unavailable`
(SandboxError for /run_code), never an HTTP 500.

Not here: isolation (that is the sandbox's, unchanged: each job runs exactly as a local
`check`/`run` would), TLS (terminate it in front, see the README's fleet sketch), and
SandboxFusion's `files`/`fetch_files` (refused with 400) and `/run_jupyter` or dataset APIs.
"""

# no `from __future__ import annotations`: FastAPI reads the handlers' annotations at runtime
import asyncio
import collections
import concurrent.futures
import dataclasses
import hmac
import inspect
import ipaddress
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

from coder_align.sandbox import OUTPUT_CAP, check, compile_check, harness, languages, run, testcases
from coder_align.sandbox.bwrap import SandboxUnavailable, find_bwrap
from coder_align.sandbox.results import (
    COMPILE_ERROR, OK, TIMEOUT, UNAVAILABLE, ExecutionResult, TestReport,
)

log = logging.getLogger("coder_align.sandbox.server")
TOKEN_ENV = "CODER_ALIGN_SANDBOX_TOKEN"
# SandboxFusion's language names -> ours; the rest of its list is refused with 400
SF_LANGUAGES = {"python": "python", "cpp": "cpp", "nodejs": "javascript", "go": "go", "java": "java",
                "bash": "bash", "rust": "rust", "c": "c"}
COMPILED = {"c", "cpp", "java", "go", "rust"}  # report a compile_result, as SandboxFusion does


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 0  # concurrent executions; 0: CPU count
    queue_size: int = 0  # jobs waiting beyond the running ones; 0: 64 per worker
    token: str | None = None  # required on every request when set; required to bind off loopback
    max_request_mb: float = 16.0
    max_jobs_per_request: int = 512
    max_cases_per_job: int = 256  # stdin/stdout cases: each is a run of up to `timeout`
    max_output_kb: int = 64  # of a /check report's stdout and of its stderr (the verdict is decided first)
    max_timeout: float = 60.0  # seconds, per run (or per stdin case)
    max_compile_timeout: float = 120.0
    default_memory_mb: int = 1024  # SandboxFusion's memory_limit_MB=-1 ("no limit") gets this
    max_memory_mb: int = 4096
    max_connections: int = 1024
    allow_unsandboxed: bool = False

    def resolved(self) -> "ServeConfig":
        workers = self.workers or os.cpu_count() or 1
        return dataclasses.replace(self, workers=workers, queue_size=self.queue_size or 64 * workers,
                                   token=self.token or os.environ.get(TOKEN_ENV) or None)


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---- what a job may ask for ----------------------------------------------------------------

_CHECK_PARAMS = [p for p in inspect.signature(check).parameters if p != "allow_unsandboxed"]


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
            raise ValueError(f"{job['language']}: tests must be a list of {{'stdin', 'stdout'}} cases")
        elif not isinstance(tests, (str, list)):
            raise ValueError("tests must be a list of asserts, a test program, or stdin/stdout cases")
        else:
            testcases.parse_python_tests(tests)
    except SyntaxError as e:
        raise BadRequest(f"{where}.tests is not valid Python (syntax error: {e})") from None
    except (ValueError, TypeError) as e:
        raise BadRequest(f"{where}: {e}") from None
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
        return compile_check(job["source"], job["language"], import_check=job["import_check"],
                             timeout=job["timeout"], allow_unsandboxed=allow_unsandboxed, local=True)
    except (SandboxUnavailable, OSError, RuntimeError) as e:
        return ExecutionResult(UNAVAILABLE, stderr=f"sandbox: {type(e).__name__}: {e}")


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
        report = check(**job, allow_unsandboxed=allow_unsandboxed)
    except (SandboxUnavailable, OSError, RuntimeError) as e:  # the machine, not the candidate
        return TestReport(False, 0, 0, UNAVAILABLE, error=f"sandbox: {type(e).__name__}: {e}")
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
            result = run(job["code"], lang, job["stdin"], job["run_timeout"], job["memory_mb"],
                         allow_unsandboxed=allow_unsandboxed, compile_timeout=job["compile_timeout"])
            return None, result
        from coder_align.sandbox import _sandboxed

        build = languages.Build(job["code"], lang, _sandboxed(allow_unsandboxed), OUTPUT_CAP)
        try:
            compiled = build.compile(job["compile_timeout"])
            if compiled.status != OK:
                return compiled, None
            return compiled, build.run(job["stdin"], job["run_timeout"], job["memory_mb"])
        finally:
            build.close()
    except (SandboxUnavailable, OSError, RuntimeError) as e:
        return None, ExecutionResult(UNAVAILABLE, stderr=f"sandbox: {type(e).__name__}: {e}")


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


# ---- queue, metrics ------------------------------------------------------------------------

class Scheduler:
    """A fixed number of executing threads and a bounded count of admitted jobs.

    A request is admitted only if all its jobs fit (`workers + queue_size`); otherwise the
    caller answers 429. Queued jobs are plain futures, so cancelling them (a client that went
    away) removes them before they run; a job already running finishes (it is bounded by its
    own timeout)."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.capacity = config.workers + config.queue_size
        self.pool = concurrent.futures.ThreadPoolExecutor(config.workers, thread_name_prefix="sandbox-exec")
        self.lock = threading.Lock()
        self.admitted = 0
        self.running = 0
        self.done_times: collections.deque[float] = collections.deque(maxlen=100_000)
        self.counters: collections.Counter = collections.Counter()
        self.started = time.time()

    def admit(self, n: int) -> bool:
        with self.lock:
            if self.admitted + n > self.capacity:
                self.counters["rejected_jobs"] += n
                return False
            self.admitted += n
            return True

    def retry_after(self) -> int:
        rate = self.rate(30.0)
        queued = max(self.admitted - self.running, 1)
        return max(1, min(60, math.ceil(queued / rate))) if rate > 0 else 2

    def rate(self, window: float = 60.0) -> float:
        now = time.monotonic()
        with self.lock:
            recent = sum(1 for t in self.done_times if t > now - window)
            age = min(window, now - (self.done_times[0] if self.done_times else now))
        return recent / max(age, 1.0) if recent else 0.0

    def submit(self, kind: str, fn, *args) -> concurrent.futures.Future:
        def work():
            with self.lock:
                self.running += 1
            try:
                result = fn(*args)
                status = result.get("coder_align_status") if isinstance(result, dict) else result.status
                with self.lock:
                    self.counters[f"executions:{kind}:{status}"] += 1
                return result
            finally:
                with self.lock:
                    self.running -= 1
                    self.done_times.append(time.monotonic())

        future = self.pool.submit(work)

        def release(f):
            with self.lock:
                self.admitted -= 1
                if f.cancelled():
                    self.counters["cancelled_jobs"] += 1

        future.add_done_callback(release)
        return future

    def snapshot(self) -> dict:
        rate = self.rate(60.0)
        with self.lock:
            executions = {k.split(":", 1)[1]: v for k, v in self.counters.items() if k.startswith("executions:")}
            return {"workers": self.config.workers, "capacity": self.capacity, "running": self.running,
                    "queue_depth": self.admitted - self.running, "executions_per_second_60s": round(rate, 3),
                    "executions": executions, "rejected_jobs": self.counters["rejected_jobs"],
                    "cancelled_jobs": self.counters["cancelled_jobs"],
                    "requests": {k.split(":", 1)[1]: v for k, v in self.counters.items() if k.startswith("requests:")},
                    "uptime_s": round(time.time() - self.started, 1)}

    def count_request(self, path: str, status: int) -> None:
        with self.lock:
            self.counters[f"requests:{path} {status}"] += 1


def prometheus(snap: dict) -> str:
    p = "coder_align_sandbox_"
    lines = [f"# TYPE {p}queue_depth gauge", f"{p}queue_depth {snap['queue_depth']}",
             f"# TYPE {p}running gauge", f"{p}running {snap['running']}",
             f"# TYPE {p}workers gauge", f"{p}workers {snap['workers']}",
             f"# TYPE {p}executions_per_second gauge", f"{p}executions_per_second {snap['executions_per_second_60s']}",
             f"# TYPE {p}executions_total counter"]
    for key, n in sorted(snap["executions"].items()):
        endpoint, status = key.split(":", 1)
        lines.append(f'{p}executions_total{{endpoint="{endpoint}",status="{status}"}} {n}')
    lines += [f"# TYPE {p}rejected_jobs_total counter", f"{p}rejected_jobs_total {snap['rejected_jobs']}",
              f"# TYPE {p}cancelled_jobs_total counter", f"{p}cancelled_jobs_total {snap['cancelled_jobs']}",
              f"# TYPE {p}requests_total counter"]
    for key, n in sorted(snap["requests"].items()):
        path, code = key.rsplit(" ", 1)
        lines.append(f'{p}requests_total{{path="{path}",code="{code}"}} {n}')
    return "\n".join(lines) + "\n"


# ---- the ASGI app --------------------------------------------------------------------------

class _Guard:
    """Outermost ASGI layer: token, body size (read here, bounded, then replayed), request
    counts. Runs before FastAPI parses anything, so neither a missing token nor a huge body
    costs more than its first bytes."""

    def __init__(self, app, config: ServeConfig, scheduler: Scheduler):
        self.app, self.config, self.scheduler = app, config, scheduler
        self.max_bytes = int(config.max_request_mb * (1 << 20))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        status_seen = []

        async def counting_send(message):
            if message["type"] == "http.response.start":
                status_seen.append(message["status"])
            await send(message)

        try:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            if self.config.token and not _token_ok(headers.get("authorization", ""), self.config.token):
                return await _send_json(counting_send, 401, {"error": "missing or wrong bearer token: send "
                                        "'Authorization: Bearer <token>' (the server's --token)"},
                                        [(b"www-authenticate", b"Bearer")])
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
                return await _send_json(counting_send, 413, {"error": f"request body over this server's limit "
                                        f"of {self.config.max_request_mb:g} MB"})
            body, more = bytearray(), True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > self.max_bytes:
                    return await _send_json(counting_send, 413, {"error": f"request body over this server's "
                                            f"limit of {self.config.max_request_mb:g} MB"})
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": bytes(body), "more_body": False}
                return await receive()

            await self.app(scope, replay, counting_send)
        finally:
            known = path if path in ("/run_code", "/check", "/check_many", "/compile_check", "/health",
                                     "/metrics") else "other"
            self.scheduler.count_request(known, status_seen[0] if status_seen else 499)


def _token_ok(header: str, token: str) -> bool:
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def _send_json(send, status: int, obj: dict, extra_headers=()) -> None:
    body = json.dumps(obj).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra_headers]})
    await send({"type": "http.response.body", "body": body})


def create_app(config: ServeConfig | None = None):
    """The ASGI application (FastAPI inside a token/size guard)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    config = (config or ServeConfig()).resolved()
    scheduler = Scheduler(config)
    app = FastAPI(title="coder_align sandbox", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.scheduler = scheduler
    app.state.config = config
    max_output = config.max_output_kb << 10

    @app.exception_handler(BadRequest)
    async def bad_request(_request, exc: BadRequest):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, exc: RequestValidationError):
        return JSONResponse({"error": "invalid request body: " + "; ".join(
            f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(_request, exc: Exception):  # never a traceback to the client
        log.exception("unexpected error")
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server log"}, status_code=500)

    async def body_json(request: Request):
        raw = await request.body()
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BadRequest(f"request body is not valid JSON: {e}") from None

    async def execute(request: Request, kind: str, calls: list) -> list:
        """Run `calls` [(fn, args)] through the queue; 429 if they do not fit; cancel the
        queued ones if the client disconnects."""
        if not scheduler.admit(len(calls)):
            return JSONResponse({"error": f"server busy: queue full ({scheduler.capacity} jobs); retry later"},
                                status_code=429, headers={"Retry-After": str(scheduler.retry_after())})
        futures = [scheduler.submit(kind, fn, *args) for fn, args in calls]
        gathered = asyncio.ensure_future(asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))
        while True:
            done, _ = await asyncio.wait({gathered}, timeout=0.25)
            if done:
                return gathered.result()
            if await request.is_disconnected():
                for f in futures:
                    f.cancel()
                gathered.cancel()
                return JSONResponse({"error": "client disconnected"}, status_code=499)

    @app.post("/run_code")
    async def run_code(request: Request):
        job = validate_run_code(await body_json(request), config)
        out = await execute(request, "run_code", [(run_code_job, (job, config.allow_unsandboxed))])
        return out[0] if isinstance(out, list) else out

    @app.post("/check")
    async def check_one(request: Request):
        job = validate_check_job(await body_json(request), config)
        out = await execute(request, "check", [(run_check, (job, config.allow_unsandboxed, max_output))])
        return out[0].to_dict() if isinstance(out, list) else out

    @app.post("/check_many")
    async def check_many(request: Request):
        body = await body_json(request)
        jobs = body.get("jobs") if isinstance(body, dict) else None
        if not isinstance(jobs, list):
            raise BadRequest("request body must be {\"jobs\": [{\"source\", \"tests\", ...}, ...]}")
        if len(jobs) > config.max_jobs_per_request or len(jobs) > scheduler.capacity:
            raise BadRequest(f"{len(jobs)} jobs in one request; this server takes at most "
                             f"{min(config.max_jobs_per_request, scheduler.capacity)}: split the batch", 413)
        jobs = [validate_check_job(j, config, f"jobs[{i}]") for i, j in enumerate(jobs)]
        out = await execute(request, "check_many", [(run_check, (j, config.allow_unsandboxed, max_output))
                                                    for j in jobs])
        return {"reports": [r.to_dict() for r in out]} if isinstance(out, list) else out

    @app.post("/compile_check")
    async def compile_check_one(request: Request):
        job = validate_compile_check(await body_json(request), config)
        out = await execute(request, "compile_check", [(run_compile_check, (job, config.allow_unsandboxed))])
        return out[0].to_dict() if isinstance(out, list) else out

    @app.get("/health")
    async def health():
        ok = config.allow_unsandboxed or find_bwrap() is not None
        snap = scheduler.snapshot()
        body = {"status": "ok" if ok else "unavailable", "sandbox": "bubblewrap" if find_bwrap() else "none",
                "workers": snap["workers"], "running": snap["running"], "queue_depth": snap["queue_depth"],
                "capacity": snap["capacity"]}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics(format: Optional[str] = None):
        snap = scheduler.snapshot()
        if format == "json":
            return snap
        return PlainTextResponse(prometheus(snap), media_type="text/plain; version=0.0.4")

    return _Guard(app, config, scheduler)


def warm_up(config: ServeConfig) -> None:
    """Start the warm workers and prove the sandbox runs here, before taking requests."""
    from coder_align.sandbox.pool import get_pool

    get_pool(find_bwrap() is not None, min_workers=config.workers)
    with concurrent.futures.ThreadPoolExecutor(config.workers) as ex:
        reports = list(ex.map(lambda _: check("def f(): return 1", ["assert f() == 1"],
                                              allow_unsandboxed=config.allow_unsandboxed),
                              range(config.workers)))
    bad = [r for r in reports if not r.passed]
    if bad:
        raise SandboxUnavailable(f"the sandbox does not work on this machine: {bad[0].status}: {bad[0].error}")


def serve(config: ServeConfig) -> int:
    import uvicorn

    config = config.resolved()
    if not is_loopback(config.host) and not config.token:
        raise SystemExit(f"coder-align sandbox serve: binding {config.host} exposes code execution to the "
                         f"network; pass --token (or set {TOKEN_ENV}) so that every request must carry it")
    if not config.allow_unsandboxed and find_bwrap() is None:
        raise SystemExit("coder-align sandbox serve: bubblewrap (`bwrap`) is not installed; install the "
                         "`bubblewrap` package (or pass --allow-unsandboxed for a trusted test setup)")
    warm_up(config)
    app = create_app(config)
    log.warning("sandbox server on %s:%d, %d workers, queue %d%s", config.host, config.port, config.workers,
                config.queue_size, ", token required" if config.token else "")
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False,
                limit_concurrency=config.max_connections, timeout_keep_alive=30)
    return 0
