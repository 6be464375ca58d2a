"""Sandboxed executions per second per language, on DeepSeek-Coder's multilingual HumanEval.

Each job is one sample as `eval run` judges it: the program of a correct answer (the
hand-written ones in tests/fixtures/multilingual/, and DeepSeek's Python canonical
solutions) with the problem's test program, through `sandbox.check_many`. A compiled
language compiles once per sample and runs once. Python goes through the warm workers.

    python benchmarks/multilingual_throughput.py --repeats 4 --workers 2

Prints one JSON line per language (jobs, seconds, executions/s, per-job median) and a
markdown table. A language whose toolchain is missing is reported unavailable, not timed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import time
from pathlib import Path

from coder_align import sandbox
from coder_align.benchmarks import multilingual
from coder_align.evaluation.tasks import instruct_completion, load_task

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "multilingual"
CODES = ("python", "cpp", "java", "php", "ts", "cs", "sh", "js", "go", "rs")


def jobs_for(code: str) -> list[dict]:
    """One job per correct answer: fixtures for the compiled/interpreted languages, the first
    three canonical solutions for Python."""
    task = load_task(f"humaneval-{code}")
    by_id = {p.task_id: p for p in task.problems}
    if code == "python":
        rows = [json.loads(line) for line in gzip.open(multilingual.data_file("humaneval-python.jsonl.gz"))][:3]
        pairs = [(by_id[r["task_id"]], instruct_completion(by_id[r["task_id"]], f"```python\n{r['prompt']}"
                                                           f"{r['canonical_solution']}```")) for r in rows]
    else:
        fence = multilingual.SETTINGS[code].full_name.lower()
        pairs = []
        for path in sorted((FIXTURES / code).iterdir()):
            if ".stub." not in path.name:
                problem = by_id[path.name.split(".")[0]]
                pairs.append((problem, problem.from_answer(f"```{fence}\n{path.read_text()}```")))
    return [{"source": p.program(c), "tests": p.tests, "language": p.language, "timeout": 30.0} for p, c in pairs]


def measure(code: str, repeats: int, workers: int) -> dict:
    language = multilingual.SETTINGS[code].language
    if not sandbox.toolchain_available(language):
        return {"language": code, "unavailable": f"no toolchain for {language}"}
    jobs = jobs_for(code)
    sandbox.check_many(jobs[:1], workers=1)  # warm: Python workers, file caches, the JIT's first start
    batch = jobs * repeats
    started = time.perf_counter()
    reports = sandbox.check_many(batch, workers=workers)
    seconds = time.perf_counter() - started
    failed = [r.status for r in reports if not r.passed]
    if failed:  # a correct answer that fails means the timing is of the wrong thing
        raise SystemExit(f"{code}: {len(failed)} correct answers failed: {failed[:3]}")
    return {"language": code, "jobs": len(batch), "seconds": round(seconds, 2),
            "executions_per_s": round(len(batch) / seconds, 2),
            "run_median_s": round(statistics.median(r.duration for r in reports), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=4, help="each correct answer this many times")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--languages", default=",".join(CODES))
    args = parser.parse_args()
    rows = []
    for code in args.languages.split(","):
        rows.append(measure(code, args.repeats, args.workers))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nload average {os.getloadavg()[0]:.1f}, workers {args.workers}\n")
    print("| language | jobs | seconds | executions/s | run step median s |\n|---|---|---|---|---|")
    for r in rows:
        if "unavailable" in r:
            print(f"| {r['language']} | - | - | unavailable ({r['unavailable']}) | - |")
        else:
            print(f"| {r['language']} | {r['jobs']} | {r['seconds']} | {r['executions_per_s']} | {r['run_median_s']} |")


if __name__ == "__main__":
    main()
