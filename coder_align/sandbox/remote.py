"""Sending `check_many` to sandbox servers (`coder-align sandbox serve`) instead of this machine.

    export CODER_ALIGN_SANDBOX_URLS=http://sb1:8080,http://sb2:8080   # and CODER_ALIGN_SANDBOX_TOKEN
    check_many(jobs)              # now judged on sb1 and sb2; the same reports as locally

or `configure(SandboxConfig(endpoints=[...]))` (the GRPO stage does this from its
`sandbox:` config group). Jobs go out in batches (one `/check_many` request per batch,
`batch_size` jobs), each to the server with the fewest requests in flight. A batch whose
server fails (refused, reset, timed out, 5xx, a malformed answer) is sent to another
server; a 429 is retried after its Retry-After. A batch that no server could judge comes
back as `unavailable` reports (an infrastructure failure: never a wrong answer, never a
pass) and is counted in `STATS`.

The verdicts are the servers': the client trusts its servers (authenticated by the
token), never the candidate programs. Jobs are validated here first, with the same rules
as a local `check`, so a malformed job fails the same way locally and remotely.
`compile_check` (so `compile_reward`) goes to `/compile_check` one call at a time, with the
same failover. Not routed: `check` and `run` stay local.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import inspect
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import ClassVar

from coder_align.ranges import NON_NEGATIVE, ONE_OR_MORE, POSITIVE
from coder_align.sandbox import languages, local, testcases
from coder_align.sandbox.results import (
    COMPILE_ERROR, MEMORY_EXCEEDED, OK, RUNTIME_ERROR, TIMEOUT, UNAVAILABLE, WRONG_ANSWER, ExecutionResult,
    TestDetail, TestReport,
)

STATUSES = {OK, WRONG_ANSWER, RUNTIME_ERROR, TIMEOUT, MEMORY_EXCEEDED, COMPILE_ERROR, UNAVAILABLE}
URLS_ENV = "CODER_ALIGN_SANDBOX_URLS"
TOKEN_ENV = "CODER_ALIGN_SANDBOX_TOKEN"

# requests, batches retried elsewhere, 429s, reports returned as unavailable, ...
STATS: collections.Counter = collections.Counter()
_stats_lock = threading.Lock()


@dataclass
class SandboxConfig:
    """Where sandboxed code runs: nowhere listed means this machine."""

    endpoints: list[str] = field(default_factory=list)  # e.g. ["http://sb1:8080"]; env CODER_ALIGN_SANDBOX_URLS
    batch_size: int = 16  # jobs per /check_many request
    requests_per_endpoint: int = 4  # concurrent requests in flight per server
    max_attempts: int = 4  # failed tries per batch, each on the least busy server not yet failed for it
    busy_wait: float = 300.0  # seconds a batch may spend waiting out 429s (Retry-After)
    connect_timeout: float = 5.0
    request_timeout: float | None = None  # None: from the jobs' own time limits

    RANGES: ClassVar[dict] = {"batch_size": ONE_OR_MORE, "requests_per_endpoint": ONE_OR_MORE,
                              "max_attempts": ONE_OR_MORE, "busy_wait": NON_NEGATIVE,
                              "connect_timeout": POSITIVE, "request_timeout": POSITIVE}


_configured: SandboxConfig | None = None
_token: str | None = None


def configure(config: SandboxConfig | None, token: str | None = None) -> None:
    """Use these servers for every later `check_many` in this process (None: back to the env).
    The token is never part of a config (configs are saved with every output): pass it here
    or set $CODER_ALIGN_SANDBOX_TOKEN."""
    global _configured, _token
    _configured, _token = config, token


def active_config() -> SandboxConfig | None:
    """The configured servers, else those in $CODER_ALIGN_SANDBOX_URLS, else None (run locally)."""
    if _configured is not None and _configured.endpoints:
        return _configured
    urls = [u for u in os.environ.get(URLS_ENV, "").replace(",", " ").split() if u]
    if not urls:
        return None
    return dataclasses.replace(_configured or SandboxConfig(), endpoints=urls)


def _bearer() -> dict:
    token = _token or os.environ.get(TOKEN_ENV)
    return {"Authorization": f"Bearer {token}"} if token else {}


def _count(key: str, n: int = 1) -> None:
    with _stats_lock:
        STATS[key] += n


# ---- jobs ----------------------------------------------------------------------------------

def _check_params() -> set[str]:
    return set(inspect.signature(local.check).parameters) - {"allow_unsandboxed"}


def validate(job: dict) -> dict:
    """The job as it will be sent, or the error a local `check(**job)` would raise."""
    if not isinstance(job, dict):
        raise TypeError(f"a job must be a dict of check() arguments, got {type(job).__name__}")
    unknown = set(job) - _check_params() - {"allow_unsandboxed"}
    if unknown:
        raise TypeError(f"check() got unexpected keyword argument(s) {sorted(unknown)}")
    for key in ("source", "tests"):
        if key not in job:
            raise TypeError(f"check() missing required argument: '{key}'")
    out = {k: v for k, v in job.items() if k != "allow_unsandboxed"}  # the server's policy decides
    out["language"] = languages.normalise(out.get("language", "python"))
    tests = out["tests"]
    if testcases.is_io_cases(tests):
        for i, case in enumerate(tests):
            if "stdout" not in case:
                raise ValueError(f"tests[{i}] has no 'stdout' key: {sorted(case)}")
    elif out["language"] != "python":
        if not isinstance(tests, str):  # a str: a test program in that language
            raise ValueError(f"{out['language']}: tests must be a test program or a list of {{'stdin', 'stdout'}} cases")
    else:
        testcases.parse_python_tests(tests)
    return out


def _budget(job: dict) -> float:
    """Seconds a server may need for this job once it runs."""
    cases = len(job["tests"]) if testcases.is_io_cases(job["tests"]) else 1
    compile_s = float(job.get("compile_timeout", 30.0)) if job["language"] != "python" else 0.0
    return compile_s + float(job.get("timeout", 10.0)) * cases + 2.0


def report_from_dict(d: dict) -> TestReport:
    details = [TestDetail(bool(x["passed"]), str(x["test"]), x.get("error")) for x in d.get("details") or []]
    report = TestReport(bool(d["passed"]), int(d["n_passed"]), int(d["n_total"]), str(d["status"]),
                        str(d.get("isolation", "host_compare")), details, str(d.get("stdout") or ""),
                        str(d.get("stderr") or ""), float(d.get("duration") or 0.0), d.get("error"))
    if report.status not in STATUSES:
        raise ValueError(f"unknown status {report.status!r}")
    if report.passed != (report.status == OK) or report.n_passed > report.n_total:
        raise ValueError(f"inconsistent report: passed={report.passed} with status {report.status}")
    return report


def unavailable(error: str) -> TestReport:
    return TestReport(False, 0, 0, UNAVAILABLE, error=error)


# ---- servers -------------------------------------------------------------------------------

class _Endpoints:
    """Least-in-flight choice among servers; a server that failed rests (1 s, doubling with
    each failure in a row, at most 30 s) unless no other is left."""

    def __init__(self, urls: list[str]):
        self.urls = [u.rstrip("/") for u in urls]
        self.in_flight = collections.Counter()
        self.resting_until: dict[str, float] = {}
        self.failures_in_a_row = collections.Counter()
        self.lock = threading.Lock()

    def pick(self, exclude: set[str]) -> str | None:
        now = time.monotonic()
        with self.lock:
            fresh = [u for u in self.urls if u not in exclude and self.resting_until.get(u, 0) <= now]
            pool = fresh or [u for u in self.urls if u not in exclude]
            if not pool:
                return None
            low = min(self.in_flight[u] for u in pool)
            url = random.choice([u for u in pool if self.in_flight[u] == low])
            self.in_flight[url] += 1
            return url

    def done(self, url: str, failed: bool) -> None:
        with self.lock:
            self.in_flight[url] -= 1
            if failed:
                self.failures_in_a_row[url] += 1
                rest = min(30.0, 2.0 ** (self.failures_in_a_row[url] - 1))
                self.resting_until[url] = time.monotonic() + rest
            else:
                self.failures_in_a_row[url] = 0


# kept across calls, so that a dead server found in one GRPO step is rested in the next
_ENDPOINTS: dict[tuple[str, ...], _Endpoints] = {}


def _endpoints(urls: list[str]) -> _Endpoints:
    with _stats_lock:
        key = tuple(urls)
        if key not in _ENDPOINTS:
            _ENDPOINTS[key] = _Endpoints(list(urls))
        return _ENDPOINTS[key]


_local = threading.local()


def _session():
    # requests only once a server is called: every stage imports this module for SandboxConfig
    import requests

    if getattr(_local, "session", None) is None:
        _local.session = requests.Session()
    return _local.session


class _Retry(Exception):
    def __init__(self, message: str, wait: float = 0.0, server_failed: bool = True):
        super().__init__(message)
        self.wait, self.server_failed = wait, server_failed


def _post(url: str, path: str, body: dict, parse, config: SandboxConfig, timeout: float):
    """One request; `parse(json)` turns the answer into the result or raises (malformed)."""
    import requests

    try:
        r = _session().post(url + path, json=body, headers=_bearer(), timeout=(config.connect_timeout, timeout))
    except requests.RequestException as e:
        raise _Retry(f"{url}: {type(e).__name__}: {e}") from None
    if r.status_code == 429:
        try:
            wait = float(r.headers.get("Retry-After", "1"))
        except ValueError:
            wait = 1.0
        raise _Retry(f"{url}: busy (429)", wait=min(max(wait, 0.1), 30.0), server_failed=False)
    if r.status_code != 200:
        # 5xx, a timeout, or a 4xx (token, this server's limits): not the candidate's fault,
        # and another server (with other limits) may take it
        raise _Retry(f"{url}: HTTP {r.status_code}: {r.text[:300]}")
    try:
        return parse(r.json())
    except Exception as e:
        raise _Retry(f"{url}: malformed answer ({type(e).__name__}: {e})") from None


class _GaveUp(Exception):
    pass


def _with_failover(path: str, body: dict, parse, endpoints: _Endpoints, config: SandboxConfig, timeout: float):
    """`_post` to the least busy server; on failure to another; 429s waited out. Raises
    _GaveUp (with the last errors) when no server answered."""
    tried: set[str] = set()
    errors: list[str] = []
    failures, busy_until = 0, time.monotonic() + config.busy_wait
    while failures < config.max_attempts:
        url = endpoints.pick(tried)
        if url is None:  # every server failed once for this request: start over after a pause
            tried.clear()
            time.sleep(min(0.5 * failures, 3.0))
            url = endpoints.pick(tried)
        _count("requests")
        try:
            result = _post(url, path, body, parse, config, timeout)
        except _Retry as e:
            endpoints.done(url, e.server_failed)
            errors.append(str(e))
            if e.server_failed:
                failures += 1
                tried.add(url)
                _count("failed_requests")
            else:  # busy: wait as told, for as long as `busy_wait` allows
                _count("busy_429")
                if time.monotonic() + e.wait > busy_until:
                    break
                time.sleep(e.wait)
            continue
        endpoints.done(url, False)
        if failures:
            _count("batches_rescued")
        return result
    raise _GaveUp(f"remote sandbox: no server answered ({failures} failed attempts): " + " | ".join(errors[-3:]))


def _run_batch(jobs: list[dict], endpoints: _Endpoints, config: SandboxConfig) -> list[TestReport]:
    timeout = config.request_timeout or min(sum(_budget(j) for j in jobs) + 30.0, 3600.0)

    def parse(answer):
        reports = [report_from_dict(d) for d in answer["reports"]]
        if len(reports) != len(jobs):
            raise ValueError(f"{len(reports)} reports for {len(jobs)} jobs")
        return reports

    try:
        return _with_failover("/check_many", {"jobs": jobs}, parse, endpoints, config, timeout)
    except _GaveUp as e:
        _count("unavailable_jobs", len(jobs))
        return [unavailable(str(e)) for _ in jobs]


def compile_check(source: str, language: str, import_check: bool, timeout: float,
                  config: SandboxConfig) -> ExecutionResult:
    """`sandbox.compile_check` on a server (/compile_check); `unavailable` if none answers."""
    body = {"source": source, "language": languages.normalise(language), "import_check": bool(import_check),
            "timeout": float(timeout)}

    def parse(d):
        result = ExecutionResult(**{k: d[k] for k in ("status", "exit_code", "stdout", "stderr", "stdout_truncated",
                                                       "stderr_truncated", "duration", "signal")})
        if result.status not in STATUSES:
            raise ValueError(f"unknown status {result.status!r}")
        return result

    try:
        return _with_failover("/compile_check", body, parse, _endpoints(config.endpoints), config,
                              config.request_timeout or timeout + 30.0)
    except _GaveUp as e:
        _count("unavailable_jobs")
        return ExecutionResult(UNAVAILABLE, stderr=str(e))


def check_many(jobs: list[dict], config: SandboxConfig, *, return_exceptions: bool = False) -> list[TestReport]:
    """`sandbox.check_many` on the servers in `config`; reports in the order of `jobs`."""
    reports: list[TestReport | None] = [None] * len(jobs)
    ready: list[tuple[int, dict]] = []
    for i, job in enumerate(jobs):
        try:
            ready.append((i, validate(job)))
        except Exception as e:
            if not return_exceptions:
                raise
            reports[i] = unavailable(f"{type(e).__name__}: {e}")
    batches = [ready[k:k + max(1, config.batch_size)] for k in range(0, len(ready), max(1, config.batch_size))]
    endpoints = _endpoints(config.endpoints)
    threads = max(1, min(len(batches), len(config.endpoints) * config.requests_per_endpoint))
    with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="sandbox-remote") as ex:
        futures = {ex.submit(_run_batch, [j for _, j in batch], endpoints, config): batch for batch in batches}
        for future in concurrent.futures.as_completed(futures):
            batch = futures[future]
            try:
                out = future.result()
            except Exception as e:  # a bug here must still never turn into a verdict
                _count("unavailable_jobs", len(batch))
                out = [unavailable(f"remote sandbox: {type(e).__name__}: {e}")] * len(batch)
            for (i, _), report in zip(batch, out):
                reports[i] = report
    return reports
