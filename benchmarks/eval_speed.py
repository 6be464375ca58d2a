"""Generated tokens per second of `coder-align eval run`: this tree against a baseline revision.

    python benchmarks/eval_speed.py --baseline 6eb50cc --limit 24 --repeats 1

Runs the same command (HumanEval + MBPP test in instruct mode, greedy, the embedded model,
first `--limit` problems of each) with each tree's code, alternating the trees over the
repeats, and prints generated tokens/s (tokens counted by re-tokenizing each distinct
response), wall seconds of generation, their ratios, and how many responses are identical.
The baseline is checked out with `git worktree` into a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_eval(tree: Path, out: Path, limit: int | None, extra: list[str]) -> dict:
    command = [sys.executable, "-m", "coder_align.cli", "eval", "run", "--config", str(ROOT / "configs/eval/instruct.yaml"),
               f"output_dir={out}", *extra]
    if limit:
        command.append(f"data.max_rows={limit}")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    shared = ROOT.parent / "shared" / "data"  # the baseline tree lives elsewhere: same benchmark files
    if shared.is_dir():
        env.setdefault("CODER_ALIGN_DATA", str(shared))
    env.pop("OMP_NUM_THREADS", None)  # each tree picks its own thread settings
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    summary = json.loads((out / "summary.json").read_text())
    return {"wall": wall, "tasks": summary["tasks"], "out": out}


def count_tokens(out: Path, tasks: list[str]) -> tuple[int, dict[str, list[str]]]:
    from coder_align.models import load_tokenizer
    from coder_align.run_dir import read_run

    run = read_run("embedded", None, None)
    tokenizer = load_tokenizer(run.tokenizer, run.template, run.system_prompt)
    total, responses = 0, {}
    for task in tasks:
        rows = [json.loads(line) for line in open(out / f"samples_{task}.jsonl")]
        responses[task] = [r["response"] for r in rows]
        total += sum(len(tokenizer(r["response"], add_special_tokens=False).input_ids) for r in rows)
    return total, responses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="git revision to compare against")
    parser.add_argument("--limit", type=int, default=24, help="problems per task (0: full sets)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--tasks", default="humaneval,mbpp")
    parser.add_argument("--baseline-args", default="", help="extra key=value overrides for the baseline only, "
                        "e.g. generation.threads=1 (its best setting on a busy CPU)")
    args = parser.parse_args()
    tasks = args.tasks.split(",")
    extra = [f"data.tasks=[{','.join(tasks)}]"]
    work = Path(tempfile.mkdtemp(prefix="eval_speed_"))
    base_tree = work / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base_tree), args.baseline],
                   check=True, capture_output=True)
    try:
        rates: dict[str, list[float]] = {"baseline": [], "current": []}
        seconds: dict[str, list[float]] = {"baseline": [], "current": []}
        responses = {}
        for repeat in range(args.repeats):
            order = [("baseline", base_tree), ("current", ROOT)]
            if repeat % 2:
                order.reverse()
            for name, tree in order:
                load = os.getloadavg()[0]
                own = args.baseline_args.split() if name == "baseline" else []
                result = run_eval(tree, work / f"{name}-{repeat}", args.limit or None, extra + own)
                tokens, responses[name] = count_tokens(result["out"], tasks)
                generation = sum(t["generation_seconds"] for t in result["tasks"].values())
                rates[name].append(tokens / generation)
                seconds[name].append(generation)
                print(f"{name:9s} repeat {repeat}: {tokens} tokens in {generation:.1f} s of generation "
                      f"({tokens / generation:.1f} tokens/s; wall {result['wall']:.0f} s; load average {load:.1f})",
                      flush=True)
        same = sum(a == b for task in tasks for a, b in zip(responses["baseline"][task], responses["current"][task]))
        total = sum(len(responses["baseline"][task]) for task in tasks)
        base, cur = statistics.median(rates["baseline"]), statistics.median(rates["current"])
        print(f"\nmedian tokens/s: baseline {base:.1f}, current {cur:.1f}, ratio {cur / base:.2f}x")
        print(f"median generation seconds: baseline {statistics.median(seconds['baseline']):.0f}, "
              f"current {statistics.median(seconds['current']):.0f}, "
              f"ratio {statistics.median(seconds['baseline']) / statistics.median(seconds['current']):.2f}x")
        print(f"identical responses: {same}/{total}")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)], capture_output=True)


if __name__ == "__main__":
    main()
