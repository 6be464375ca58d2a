"""How a sandbox server is set up (`coder-align sandbox serve`'s options): address, token, limits."""

import dataclasses
import os
from dataclasses import dataclass

TOKEN_ENV = "CODER_ALIGN_SANDBOX_TOKEN"


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
    max_connections: int = 1024  # open at once; those without an authorised request in progress make room
    header_timeout: float = 10.0  # seconds for a request's headers, from its first byte (a new connection's opening)
    body_timeout: float = 60.0  # seconds for a request's body, from its headers
    allow_unsandboxed: bool = False

    def resolved(self) -> "ServeConfig":
        workers = self.workers or os.cpu_count() or 1
        return dataclasses.replace(self, workers=workers, queue_size=self.queue_size or 64 * workers,
                                   token=self.token or os.environ.get(TOKEN_ENV) or None)

