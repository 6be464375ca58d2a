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
memory), cancelling a disconnected client's queued jobs, and deadlines for a request's
headers and body with connection slots that only authorised requests in progress can keep
(`connections.py`). Every bad request gets a 4xx with a message; an infrastructure failure
inside a job, or an error of the checker on it, is that job's `unavailable` (SandboxError
for /run_code), never an HTTP 500 and never its batch's.

Not here: isolation (that is the sandbox's, unchanged: each job runs exactly as a local
`check`/`run` would), TLS (terminate it in front, see the README's fleet sketch), and
SandboxFusion's `files`/`fetch_files` (refused with 400) and `/run_jupyter` or dataset APIs.
"""

from coder_align.sandbox.server.app import create_app, serve
from coder_align.sandbox.server.config import TOKEN_ENV, ServeConfig

__all__ = ["ServeConfig", "TOKEN_ENV", "create_app", "serve"]
