"""`coder-align rm data`: judged completions for a reward model, from execution, not assumption.

    coder-align rm data --model outputs/sft --tasks mbpp-train.jsonl --task-ids train --k 8 --mutants 6 --out rows.jsonl
    coder-align rm data --k 0 --from-judged outputs/grpo/completions.jsonl --tasks mbpp-train.jsonl --out rows.jsonl

Three sources of rows, each with its `source`:

- `sample`: k completions per task from `--model`, sampled and judged by `self_sampling` (eval's
  prompts and generator; the sandbox against ALL of the task's tests, not only the shown one);
- `judged:<file>`: verdicts other runs already paid for: GRPO's `completions.jsonl`, eval's
  `samples_*.jsonl`, `rft`'s judged rows (`verdicts.read_judged`);
- `reference` and `mutant`: where the policy rarely passes, pairs are scarce, so the task's
  reference solution and up to `--mutants` one-change mutants of it (`mutants.py`)
  are judged too. Both are written in one normalised style (ast.unparse, one fenced block), so
  that style cannot tell them apart; a mutant that still passes every test is labelled passed.

Rows (`data/rm_rows.py` reads them): prompt (chat messages), completion, passed, status,
tests_passed_fraction, task_id, source, clipped, and the mutation operator for mutants. A
sample the sandbox could not judge (`unavailable`) is not written (an infrastructure failure
is never a label) and is counted; a completion repeated within a task is written once. The
summary (`<out>.summary.json`, also printed) gives rows and pass share per source, statuses,
skipped rows by reason, and the (passing, failing) pairs the rows make per task, capped.
Training tasks only: MBPP test-split ids and HumanEval tasks are refused (`load_tasks`), and so
is a `--from-judged` row of a task that is not among `--tasks`.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coder_align.benchmarks import plain_task_id
from coder_align.config import ConfigError
from coder_align.data.records import DataError
from coder_align.data.rm_rows import build_pairs, validate_row
from coder_align.datagen.mutants import mutants
from coder_align.datagen.self_sampling import (
    JudgingConfig, SamplingConfig, judge, load_tasks, sample_and_judge,
)
from coder_align.datagen.verdicts import JudgedSample, read_judged
from coder_align.evaluation.generation import GeneratorSpec
from coder_align.run_dir import read_run

log = logging.getLogger(__name__)

# fields of a task's input row that hold a correct solution (MBPP `code`; generic rows)
REFERENCE_FIELDS = ("code", "solution", "reference", "canonical_solution")
MAX_EXAMPLES = 10


@dataclass
class RMDataOptions:
    tasks: str  # task rows with tests (GRPO's formats: MBPP, generic)
    out: str  # rows .jsonl; the summary goes beside it as <stem>.summary.json
    model: Any = None  # a model path or output directory (or eval's generator interface); None with k=0
    task_ids: str | None = None  # e.g. 511-974 (never MBPP's test split)
    format: str = "auto"
    k: int = 8  # samples per task (0: none)
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 512
    batch_size: int = 8
    seed: int = 0
    threads: int | None = None  # torch CPU threads for sampling (1 beats 2 on a busy 2-core machine)
    from_judged: list[str] = field(default_factory=list)
    mutants: int = 0  # the reference solution plus up to this many mutants per task (0: neither)
    max_pairs_per_task: int | None = 16  # for the pair counts in the summary (training caps again)
    timeout: float = 10.0  # per job; a mutant can loop forever
    on_invalid: str = "error"  # task rows: stop at the first bad one, or skip and count
    max_rows: int | None = None  # tasks


def build_rows(options: RMDataOptions) -> dict:
    """Sample, read, mutate and judge; write the rows and the summary; return the summary."""
    o = options
    if o.k < 0 or o.mutants < 0:
        raise ConfigError("--k and --mutants must be >= 0")
    if o.k and o.model is None:
        raise ConfigError("--model is required to sample completions (or --k 0 for none)")
    if not (o.k or o.mutants or o.from_judged):
        raise ConfigError("nothing to build: give --k N with --model, --mutants N, or --from-judged FILE")
    tasks, task_stats = load_tasks(o.tasks, o.task_ids, fmt=o.format, on_invalid=o.on_invalid, max_rows=o.max_rows)
    if not tasks:
        raise DataError(o.tasks, f"no usable task rows ({task_stats})", "no_rows")
    log.info("%d tasks from %s", len(tasks), o.tasks)
    notes = Counter()  # task-level counts: no reference, reference failed, nothing to mutate
    rows = sampled_rows(o, tasks) if o.k else []
    from_files, selected_out = rows_from_judged(o, tasks)
    rows += from_files
    if o.mutants:
        rows += reference_rows(o, tasks, notes)
    kept, skipped, examples = distinct_judged(rows)
    out = Path(o.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for row in kept:
            f.write(json.dumps(row) + "\n")

    _, pair_stats = build_pairs([validate_row(row, f"{out}:{i}") for i, row in enumerate(kept, 1)],
                                o.max_pairs_per_task, o.seed)
    summary = {
        "out": str(out),
        "tasks": task_stats,
        "rows": len(kept),
        "passed": sum(r["passed"] for r in kept),
        "pass_share": round(sum(r["passed"] for r in kept) / len(kept), 4) if kept else None,
        "by_source": by_source(kept),
        "statuses": dict(sorted(Counter(r["status"] for r in kept).items())),
        "clipped": sum(bool(r.get("clipped")) for r in kept),
        "mutant_operators": dict(sorted(Counter(r["operator"] for r in kept if r.get("operator")).items())),
        "skipped_rows": dict(sorted(skipped.items())),
        "judged_samples_outside_task_ids": sum(selected_out.values()),
        "skipped_examples": examples,
        "task_notes": dict(sorted(notes.items())),
        "pairs": pair_stats.as_dict(),
        "settings": {k: v for k, v in vars(o).items() if k != "model"} | {"model": str(o.model)},
    }
    out.with_name(out.stem + ".summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def sampled_rows(o: RMDataOptions, tasks: list[dict]) -> list[dict]:
    """The policy's own samples, k per task, judged against all of each task's tests."""
    if o.threads:
        import torch

        torch.set_num_threads(o.threads)
    model = o.model
    if isinstance(model, (str, Path)):  # a model path or output directory, loaded as `eval run` does
        model = GeneratorSpec(read_run(model), work_dir=str(Path(o.out).parent))
    sampling = SamplingConfig(k=o.k, temperature=o.temperature, top_p=o.top_p, max_new_tokens=o.max_new_tokens,
                              batch_size=o.batch_size, seed=o.seed)
    judged, _ = sample_and_judge(model, tasks, sampling, JudgingConfig(timeout=o.timeout))
    return [judged_row(s, "sample") for per_task in judged for s in per_task]


def rows_from_judged(o: RMDataOptions, tasks: list[dict]) -> tuple[list[dict], Counter]:
    """Verdicts other runs already paid for, of the selected tasks only; and per task, the
    samples left out because `--task-ids` does not select it (e.g. held-out tasks)."""
    rows, known = [], {plain_task_id(t["task_id"]) for t in tasks}
    selected_out = Counter()
    in_file = file_ids(o.tasks, o.format) if o.from_judged and o.task_ids else set()
    for path in o.from_judged:
        for s in read_judged(path, tasks):
            task = plain_task_id(s.task_id)
            if task not in known:
                if task in in_file:
                    selected_out[task] += 1
                    continue
                # e.g. eval samples of MBPP's test split: never training data
                raise DataError(path, f"task {s.task_id} is not among the --tasks given ({o.tasks}, task ids "
                                      f"{o.task_ids or 'all'}); rows are only taken for training tasks", "unknown_task")
            rows.append(judged_row(s, f"judged:{Path(path).name}"))
    if selected_out:
        log.info("left out %d judged samples of %d tasks that --task-ids %s does not select",
                 sum(selected_out.values()), len(selected_out), o.task_ids)
    return rows, selected_out


def reference_rows(o: RMDataOptions, tasks: list[dict], notes: Counter) -> list[dict]:
    """Each task's reference solution and its mutants, judged: labelled by the verdict."""
    rows = []
    answers, meta = reference_answers(tasks, o.mutants, o.seed, notes)
    judged = judge(tasks, answers, o.timeout)
    for per_task, per_meta in zip(judged, meta):
        for s, (source, operator) in zip(per_task, per_meta):
            row = judged_row(s, source)
            if operator:
                row["operator"] = operator
            if source == "reference" and s.status != "unavailable" and not s.passed:
                notes["reference_failed"] += 1  # kept: the sandbox's verdict is the label
            rows.append(row)
    return rows


def distinct_judged(rows: list[dict]) -> tuple[list[dict], Counter, list[str]]:
    """One row per distinct completion of a task, never a row without a verdict; the skipped
    ones counted by reason, the first few named."""
    kept, skipped, examples, seen = [], Counter(), [], set()
    for row in rows:
        reason = ("unjudged" if row["status"] == "unavailable"
                  else "duplicate" if (str(row["task_id"]), row["completion"]) in seen else None)
        if reason:
            skipped[reason] += 1
            if len(examples) < MAX_EXAMPLES:
                examples.append(f"task {row['task_id']} ({row['source']}): {reason}")
            continue
        seen.add((str(row["task_id"]), row["completion"]))
        kept.append(row)
    return kept, skipped, examples


def file_ids(path: str, fmt: str) -> set[str]:
    """The task ids of every valid training row in `path`, whatever --task-ids selects (none when
    the file also holds rows that are never training data: then an unselected task is an error)."""
    try:
        all_tasks, _ = load_tasks(path, None, fmt=fmt, on_invalid="skip")
        # MBPP's validation rows are held out of every pool (validation_split), yet are the file's
        held_out, _ = load_tasks(path, "validation", fmt=fmt, on_invalid="skip", training=False)
    except (ConfigError, DataError):
        return set()
    return {plain_task_id(t["task_id"]) for t in all_tasks + held_out}


def judged_row(sample: JudgedSample, source: str) -> dict:
    """A reward-model row from a judged sample."""
    return {"prompt": sample.prompt, "completion": sample.completion, "passed": bool(sample.passed),
            "status": sample.status, "tests_passed_fraction": sample.tests_passed_fraction,
            "task_id": str(sample.task_id), "source": source, "clipped": bool(sample.clipped)}


def reference_solution(row: dict) -> str | None:
    for name in REFERENCE_FIELDS:
        value = row.get(name)
        if isinstance(value, str) and value.strip():
            return value
    return None


def fenced(code: str) -> str:
    """How reference and mutant code is written: one python block, as the policy is asked to answer."""
    return f"```python\n{code.rstrip()}\n```"


def reference_answers(tasks: list[dict], n_mutants: int, seed: int,
                      notes: Counter) -> tuple[list[list[str]], list[list[tuple[str, str | None]]]]:
    """Per task: the normalised reference and up to n_mutants mutants, as answers to judge, with
    (source, operator) for each."""
    answers, meta = [], []
    for task in tasks:
        reference = reference_solution(task.get("row") or {})
        if reference is None:
            notes["no_reference"] += 1
            answers.append([])
            meta.append([])
            continue
        try:
            normalised = ast.unparse(ast.parse(reference))  # the mutants' style, so style tells nothing
        except (SyntaxError, ValueError):
            notes["reference_not_python"] += 1
            answers.append([])
            meta.append([])
            continue
        variants = mutants(normalised, limit=n_mutants, seed=seed)
        if not variants:
            notes["nothing_to_mutate"] += 1
        answers.append([fenced(normalised)] + [fenced(m.code) for m in variants])
        meta.append([("reference", None)] + [("mutant", m.operator) for m in variants])
    return answers, meta


def by_source(rows: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for row in rows:
        entry = out.setdefault(row["source"], {"rows": 0, "passed": 0})
        entry["rows"] += 1
        entry["passed"] += row["passed"]
    for entry in out.values():
        entry["pass_share"] = round(entry["passed"] / entry["rows"], 4)
    return dict(sorted(out.items()))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="coder-align rm data", description=(__doc__ or "").strip().splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", required=True, help="task rows with tests (.jsonl/.json/.parquet; MBPP or generic)")
    p.add_argument("--out", required=True, help="rows .jsonl to write (summary: <stem>.summary.json beside it)")
    p.add_argument("--model", default=None, help="model to sample: a path, an output directory, or 'embedded'")
    p.add_argument("--task-ids", default=None, help="e.g. 511-974 or validation,train (never MBPP test ids)")
    p.add_argument("--format", default="auto", choices=["auto", "rows", "mbpp"])
    p.add_argument("--k", type=int, default=8, help="samples per task (0: none)")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads for sampling")
    p.add_argument("--from-judged", nargs="+", default=[], metavar="FILE",
                   help="GRPO completions.jsonl, eval samples_*.jsonl or judged rows to add")
    p.add_argument("--mutants", type=int, default=0, help="judge the reference solution and up to N mutants of it")
    p.add_argument("--max-pairs-per-task", type=int, default=16)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per judged completion")
    p.add_argument("--on-invalid", default="error", choices=["error", "skip"], help="bad task rows")
    p.add_argument("--max-rows", type=int, default=None, help="use at most this many tasks")
    return p


def cli(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    summary = build_rows(RMDataOptions(**{k: v for k, v in vars(args).items()}))
    pairs = summary["pairs"]
    print(f"\n{summary['rows']} rows ({summary['pass_share']} passed) from {summary['tasks']['rows_used']} tasks, "
          f"{pairs['pairs']} pairs from {pairs['tasks_with_pairs']} tasks (one-sided: {pairs['one_sided_tasks']}); "
          f"skipped rows: {summary['skipped_rows'] or 'none'}")
    for source, entry in summary["by_source"].items():
        print(f"  {source}: {entry['rows']} rows, {entry['pass_share']:.1%} passed")
    print(f"rows in {summary['out']}, summary in {Path(summary['out']).stem}.summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
