"""Which GRPO tasks are worth a group now: a task solved in every sample of a group retires
(it has nothing left to teach), one failed in every sample waits `retry_after` optimizer steps
before it is tried again (the policy may reach it later), the others stay in play.

The pool starts from what `data difficulty` already knows when given its judged samples
(`<out>.judged.jsonl`): a task every judged sample solved starts retired, one none solved
starts waiting. The rollout (`rollout.py`) asks the pool for fresh tasks when it drops
groups without reward spread.

Not here: generating or judging (`rollout.py`, `coder_align.rewards`).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

ACTIVE, RETIRED, WAITING = "active", "retired", "waiting"


class TaskPool:
    def __init__(self, task_ids: list[str], retry_after: int = 20, seed: int = 0):
        self.task_ids = list(task_ids)
        self.retry_after = retry_after
        self.state = [ACTIVE] * len(task_ids)
        self.ready_at = [0] * len(task_ids)  # WAITING: the step from which it may be tried again
        self.tried = [0] * len(task_ids)  # groups generated per task
        self._order = list(range(len(task_ids)))
        random.Random(seed).shuffle(self._order)
        self._next = 0
        self.events: Counter = Counter()  # retired, deferred, retried

    def usable(self, task: int, step: int) -> bool:
        return self.state[task] == ACTIVE or (self.state[task] == WAITING and step >= self.ready_at[task])

    def record(self, task: int, values: list[float | None], step: int) -> None:
        """One group's judged rewards (None: not judged). All at the maximum 1.0 retires the
        task, all at or below 0 defers it; mixed results keep it active."""
        judged = [v for v in values if v is not None]
        self.tried[task] += 1
        if len(judged) < 2:
            return
        if self.state[task] == WAITING:
            self.events["retried"] += 1
        if all(v >= 1.0 for v in judged):
            self.state[task] = RETIRED
            self.events["retired"] += 1
        elif all(v <= 0.0 for v in judged):
            self.state[task], self.ready_at[task] = WAITING, step + self.retry_after
            self.events["deferred"] += 1
        else:
            self.state[task] = ACTIVE

    def draw(self, count: int, step: int, exclude: set[int]) -> list[int]:
        """Up to `count` usable tasks not in `exclude`, least tried first, in a fixed shuffled order."""
        candidates = [t for t in self._order if t not in exclude and self.usable(t, step)]
        candidates.sort(key=lambda t: self.tried[t])  # stable: the shuffled order breaks ties
        return candidates[:count]

    def counts(self, step: int) -> dict[str, int]:
        waiting = sum(s == WAITING for s in self.state)
        return {"active": sum(s == ACTIVE for s in self.state), "retired": sum(s == RETIRED for s in self.state),
                "waiting": waiting, "ready_again": sum(s == WAITING and step >= r
                                                       for s, r in zip(self.state, self.ready_at))}

    def seed_from_judged(self, path: str | Path) -> dict[str, int]:
        """Start from earlier judged samples (`data difficulty`'s `<out>.judged.jsonl`, RFT's
        `judged.jsonl`): rows with `task_id` and `passed`; unjudged (`status: unavailable`) rows
        are left out. Returns how many tasks started retired and waiting."""
        index = {tid: i for i, tid in enumerate(self.task_ids)}
        passes: Counter = Counter()
        judged: Counter = Counter()
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                tid, passed = str(row["task_id"]), row["passed"]
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{number}: not a judged sample with 'task_id' and 'passed' ({e})") from e
            if row.get("status") == "unavailable" or passed is None or tid not in index:
                continue
            judged[tid] += 1
            passes[tid] += bool(passed)
        seeded = Counter()
        for tid, n in judged.items():
            if n < 2:
                continue
            task = index[tid]
            if passes[tid] == n:
                self.state[task] = RETIRED
                seeded["retired"] += 1
            elif passes[tid] == 0:
                self.state[task], self.ready_at[task] = WAITING, self.retry_after
                seeded["waiting"] += 1
        return {"retired": seeded["retired"], "waiting": seeded["waiting"], "tasks_with_samples": len(judged)}
