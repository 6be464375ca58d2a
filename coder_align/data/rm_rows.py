"""Reward-model rows and the (passing, failing) pairs made from them.

A row is one judged completion, as `coder-align rm data` writes it:

    {"prompt": [{"role": "user", "content": ...}] or "text", "completion": "...", "passed": true,
     "status": "ok", "tests_passed_fraction": 1.0, "task_id": "601", "source": "sample"}

`prompt`, `completion` and `passed` are required; `status`, `tests_passed_fraction`, `task_id`
and `source` are optional (rows are grouped by `task_id`, else by prompt). A row whose status is
`unavailable` (the sandbox could not judge it) has no label and is left out and counted, never
read as a failure. Identical completions of one task are kept once (counted).

Pairs: per task, every (passing, failing) combination, shuffled with a seed and capped at
`max_pairs_per_task`, so that tasks with many samples do not dominate. A task whose rows all
pass or all fail gives no pair; its rows still count for pass/fail AUC. With `same_style`, a
pair's two rows must be written the same way: a reference with its mutants (one normalised
style), model samples with each other. A reference paired with a failing sample teaches how a
reference *looks* (clean code, no prose), which a reward model learns instead of correctness
(measured in benchmarks/README.md: 41/41 such held-out pairs right, reference vs mutant at chance).

Not here: judging (`coder_align.datagen.rm_data`), tokenizing (the stage, `coder_align.reward_model`).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field

from coder_align.data.records import MAX_EXAMPLES, DataError, iter_rows
from coder_align.templates import TemplateError, validate_messages

UNAVAILABLE = "unavailable"  # coder_align.sandbox.results.UNAVAILABLE, without importing the sandbox
# how a row's code was written: sources not named here are a model's samples
STYLES = {"reference": "reference", "mutant": "reference"}


@dataclass
class RowStats:
    rows_read: int = 0
    rows_used: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> rows (invalid, unjudged, duplicate)
    skipped_examples: list[str] = field(default_factory=list)  # "file:line: why", the first MAX_EXAMPLES
    by_source: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    passed: int = 0

    def skip(self, reason: str, example: str) -> None:
        self.skipped[reason] += 1
        if len(self.skipped_examples) < MAX_EXAMPLES:
            self.skipped_examples.append(example)

    def as_dict(self) -> dict:
        return {"rows_read": self.rows_read, "rows_used": self.rows_used,
                "rows_skipped": sum(self.skipped.values()), "skipped_by_reason": dict(sorted(self.skipped.items())),
                "skipped_examples": list(self.skipped_examples), "rows_by_source": dict(sorted(self.by_source.items())),
                "statuses": dict(sorted(self.statuses.items())), "passed": self.passed,
                "pass_share": round(self.passed / self.rows_used, 4) if self.rows_used else None}


@dataclass
class PairStats:
    tasks: int = 0
    tasks_with_pairs: int = 0
    one_sided_tasks: Counter = field(default_factory=Counter)  # all_pass / all_fail -> tasks
    rows_in_one_sided_tasks: int = 0
    pairs: int = 0
    pairs_over_cap: int = 0  # possible pairs left out by max_pairs_per_task
    pairs_by_sources: Counter = field(default_factory=Counter)  # "passing source > failing source" -> pairs

    def as_dict(self) -> dict:
        return {"tasks": self.tasks, "tasks_with_pairs": self.tasks_with_pairs,
                "one_sided_tasks": dict(sorted(self.one_sided_tasks.items())),
                "rows_in_one_sided_tasks": self.rows_in_one_sided_tasks, "pairs": self.pairs,
                "pairs_over_cap": self.pairs_over_cap, "pairs_by_sources": dict(sorted(self.pairs_by_sources.items()))}


def prompt_messages(value, where: str) -> list[dict]:
    """A row's prompt as chat messages ending with the user turn: a string is one user turn."""
    if isinstance(value, str):
        if not value.strip():
            raise DataError(where, "field 'prompt' is empty", "empty_prompt")
        return [{"role": "user", "content": value}]
    if isinstance(value, list):
        messages = [{"role": m.get("role"), "content": m.get("content")} if isinstance(m, dict) else m for m in value]
        try:
            validate_messages(messages)
        except TemplateError as e:
            raise DataError(where, f"field 'prompt': {e}", "bad_prompt") from e
        if messages[-1]["role"] != "user":
            raise DataError(where, "field 'prompt' must end with a user turn", "bad_prompt")
        return messages
    raise DataError(where, f"field 'prompt' must be a string or a list of messages, got {type(value).__name__}",
                    "bad_prompt" if value is not None else "missing_prompt")


def validate_row(data: dict, where: str) -> dict:
    """One row, checked and normalised (prompt as messages, `task` the grouping key)."""
    for name in ("prompt", "completion", "passed"):
        if data.get(name) is None:
            raise DataError(where, f"missing field '{name}'", f"missing_{name}")
    messages = prompt_messages(data["prompt"], where)
    completion = data["completion"]
    if not isinstance(completion, str):
        raise DataError(where, f"field 'completion' must be a string, got {type(completion).__name__}",
                        "bad_completion")
    if not completion.strip():
        raise DataError(where, "field 'completion' is empty", "empty_completion")
    if not isinstance(data["passed"], bool):
        raise DataError(where, f"field 'passed' must be true or false, got {data['passed']!r}", "bad_passed")
    fraction = data.get("tests_passed_fraction")
    if fraction is not None and (isinstance(fraction, bool) or not isinstance(fraction, (int, float))
                                 or not 0 <= fraction <= 1):
        raise DataError(where, f"field 'tests_passed_fraction' must be a number in [0, 1], got {fraction!r}",
                        "bad_tests_passed_fraction")
    task_id = data.get("task_id")
    task = str(task_id) if task_id is not None else "prompt:" + json.dumps(messages, sort_keys=True)
    return {"prompt": messages, "completion": completion, "passed": data["passed"],
            "status": str(data.get("status") or ("ok" if data["passed"] else "wrong_answer")),
            "tests_passed_fraction": fraction, "task_id": task_id, "task": task,
            "source": str(data.get("source") or "unknown"), "where": where}


def read_rm_rows(path: str, on_invalid: str = "error", max_rows: int | None = None) -> tuple[list[dict], RowStats]:
    """Valid, judged, distinct rows of `path`; raises the first DataError unless on_invalid='skip'.
    Rows without a verdict (status `unavailable`) and repeated completions are always skipped and counted."""
    stats = RowStats()
    rows, seen = [], set()
    for item in iter_rows(path):
        if max_rows is not None and stats.rows_used >= max_rows:
            break
        stats.rows_read += 1
        try:
            if isinstance(item, DataError):
                raise item
            row = validate_row(item.data, item.where)
        except DataError as e:
            if on_invalid != "skip":
                raise
            stats.skip(f"invalid:{e.reason}", str(e))
            continue
        if row["status"] == UNAVAILABLE:  # an infrastructure failure is no label
            stats.skip("unjudged", f"{row['where']}: status 'unavailable' (the sandbox could not judge it)")
            continue
        key = (row["task"], row["completion"])
        if key in seen:
            stats.skip("duplicate", f"{row['where']}: the same completion of task {row['task_id']} again")
            continue
        seen.add(key)
        rows.append(row)
        stats.rows_used += 1
        stats.by_source[row["source"]] += 1
        stats.statuses[row["status"]] += 1
        stats.passed += row["passed"]
    return rows, stats


def group_by_task(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["task"], []).append(row)
    return groups


def style(row: dict) -> str:
    return STYLES.get(row["source"], "sample")


def build_pairs(rows: list[dict], max_pairs_per_task: int | None = None, seed: int = 0,
                same_style: bool = False) -> tuple[list[tuple[dict, dict]], PairStats]:
    """(passing, failing) pairs of each task, at most `max_pairs_per_task` per task, chosen at
    random; with `same_style`, only pairs of rows written the same way (see the module doc)."""
    stats = PairStats()
    pairs = []
    for task, group in sorted(group_by_task(rows).items()):
        stats.tasks += 1
        good = [r for r in group if r["passed"]]
        bad = [r for r in group if not r["passed"]]
        if not good or not bad:
            stats.one_sided_tasks["all_pass" if good else "all_fail"] += 1
            stats.rows_in_one_sided_tasks += len(group)
            continue
        task_pairs = [(g, b) for g in good for b in bad if not same_style or style(g) == style(b)]
        if not task_pairs:
            stats.one_sided_tasks["no_same_style_pair"] += 1
            stats.rows_in_one_sided_tasks += len(group)
            continue
        stats.tasks_with_pairs += 1
        # a per-task seed: adding a task does not change which pairs the others keep
        random.Random(f"{seed}:{task}").shuffle(task_pairs)
        if max_pairs_per_task is not None and len(task_pairs) > max_pairs_per_task:
            stats.pairs_over_cap += len(task_pairs) - max_pairs_per_task
            task_pairs = task_pairs[:max_pairs_per_task]
        for g, b in task_pairs:
            stats.pairs_by_sources[f"{g['source']} > {b['source']}"] += 1
        pairs += task_pairs
        stats.pairs += len(task_pairs)
    return pairs, stats


def held_out(task: str, fraction: float, seed: int = 0) -> bool:
    """Whether a task is held out: a stable hash, so a task's side never depends on the others."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(f"{seed}:{task}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_by_task(rows: list[dict], fraction: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows): whole tasks go to one side, so held-out accuracy is on
    prompts the model never trained on."""
    train, evaluation = [], []
    for row in rows:
        (evaluation if held_out(row["task"], fraction, seed) else train).append(row)
    return train, evaluation
