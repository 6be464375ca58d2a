"""Judged samples on disk: `JudgedSample`, written by `write_judged` and read back by
`read_judged` from whichever stage wrote them (RFT's judged.jsonl, GRPO's completions.jsonl,
eval's samples_<task>.jsonl), so verdicts paid for once serve RFT, the difficulty filter and
reward-model data alike.

Task ids are matched through `benchmarks.plain_task_id` (eval's `Mbpp/601` is task rows' `601`).
Not here: sampling and judging (`self_sampling.py`).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from coder_align.benchmarks import extract_code, plain_task_id
from coder_align.data.records import DataError, iter_jsonl
from coder_align.sandbox.results import OK, UNAVAILABLE

log = logging.getLogger(__name__)

# read_judged: GRPO's completions.jsonl records rewards, not statuses; a failed row is this
FAILED = "failed"


@dataclass
class JudgedSample:
    task_id: str
    prompt: list[dict]  # the chat messages the model answered
    completion: str  # the answer as generated (cut at the stop strings)
    code: str  # what was run: the code extracted from the completion
    passed: bool  # every test passed (strict); False when unavailable
    status: str  # a sandbox status (ok, wrong_answer, ..., unavailable)
    tests_passed_fraction: float | None  # None where a file read back did not record it
    clipped: bool = False  # generation ran into max_new_tokens

    def to_dict(self) -> dict:
        return asdict(self)


def status_counts(judged: list[list[JudgedSample]]) -> dict[str, int]:
    return dict(Counter(s.status for per_task in judged for s in per_task))


def write_judged(path: str | Path, judged: list[list[JudgedSample]]) -> None:
    """One JSON line per sample (`JudgedSample.to_dict()`), readable by `read_judged`."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for per_task in judged:
            for s in per_task:
                f.write(json.dumps(s.to_dict()) + "\n")


# --- reading verdicts back --------------------------------------------------------------

def read_judged(path: str | Path, tasks: list[dict] | None = None) -> list[JudgedSample]:
    """Judged samples from a file, whichever stage wrote it:

    - `judge`'s own rows (`write_judged`; `rft`'s judged.jsonl): taken as they are;
    - GRPO's `completions.jsonl` (`step`, `task_id`, `completion`, `rewards`): the verdict is
      `rewards.unit_test_reward` (1.0 passed, None unavailable, else failed: GRPO records no
      status, so it is `failed`); the code is extracted again;
    - eval's `samples_<task>.jsonl` (`task_id`, `completion`, `status`, `passed`, `response`):
      `response` is the answer, `completion` the code eval ran.

    Neither of the last two records the prompt: `tasks` (e.g. from `load_tasks`) supplies it
    by task id (`Mbpp/601` and `601` match). A row that lacks what is needed is a DataError
    naming the file, line and field.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), "file not found", "missing_file")
    by_id = {plain_task_id(t["task_id"]): t for t in tasks or []}
    samples = []
    for item in iter_jsonl(path):
        if isinstance(item, DataError):
            raise item
        samples.append(_judged_row(item.data, item.where, by_id))
    return samples


def judged_by_task(path: str, tasks: list[dict]) -> tuple[list[list], dict]:
    """The judged samples in `path`, grouped in the order of `tasks`, and what was read: samples
    whose task is not among `tasks` are counted, never silently mixed in."""
    by_task: dict[str, list] = {plain_task_id(t["task_id"]): [] for t in tasks}
    other: Counter = Counter()
    samples = read_judged(path, tasks)
    for sample_ in samples:
        key = plain_task_id(sample_.task_id)
        if key in by_task:
            by_task[key].append(sample_)
        else:
            other[key] += 1
    judged = [by_task[plain_task_id(t["task_id"])] for t in tasks]
    reused = {"path": str(path), "samples_read": len(samples), "samples_used": sum(map(len, judged)),
              "samples_of_other_tasks": sum(other.values()), "other_tasks": len(other),
              "tasks_without_samples": sum(not per for per in judged)}
    log.info("reusing %d judged samples from %s (%d of %d other tasks left out)", reused["samples_used"],
             path, reused["samples_of_other_tasks"], len(other))
    return judged, reused


def _judged_row(d: dict, where: str, by_id: dict) -> JudgedSample:
    if "task_id" not in d:
        raise DataError(where, "missing field 'task_id'", "missing_task_id")
    task_id = str(d["task_id"])
    task = by_id.get(plain_task_id(task_id))

    def prompt():
        if isinstance(d.get("prompt"), list):
            return d["prompt"]
        if task is None:
            why = "pass the tasks file so prompts can be found by task id" if not by_id else \
                f"task id {task_id} is not among the {len(by_id)} tasks given"
            raise DataError(where, f"missing field 'prompt' ({why})", "missing_prompt")
        return task["prompt"]

    def text(name):
        if not isinstance(d.get(name), str):
            raise DataError(where, f"missing field '{name}'", f"missing_{name}")
        return d[name]

    if "rewards" in d:  # GRPO's completions.jsonl
        rewards = d["rewards"] if isinstance(d["rewards"], dict) else {}
        if "unit_test_reward" not in rewards:
            raise DataError(where, f"field 'rewards' has no unit_test_reward verdict (rewards: "
                                   f"{', '.join(rewards) or 'none'}); only a run with the unit_test reward judged "
                                   "its completions", "missing_verdict")
        value = rewards["unit_test_reward"]
        completion = text("completion")
        passed = value is not None and value >= 1.0
        status = UNAVAILABLE if value is None else OK if passed else FAILED
        fraction = 1.0 if passed else value if value is not None and 0.0 < value < 1.0 else None
        language = task["language"] if task else None
        return JudgedSample(task_id, prompt(), completion, extract_code(completion, language), passed, status,
                            fraction)
    for name in ("passed", "status"):
        if name not in d:
            raise DataError(where, f"missing field '{name}' (no verdict: score the samples first, e.g. "
                                   "`coder-align eval score`)", "missing_verdict")
    if "code" in d:  # our own rows
        return JudgedSample(task_id, prompt(), text("completion"), text("code"), bool(d["passed"]), str(d["status"]),
                            d.get("tests_passed_fraction"), bool(d.get("clipped", False)))
    code = text("completion")  # eval: the code it ran; the answer is `response`
    return JudgedSample(task_id, prompt(), d.get("response") if isinstance(d.get("response"), str) else code, code,
                        bool(d["passed"]), str(d["status"]), 1.0 if d["passed"] else None)
