"""The results table: one model per stage, the same evaluation commands for every row.

    python benchmarks/results_table.py eval --stage shipped --model embedded
    python benchmarks/results_table.py eval --stage sft --model outputs/sft-embedded-code
    python benchmarks/results_table.py eval --stage rft --model outputs/rft-embedded/sft
    python benchmarks/results_table.py eval --stage grpo --model outputs/grpo-embedded
    python benchmarks/results_table.py eval --stage grpo-rft --model outputs/grpo-embedded-rft
    python benchmarks/results_table.py eval --stage sft-v2 --model outputs/sft-embedded-v2 --only validation
    python benchmarks/results_table.py eval --stage rft-v2 --model outputs/rft-embedded-v2/sft --only validation
    python benchmarks/results_table.py eval --stage rft2-v2 --model outputs/rft2-embedded-v2/sft --only validation,instruct
    python benchmarks/results_table.py table   # RESULTS.md's table, results/embedded.json, results/embedded.png

`eval` runs the `coder-align eval run` commands of a stage (or `--only` some), greedy and on full sets
except infilling (first 300), into benchmarks/results/<stage>/:
  validation/ MBPP validation (43, ids 511-600), instruct mode: the split every choice between
             stages or checkpoints is made on (benchmarks.validation_split); never the test columns
  instruct/  HumanEval (164) + MBPP test (257), instruct mode (configs/eval/instruct.yaml)
  base/      MBPP test (257), base mode
  infill/    HumanEval single-line infilling, first 300 problems
  leetcode/  DeepSeek-Coder's LeetCode Contest (180), instruct mode with the model's own template
             (configs/eval/deepseek_suite.yaml)
  multilingual/  DeepSeek-Coder's HumanEval in its paper's eight languages (1280 problems), the
             same settings; one cell, the mean of the eight pass@1 as DeepSeek reports it
and keeps each run's samples_<task>.jsonl (re-score them with `coder-align eval score`),
summary.json and the exact command in command.txt (written by the run itself, beside its
resolved eval_config.yaml). `table` reads every stage present, in
STAGES order, and writes the table and the plot; a stage not yet run is a row of dashes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from coder_align.benchmarks.multilingual import PAPER_LANGUAGES
from coder_align.evaluation.multilingual_report import average, language_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
STAGES = {"shipped": "embedded, as shipped", "sft": "+ SFT (configs/sft/embedded-code.yaml, 36 steps)",
          "rft": "+ rejection-sampling FT of the SFT model (configs/rft/embedded.yaml)",
          "grpo": "+ GRPO of the SFT model (configs/grpo/embedded.yaml, 100 steps)",
          "grpo-rft": "+ GRPO of the RFT model (configs/grpo/embedded.yaml, 60 steps)",
          # issue 26's rules: no validation task (or its 10-gram twin) in any training data
          "sft-v2": "+ SFT, issue 26's rules (as `sft`, MBPP rows without validation tasks)",
          "rft-v2": "+ RFT of `sft-v2`, issue 26's rules (tasks 601-974, decontaminated)",
          # expert iteration (issue 28): the same RFT recipe on `rft-v2`'s own samples
          "rft2-v2": "+ RFT round 2 of `rft-v2` (its own samples, tasks 601-974)",
          # the run's checkpoint that validation chose (benchmarks/grpo_progress.py)
          "grpo-rft-v2": "+ GRPO of `rft-v2` (its frontier, 22 tasks; step 110, the checkpoint validation chose)",
          # expert iteration from the GRPO checkpoint (issue 28, item 6)
          "rft-grpo-v2": "+ RFT round of `grpo-rft-v2` (its own samples, tasks 601-974)",
          # GRPO again from step 110, on the frontier its own samples moved to (issue 28)
          "grpo2-rft-v2": "+ GRPO round 2 of `grpo-rft-v2` (its moved frontier, 22 tasks, 8 new; the checkpoint validation chose)"}
# (run directory, task, column title, problems expected)
COLUMNS = [("validation", "mbpp-validation", "MBPP validation (43) greedy pass@1, instruct (stages are chosen on it)", 43),
           ("instruct", "humaneval", "HumanEval (164) greedy pass@1, instruct", 164),
           ("instruct", "mbpp", "MBPP test (257) greedy pass@1, instruct", 257),
           ("base", "mbpp", "MBPP test (257) pass@1, base mode", 257),
           ("infill", "infilling", "HumanEval single-line infilling (first 300) pass@1", 300),
           ("leetcode", "leetcode", "LeetCode Contest (180) greedy pass@1, instruct, the model's template", 180),
           # DeepSeek's figure: the mean of the eight languages' pass@1 (multilingual_report.average)
           ("multilingual", "humaneval-multilingual",
            "HumanEval in DeepSeek's 8 languages (1280), mean greedy pass@1, instruct, the model's template", 1280)]

PLOT_LABELS = ["MBPP validation\ninstruct", "HumanEval\ninstruct", "MBPP test\ninstruct", "MBPP test\nbase",
               "infilling\n(first 300)", "LeetCode\nContest", "HumanEval\n8 languages"]  # one per column


def commands(model: str, stage_dir: Path, extra: list[str]) -> dict[str, list[str]]:
    # bf16 pinned: the same numerics on every machine (on CPUs without native bf16 it is slow)
    base = [sys.executable, "-m", "coder_align.cli", "eval", "run"]
    extra = ["model.dtype=bfloat16", *extra]
    return {
        "instruct": base + ["--config", "configs/eval/instruct.yaml", f"model.path={model}",
                            f"output_dir={stage_dir / 'instruct'}", *extra],
        # the held-out split (benchmarks.validation_split): the only column a choice between stages may use
        "validation": base + ["--config", "configs/eval/instruct.yaml", f"model.path={model}", "data.tasks=[mbpp-validation]",
                              f"output_dir={stage_dir / 'validation'}", *extra],
        "base": base + [f"model.path={model}", "data.tasks=[mbpp]", "data.mode=base",
                        f"output_dir={stage_dir / 'base'}", *extra],
        "infill": base + [f"model.path={model}", "data.tasks=[infilling]", "data.max_rows=300",
                          f"output_dir={stage_dir / 'infill'}", *extra],
        "leetcode": base + ["--config", "configs/eval/deepseek_suite.yaml", f"model.path={model}", "data.tasks=[leetcode]",
                            f"output_dir={stage_dir / 'leetcode'}", *extra],
        "multilingual": base + ["--config", "configs/eval/deepseek_suite.yaml", f"model.path={model}",
                                "data.tasks=[humaneval-multilingual]", f"output_dir={stage_dir / 'multilingual'}", *extra],
    }


def run_stage(stage: str, model: str, only: list[str], extra: list[str]) -> None:
    stage_dir = (RESULTS / stage).relative_to(ROOT)  # commands run in ROOT; relative paths read better
    for name, command in commands(model, stage_dir, extra).items():
        if only and name not in only:
            continue
        shown = " ".join(shlex.quote(part) for part in ["coder-align", *command[3:]])
        print(f"[{stage}/{name}] {shown}", flush=True)
        subprocess.run(command, check=True, cwd=ROOT)
        out = ROOT / stage_dir / name
        # the run wrote command.txt beside eval_config.yaml (config.save_config); it must be this one
        written = (out / "command.txt").read_text().strip()
        if written != shown:
            raise SystemExit(f"{out}/command.txt says {written!r}, expected {shown!r}")
        for heavy in ("merged_model",):  # vLLM's merged weights are not results
            subprocess.run(["rm", "-rf", str(out / heavy)])


def cell(stage_dir: Path, run: str, task: str, expected: int) -> dict | None:
    path = stage_dir / run / "summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    result = multilingual_mean(summary) if task == "humaneval-multilingual" else summary["tasks"].get(task)
    if result is None:
        return None
    value = result.get("pass@1")
    problems = result.get("problems", expected)
    passed = result.get("passed", round(value * problems) if value is not None else None)
    return {"value": value, "passed": passed, "problems": problems, "metric": "pass@1",
            "exact_match": result.get("exact_match"),
            "command": (stage_dir / run / "command.txt").read_text().strip()
            if (stage_dir / run / "command.txt").exists() else None,
            "tokens_per_second": result.get("tokens_per_second"), "generation_seconds": result.get("generation_seconds")}


def multilingual_mean(summary: dict) -> dict | None:
    """The eight languages as one cell: DeepSeek's mean of per-language pass@1, and the
    problems passed and judged summed over them. None unless all eight were judged (a mean
    over fewer is not the paper's figure)."""
    results = language_results(summary)
    mean, missing = average(results)
    if mean is None or missing:
        return None
    judged = [results[code] for code in results if code in PAPER_LANGUAGES]
    return {"pass@1": mean, "problems": sum(r["problems"] for r in judged),
            "passed": round(sum(r["pass@1"] * r["problems"] for r in judged))}


def table() -> None:
    rows = {}
    for stage in STAGES:
        stage_dir = RESULTS / stage
        rows[stage] = {f"{task}/{run}": cell(stage_dir, run, task, n) for run, task, _, n in COLUMNS}
    (RESULTS / "embedded.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| model | " + " | ".join(title for *_, title, _ in COLUMNS) + " |",
             "|---|" + "---|" * len(COLUMNS)]
    for stage, label in STAGES.items():
        cells = []
        for run, task, _, _ in COLUMNS:
            c = rows[stage][f"{task}/{run}"]
            cells.append("-" if c is None or c["value"] is None
                         else f"{100 * c['value']:.1f}% ({c['passed']}/{c['problems']})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    write_between_markers(ROOT / "benchmarks" / "RESULTS.md", "\n".join(lines))
    print("\n".join(lines))
    plot(rows)


def write_between_markers(path: Path, table_text: str) -> None:
    """The table goes between `<!-- table -->` and `<!-- /table -->`; the prose around it is
    written by hand and kept."""
    start, end = "<!-- table -->", "<!-- /table -->"
    text = path.read_text() if path.exists() else f"# Results\n\n{start}\n{end}\n"
    if start not in text or end not in text:
        raise SystemExit(f"{path}: the markers {start} and {end} are missing")
    head, rest = text.split(start, 1)
    path.write_text(f"{head}{start}\n{table_text}\n{end}{rest.split(end, 1)[1]}")


def plot(rows: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [s for s in STAGES if any(c and c["value"] is not None for c in rows[s].values())]
    fig, ax = plt.subplots(figsize=(9, 4 + 0.25 * len(present)))
    width = 0.8 / max(len(present), 1)
    for k, stage in enumerate(present):
        values = [100 * ((rows[stage][f"{task}/{run}"] or {}).get("value") or 0) for run, task, _, _ in COLUMNS]
        bars = ax.bar([i + k * width for i in range(len(COLUMNS))], values, width, label=STAGES[stage])
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks([i + width * (len(present) - 1) / 2 for i in range(len(COLUMNS))], PLOT_LABELS)
    ax.set_ylabel("greedy pass@1 (%)")
    ax.set_title("SmolLM2-135M-Instruct through coder_align's stages (greedy, full sets)", fontsize=10)
    # below the axes: inside, it covers the tallest bars
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(RESULTS / "embedded.png", dpi=100, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("eval", help="evaluate one stage's model")
    run.add_argument("--stage", required=True, choices=list(STAGES))
    run.add_argument("--model", required=True)
    run.add_argument("--only", default="", help="comma-separated subset of validation,instruct,base,infill,leetcode,multilingual")
    run.add_argument("overrides", nargs="*", help="extra key=value for every eval command (the same for all stages)")
    sub.add_parser("table", help="write RESULTS table, JSON and plot from the stages present")
    args = parser.parse_args()
    if args.command == "eval":
        run_stage(args.stage, args.model, [o for o in args.only.split(",") if o], args.overrides)
    table()


if __name__ == "__main__":
    main()
