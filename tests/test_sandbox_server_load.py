"""Load: client processes x mixed jobs (good, wrong, timeout, hostile) against 2 local servers,
one killed mid-run. Nothing is lost (every job answered once, by a report that is its own),
nothing survives, the servers' memory stays bounded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("fastapi")

from _server_util import REPO, descendants, rss_mb, sandbox_server  # noqa: E402
from coder_align.sandbox import find_bwrap  # noqa: E402

pytestmark = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap not installed")


def expected(kind: str, passed: bool, status: str) -> bool:
    if kind == "good":
        return passed and status == "ok"
    if kind == "wrong":
        return not passed and status == "wrong_answer"
    if kind == "timeout":
        return not passed and status == "timeout"
    if kind in ("hostile:daemon", "hostile:kill_worker"):
        return passed and status == "ok"  # correct code that also misbehaves: the sandbox survives it
    return not passed and status != "unavailable"  # the other hostile ones never reach the tests


def load(clients: int, jobs: int, kill_after: int, time_limit: float):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("CODER_ALIGN_SANDBOX_URLS", None)
    peak = {}
    with sandbox_server("--workers", "2") as a, sandbox_server("--workers", "2") as b:
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                for s in (a, b):
                    if s.proc.poll() is None:
                        try:
                            peak[s.url] = max(peak.get(s.url, 0.0), rss_mb(s.proc.pid))
                        except OSError:
                            pass
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        procs = [subprocess.Popen([sys.executable, str(REPO / "tests" / "_load_client.py"), str(c), str(jobs),
                                   a.url, b.url], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for c in range(clients)]
        try:
            while True:  # kill server a once it has done some of the work
                done = sum(a.get("/metrics", params={"format": "json"}).json()["executions"].values())
                if done >= kill_after or time.monotonic() - t0 > time_limit / 2:
                    break
                time.sleep(0.1)
            killed_at = done
            a.kill()
            outs = [p.communicate(timeout=max(10.0, time_limit - (time.monotonic() - t0))) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            stop.set()
        elapsed = time.monotonic() - t0
        b_metrics = b.get("/metrics", params={"format": "json"}).json()
    assert a.leftovers == [] and a.survivors == [] and b.survivors == []
    results, stats = [], []
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        lines = [json.loads(line) for line in out.splitlines()]
        stats.append(lines[-1]["stats"])
        results.append(lines[:-1])
    return results, stats, killed_at, peak, elapsed, b_metrics


def check_load(clients, jobs, kill_after, time_limit):
    results, stats, killed_at, peak, elapsed, b_metrics = load(clients, jobs, kill_after, time_limit)
    assert killed_at >= 1  # the kill happened mid-run, with work done on a
    for rows in results:
        assert [r["i"] for r in rows] == list(range(jobs))  # every job answered, once, in order
        wrong = [r for r in rows if not expected(r["kind"], r["passed"], r["status"])]
        assert wrong == [], wrong[:5]
        assert all(r["own_output"] for r in rows if r["kind"] in ("good", "wrong"))
    assert sum(s.get("unavailable_jobs", 0) for s in stats) == 0
    assert sum(s.get("batches_rescued", 0) for s in stats) >= 1, stats  # a's batches went to b
    assert max(peak.values()) < 400, peak  # MB, the server process itself
    return elapsed, stats, peak, b_metrics


@pytest.mark.timeout(240)
def test_small_load_with_a_server_killed_mid_run():
    check_load(clients=2, jobs=60, kill_after=20, time_limit=180)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_load_4_clients_x_500_jobs_one_server_killed():
    elapsed, stats, peak, b_metrics = check_load(clients=4, jobs=500, kill_after=300, time_limit=840)
    print(f"\n4 x 500 jobs in {elapsed:.0f} s; peak server RSS {peak}; client stats {stats}; "
          f"surviving server: {b_metrics['executions']}")
