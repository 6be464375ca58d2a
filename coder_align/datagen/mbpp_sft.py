"""MBPP's non-test rows as SFT rows (`coder-align data mbpp-sft`).

    coder-align data mbpp-sft --splits prompt,train --out mbpp_sft.jsonl

instruction = the user message `eval --mode instruct` sends for that task (built by the
eval's own `instruct_messages`, so training and test prompts have the same form), output =
the reference solution in one ```python fence. Rows of the test split (ids 11-510) are
refused, in the selection and again row by row; every row is then checked against HumanEval
and the MBPP test split with the corpus module's 10-gram rule, and what that removes is
counted and named in `<out>.summary.json`.

Not here: the tests of each task (GRPO and RFT read MBPP rows directly, `coder_align/data/grpo_rows.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from coder_align.benchmarks import python_answer, validation_split
from coder_align.benchmarks.decontam import DEFAULT_MBPP, load_test_split_index
from coder_align.config import ConfigError
from coder_align.data.grpo_rows import benchmark_test_task, parse_task_ids, refuse_test_ids
from coder_align.evaluation.tasks import instruct_messages, load_mbpp

MAX_EXAMPLES = 10


@dataclass
class MbppSftConfig:
    """MBPP rows outside the test split as instruction/output rows."""

    splits: str = "prompt,train"  # MBPP split names or task ids (601-974), never the test or validation split
    mbpp: str | None = None  # MBPP sanitized JSONL or hub name; default: the file coder_align.benchmarks finds
    # the MBPP JSONL whose test split the rows are checked against; None: `mbpp` when it is a file, else the default
    decontam_mbpp: str | None = None
    output_path: str = ""
    summary_path: str | None = None  # default: <output_path without .jsonl>.summary.json


def mbpp_rows(config: MbppSftConfig) -> tuple[list[dict], dict]:
    """(rows, summary) for the selected splits, decontaminated."""
    refuse_test_ids(config.splits, "splits")
    wanted = parse_task_ids(config.splits)
    held_out = sorted((wanted or set()) & set(validation_split()))
    if held_out:  # the split every choice between stages is made on: no stage trains on it, SFT included
        raise ConfigError(f"splits={config.splits} includes MBPP validation ids ({held_out[0]}...{held_out[-1]}), "
                          "held out of all training: use prompt,train")
    if not wanted:
        raise ConfigError("splits is empty: name MBPP splits (prompt,train) or task ids (601-974)")
    against = config.decontam_mbpp or (config.mbpp if config.mbpp and Path(config.mbpp).is_file() else DEFAULT_MBPP)
    index, benchmark_sources = load_test_split_index(against, validation=True)
    task = load_mbpp(config.mbpp, split="all")
    rows, removed, outside = [], [], 0
    for problem in task.problems:
        number = int(problem.task_id.rsplit("/", 1)[-1])
        if number not in wanted:
            outside += 1
            continue
        why = benchmark_test_task({"task_id": problem.task_id}, "mbpp")
        if why:  # cannot happen after refuse_test_ids; a second lock on the door that matters most
            raise ConfigError(f"mbpp-sft: {why}; never train on it")
        if not problem.canonical.strip():
            raise ConfigError(f"mbpp-sft: {problem.task_id} has no reference code ('code' field)")
        instruction = instruct_messages(problem)[0]["content"]
        output = python_answer(problem.canonical.replace("\r\n", "\n"))
        hit = index.match(f"{instruction}\n{output}")
        if hit is not None:
            removed.append(f"{problem.task_id} overlaps {hit}")
            continue
        rows.append({"instruction": instruction, "output": output, "task_id": problem.task_id})
    summary = {
        "source": config.mbpp or "default", "splits": config.splits, "rows_in_selection": len(rows) + len(removed),
        "rows_outside_selection": outside, "kept": len(rows),
        "decontamination": {"benchmarks": benchmark_sources, "removed": len(removed),
                            "examples": removed[:MAX_EXAMPLES]},
    }
    return rows, summary


def main(config: MbppSftConfig) -> dict:
    """Write the rows and `<out>.summary.json`; return the summary."""
    if not config.output_path:
        raise ConfigError("output_path (--out) is required: the JSONL to write")
    rows, summary = mbpp_rows(config)
    out = Path(config.output_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    base = out.with_suffix("") if out.suffix == ".jsonl" else out
    summary_path = Path(config.summary_path or f"{base}.summary.json")
    summary["output_path"] = str(out)
    summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    summary["summary_path"] = str(summary_path)
    return summary
