"""The sandbox server's HTTP side: the ASGI app (a token/size guard around FastAPI) and `serve`.

FastAPI and uvicorn are imported only inside `create_app` and `serve`, so that importing
this module (the CLI does, for its options) stays light. Not here: what a request may ask
for and how its jobs run (`jobs.py`), the queue (`scheduler.py`).
"""

# no `from __future__ import annotations`: FastAPI reads the handlers' annotations at runtime
import asyncio
import concurrent.futures
import ipaddress
import json
import logging
from typing import Optional

from coder_align.sandbox import local, pool
from coder_align.sandbox.bwrap import SandboxUnavailable, find_bwrap
from coder_align.sandbox.server.config import TOKEN_ENV, ServeConfig
from coder_align.sandbox.server.connections import protocol_class, token_ok
from coder_align.sandbox.server.jobs import (
    BadRequest, run_check, run_code_job, run_compile_check, validate_check_job, validate_compile_check,
    validate_run_code,
)
from coder_align.sandbox.server.scheduler import Scheduler, prometheus

log = logging.getLogger("coder_align.sandbox.server")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
            if self.config.token and not token_ok(headers.get("authorization", ""), self.config.token):
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


async def _send_json(send, status: int, obj: dict, extra_headers=()) -> None:
    body = json.dumps(obj).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra_headers]})
    await send({"type": "http.response.body", "body": body})


def create_app(config: ServeConfig | None = None):
    """The ASGI application (FastAPI inside a token/size guard)."""
    # heavy, and needed only to serve: see the module's docstring
    from fastapi import FastAPI

    config = (config or ServeConfig()).resolved()
    scheduler = Scheduler(config)
    app = FastAPI(title="coder_align sandbox", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.scheduler = scheduler
    app.state.config = config
    _add_error_handlers(app)
    _add_job_routes(app, config, scheduler)
    _add_status_routes(app, config, scheduler)
    return _Guard(app, config, scheduler)


def _add_error_handlers(app) -> None:
    """Every error is JSON `{"error": ...}`; a bad request says what was wrong, nothing shows a traceback."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

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


async def _body_json(request):
    raw = await request.body()
    try:
        return json.loads(raw)
    except RecursionError:
        raise BadRequest("request body is JSON nested too deeply for this server") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an int of more than 4300 digits
        raise BadRequest(f"request body is not valid JSON: {e}") from None


async def _execute(request, scheduler: Scheduler, kind: str, calls: list):
    """Run `calls` [(fn, args)] through the queue; 429 if they do not fit; cancel the
    queued ones if the client disconnects. The results, or the response to send instead."""
    from fastapi.responses import JSONResponse

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


def _add_job_routes(app, config: ServeConfig, scheduler: Scheduler) -> None:
    """/run_code, /check, /check_many, /compile_check: validated, queued, run as a local call would."""
    from fastapi import Request

    max_output = config.max_output_kb << 10

    @app.post("/run_code")
    async def run_code(request: Request):
        job = validate_run_code(await _body_json(request), config)
        out = await _execute(request, scheduler, "run_code", [(run_code_job, (job, config.allow_unsandboxed))])
        return out[0] if isinstance(out, list) else out

    @app.post("/check")
    async def check_one(request: Request):
        job = validate_check_job(await _body_json(request), config)
        out = await _execute(request, scheduler, "check", [(run_check, (job, config.allow_unsandboxed, max_output))])
        return out[0].to_dict() if isinstance(out, list) else out

    @app.post("/check_many")
    async def check_many(request: Request):
        body = await _body_json(request)
        jobs = body.get("jobs") if isinstance(body, dict) else None
        if not isinstance(jobs, list):
            raise BadRequest("request body must be {\"jobs\": [{\"source\", \"tests\", ...}, ...]}")
        if len(jobs) > config.max_jobs_per_request or len(jobs) > scheduler.capacity:
            raise BadRequest(f"{len(jobs)} jobs in one request; this server takes at most "
                             f"{min(config.max_jobs_per_request, scheduler.capacity)}: split the batch", 413)
        jobs = [validate_check_job(j, config, f"jobs[{i}]") for i, j in enumerate(jobs)]
        out = await _execute(request, scheduler, "check_many",
                             [(run_check, (j, config.allow_unsandboxed, max_output)) for j in jobs])
        return {"reports": [r.to_dict() for r in out]} if isinstance(out, list) else out

    @app.post("/compile_check")
    async def compile_check_one(request: Request):
        job = validate_compile_check(await _body_json(request), config)
        out = await _execute(request, scheduler, "compile_check",
                             [(run_compile_check, (job, config.allow_unsandboxed))])
        return out[0].to_dict() if isinstance(out, list) else out


def _add_status_routes(app, config: ServeConfig, scheduler: Scheduler) -> None:
    """/health (503 when the sandbox cannot run here) and /metrics (Prometheus text, or JSON)."""
    from fastapi.responses import JSONResponse, PlainTextResponse

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


def warm_up(config: ServeConfig) -> None:
    """Start the warm workers and prove the sandbox runs here, before taking requests."""
    pool.get_pool(find_bwrap() is not None, min_workers=config.workers)
    with concurrent.futures.ThreadPoolExecutor(config.workers) as ex:
        reports = list(ex.map(lambda _: local.check("def f(): return 1", ["assert f() == 1"],
                                                    allow_unsandboxed=config.allow_unsandboxed),
                              range(config.workers)))
    bad = [r for r in reports if not r.passed]
    if bad:
        raise SandboxUnavailable(f"the sandbox does not work on this machine: {bad[0].status}: {bad[0].error}")


def serve(config: ServeConfig) -> int:
    # heavy, and needed only to serve: see the module's docstring
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
    # not uvicorn's limit_concurrency: it counts idle and half-sent connections (connections.py)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False,
                http=protocol_class(config, app.scheduler.count_closed_connection), ws="none",
                timeout_keep_alive=30)
    return 0
