"""The sandbox server's queue (`Scheduler`) and its metrics in Prometheus' text format."""

from __future__ import annotations

import collections
import concurrent.futures
import math
import threading
import time

from coder_align.sandbox.server.config import ServeConfig


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
                    "connections_closed": {k.split(":", 1)[1]: v for k, v in self.counters.items()
                                           if k.startswith("closed:")},
                    "uptime_s": round(time.time() - self.started, 1)}

    def count_request(self, path: str, status: int) -> None:
        with self.lock:
            self.counters[f"requests:{path} {status}"] += 1

    def count_closed_connection(self, reason: str) -> None:
        """A connection closed by the server's rules (connections.py): a deadline, made room, refused."""
        with self.lock:
            self.counters[f"closed:{reason}"] += 1


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
    lines.append(f"# TYPE {p}connections_closed_total counter")
    for reason, n in sorted(snap["connections_closed"].items()):
        lines.append(f'{p}connections_closed_total{{reason="{reason}"}} {n}')
    return "\n".join(lines) + "\n"
