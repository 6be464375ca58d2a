"""Every committed results cell against the standard harnesses, and re-scoring the cells.

    python benchmarks/reference_verdicts.py check     # standard program vs the recorded verdicts
    python benchmarks/reference_verdicts.py rescore --tasks mbpp --why "..."   # judge again, rewrite the cells
    python benchmarks/results_table.py table          # then the table, JSON and plot

`check` runs each sample of every `benchmarks/results/<stage>/<run>/samples_<task>.jsonl` as
the standard harness's one program (`coder-align eval reference`, coder_align/evaluation/
reference.py) and compares with the `passed` the file records; it writes
`benchmarks/results/reference_verdicts.json` and exits 1 on any disagreement.
tests/test_reference_verdicts.py runs the same comparison in the default test run.

`rescore` judges every samples file again with the project's scorer and rewrites, per cell, the
samples file (verdict fields only; completions untouched), the task's entries in summary.json
(pass@k, statuses, per-problem counts; generation figures kept), report.md and
pass_rates.png, and records in summary.json when and why (`rescored`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from coder_align.evaluation.reference import compare, has_standard_program
from coder_align.evaluation.report import bar_chart, headline, headline_counts, markdown_report, write_jsonl
from coder_align.evaluation.scoring import read_samples, score_samples
from coder_align.evaluation.resume import PARTIAL_SUMMARY
from coder_align.evaluation.tasks import load_task

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
VERDICT_FIELDS = ("status", "passed", "exact_match", "error")


def cells(results: Path = RESULTS) -> list[tuple[Path, str]]:
    """(samples file, task name) of every committed evaluation cell, in path order."""
    return [(path, path.stem.removeprefix("samples_")) for path in sorted(results.glob("*/*/samples_*.jsonl"))]


def check(results: Path = RESULTS, workers: int | None = None) -> dict:
    report = {}
    for path, task_name in cells(results):
        task = load_task(task_name)
        if not has_standard_program(task):  # MultiPL-E's program outside Python: the scorer's own
            print(f"{path.relative_to(ROOT)}: no separate standard program in its language, not compared", flush=True)
            continue
        result = compare(task, read_samples(path), workers=workers)
        report[str(path.relative_to(results))] = result
        print(f"{path.relative_to(ROOT)}: ours {result['project_passes']}, standard harness "
              f"{result['reference_passes']} of {result['compared']}; {len(result['disagreements'])} disagreements",
              flush=True)
        for row in result["disagreements"]:
            print(f"    line {row['line']} {row['task_id']}: ours {row['project_passed']}, "
                  f"standard {row['reference_passed']} ({row['reference_status']})")
    return report


def rescore(results: Path = RESULTS, why: str = "", workers: int | None = None, tasks: tuple[str, ...] = ()) -> None:
    by_run: dict[Path, list[tuple[Path, str]]] = {}
    for path, task_name in cells(results):
        if tasks and task_name not in tasks:
            continue
        by_run.setdefault(path.parent, []).append((path, task_name))
    for run_dir, files in by_run.items():
        summary_path = run_dir / "summary.json"
        if not summary_path.exists():  # a run cut before its last task (sft-v2/multilingual-partial)
            summary_path = run_dir / PARTIAL_SUMMARY
        summary = json.loads(summary_path.read_text())
        for path, task_name in files:
            task = load_task(task_name)
            samples = read_samples(path)
            judged, fresh = score_samples(task, samples, workers=workers)
            if len(judged) != len(samples):
                raise SystemExit(f"{path}: {len(samples) - len(judged)} samples have unknown task ids")
            if fresh.get("unavailable"):  # an infrastructure failure is never written as a score
                raise SystemExit(f"{path}: {fresh['unavailable']} samples could not be judged "
                                 f"({fresh['unavailable_reason']}); nothing of this cell rewritten")
            rows = []
            for old, new in zip(samples, judged):
                row = {k: new.get(k) if k in VERDICT_FIELDS else v for k, v in old.items()
                       if k not in VERDICT_FIELDS or k in new}  # the file's key order, for a readable diff
                row.update({k: new[k] for k in VERDICT_FIELDS if k in new})
                rows.append(row)
            write_jsonl(path, rows)
            before = summary["tasks"][task_name].get("pass@1")
            kept = {k: v for k, v in summary["tasks"][task_name].items()
                    if k in ("mode", "generation_seconds", "generated_tokens", "tokens_per_second", "scoring_seconds")}
            summary["tasks"][task_name] = {**fresh, **kept}
            print(f"{path.relative_to(ROOT)}: pass@1 {before} -> {fresh.get('pass@1')}", flush=True)
        summary["rescored"] = {"date": datetime.date.today().isoformat(), "why": why}
        summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        (run_dir / "report.md").write_text(markdown_report(summary), encoding="utf-8")
        n = summary.get("n", 1)
        bar_chart({summary["model"]: headline(summary)}, run_dir / "pass_rates.png",
                  f"{summary['model']} ({n} sample{'s' if n > 1 else ''} per problem)", headline_counts(summary))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="standard program vs recorded verdicts, every cell")
    again = sub.add_parser("rescore", help="judge every cell's samples again with the project's scorer")
    again.add_argument("--why", required=True, help="recorded in each summary.json")
    again.add_argument("--tasks", default="", help="comma-separated task names (default: every task)")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    if args.command == "rescore":
        rescore(why=args.why, workers=args.workers, tasks=tuple(t for t in args.tasks.split(",") if t))
        return 0
    report = check(workers=args.workers)
    (RESULTS / "reference_verdicts.json").write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any(r["disagreements"] for r in report.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
