"""GRPO's rollouts, given to TRL as its `rollout_func` (GRPOTrainer's hook for custom
generation): generate each group, judge its completions as they finish, keep the groups that
carry a gradient.

- Generation goes through a backend: the evaluation generator on the policy's current weights
  (`coder_align.evaluation.policy_generation`, the CPU default) or TRL's own generation
  (`TRLGeneration`: transformers `generate`, or vLLM colocate/server on a GPU).
- Each finished completion goes to a judge at once (`coder_align.rewards.early.EarlyJudge`),
  so the sandbox works while the rest still generate; the unit-test reward then reads the
  verdicts it already has.
- Dynamic sampling as in DAPO: a group whose judged rewards are all equal (all passed, all
  failed, or none judged) has zero advantage everywhere; it is dropped and a fresh task from
  the curriculum (`curriculum.TaskPool`) is generated in its place, for up to `max_rounds`
  rounds. If a step still lacks groups with spread, dropped groups fill it (counted) so the
  batch keeps its shape. The rows TRL gave are replaced column by column (`extra_fields`, which
  TRL writes into the inputs the rewards see), so every reward scores the task generated.
- Metrics (through `trainer._log_metric`): groups dropped by reason, groups filled without
  spread, rounds, the curriculum's counts, and generation vs judging time.

Not here: what the judge runs (`coder_align.rewards`), the weights handover (`policy_generation`).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from coder_align.training.curriculum import TaskPool

log = logging.getLogger("coder_align.grpo")


def prompt_key(prompt) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


def spread_reason(values: list[float | None]) -> str | None:
    """None when the group's judged rewards differ (it carries a gradient), else why not."""
    judged = [v for v in values if v is not None]
    if len(judged) < 2:
        return "unjudged"
    if max(judged) != min(judged):
        return None
    return "all_passed" if judged[0] >= 1.0 else "all_failed" if judged[0] <= 0.0 else "same_reward"


class TRLGeneration:
    """TRL's own generation for the batch (transformers, or vLLM whose weights TRL syncs before
    calling the rollout). Completions come back together, so judging starts after them."""

    streams = False

    def __init__(self, num_generations: int):
        self.num_generations = num_generations

    def __call__(self, prompt_ids: list[list[int]], trainer, seed: int,
                 on_finished: Callable) -> tuple[list, list | None]:
        completion_ids, logprobs = trainer._generate_single_turn(prompt_ids, None, {}, self.num_generations)
        for index, ids in enumerate(completion_ids):
            on_finished(index, list(ids))
        return [list(c) for c in completion_ids], logprobs


@dataclass
class Group:
    task: int
    completion_ids: list
    logprobs: list | None
    values: list  # the judge's rewards, None where unjudged or when there is no judge


class Rollout:
    """TRL's `rollout_func(prompts, trainer) -> {prompt_ids, completion_ids, logprobs, **columns}`."""

    def __init__(self, rows: list[dict], tokenize: Callable, generation, judge, pool: TaskPool,
                 num_generations: int, dynamic_sampling: bool = True, max_rounds: int = 3, backend: str = ""):
        self.backend = backend
        self.rows, self.tokenize, self.generation, self.judge, self.pool = rows, tokenize, generation, judge, pool
        self.num_generations = num_generations
        self.dynamic = dynamic_sampling and judge is not None
        self.max_rounds = max_rounds if self.dynamic else 1
        self.index: dict[str, int] = {}
        for i, row in enumerate(rows):
            self.index.setdefault(prompt_key(row["prompt"]), i)
        self._prompt_ids: dict[int, list[int]] = {}
        self.totals: Counter = Counter()  # over the run, for summary.json
        self.__name__ = "coder_align_rollout"

    def __call__(self, prompts: list, trainer) -> dict:
        g = self.num_generations
        step = trainer.state.global_step
        # dynamic sampling only trains: an evaluation batch is generated as given
        dynamic = self.dynamic and getattr(getattr(trainer, "model", None), "training", True)
        keys = [prompt_key(p) for p in prompts]
        if len(keys) % g or any(key != keys[i - i % g] for i, key in enumerate(keys)):
            raise RuntimeError(f"the rollout needs whole groups of {g} in each process's generation batch: make "
                               "train.per_device_train_batch_size x steps per generation a multiple of "
                               "grpo.num_generations")
        tasks = [self._task_of(p) for p in prompts[::g]]
        needed = len(tasks)
        counts, timing = Counter(), Counter()
        kept, dropped, tried = [], [], set()
        pending = self._playable(tasks, step, counts) if dynamic else tasks
        for round_ in range(self.max_rounds if dynamic else 1):
            counts["rounds"] += 1
            tried.update(pending)
            for group in self._generate(pending, trainer, step * self.max_rounds + round_, timing, round_ == 0):
                if dynamic:
                    self.pool.record(group.task, group.values, step)
                reason = spread_reason(group.values) if dynamic else None
                if reason is None:
                    kept.append(group)
                else:
                    counts[f"dropped_{reason}"] += 1
                    dropped.append(group)
            if len(kept) >= needed:
                break
            pending = self.pool.draw(needed - len(kept), step, exclude=tried)
            if not pending:
                break
        counts["filled_without_spread"] = max(0, needed - len(kept))
        kept = (kept + dropped[::-1])[:needed]  # the latest dropped groups fill a short step
        self._log(trainer, counts, timing, step)
        return self._output(kept)

    def greedy(self, rows: list[dict], trainer) -> list[str]:
        """One greedy completion per row (a prompt in `rows[i]["prompt"]`) on the policy's current
        weights, through the backend: what a validation pass@1 during training needs."""
        if not hasattr(self.generation, "greedy"):
            raise RuntimeError(f"rollout backend {self.backend or type(self.generation).__name__} has no greedy "
                               "generation; use grpo.rollout_backend=eval_generator")
        ids = self.generation.greedy([self.tokenize(row["prompt"]) for row in rows], trainer)
        return [trainer.processing_class.decode(c, skip_special_tokens=True) for c in ids]

    def summary(self) -> dict:
        """What summary.json keeps: the backend, groups dropped and filled over the run, the curriculum's events."""
        return {"backend": self.backend, "dynamic_sampling": self.dynamic,
                "groups": {k: v for k, v in self.totals.items() if v}, "curriculum": dict(self.pool.events),
                "tasks_retired": self.pool.counts(0)["retired"]}

    def close(self) -> None:
        close = getattr(self.generation, "close", None)
        if close:
            close()

    def _task_of(self, prompt) -> int:
        task = self.index.get(prompt_key(prompt))
        if task is None:
            raise RuntimeError("the rollout got a prompt that is not among the training rows")
        return task

    def _playable(self, tasks: list[int], step: int, counts: Counter) -> list[int]:
        """The sampler's tasks, each retired or waiting one swapped for a usable task when there is one."""
        out, taken = [], set(tasks)
        for task in tasks:
            if not self.pool.usable(task, step):
                fresh = self.pool.draw(1, step, exclude=taken)
                if fresh:
                    counts["swapped_by_curriculum"] += 1
                    task = fresh[0]
                    taken.add(task)
            out.append(task)
        return out

    def _ids(self, task: int) -> list[int]:
        if task not in self._prompt_ids:
            self._prompt_ids[task] = self.tokenize(self.rows[task]["prompt"])
        return self._prompt_ids[task]

    def _generate(self, tasks: list[int], trainer, seed: int, timing: Counter, first: bool) -> list[Group]:
        g = self.num_generations
        prompt_ids = [self._ids(t) for t in tasks for _ in range(g)]
        decode = trainer.processing_class.decode
        if self.judge is not None:
            self.judge.start(forget=first)

        def finished(index: int, tokens: list[int]) -> None:
            if self.judge is not None:
                self.judge.submit(index, decode(tokens, skip_special_tokens=True), self.rows[tasks[index // g]])

        started = time.perf_counter()
        completion_ids, logprobs = self.generation(prompt_ids, trainer, seed, finished)
        generated = time.perf_counter()
        values = self.judge.wait() if self.judge is not None else {}
        timing["generation_s"] += generated - started
        timing["judge_wait_s"] += time.perf_counter() - generated
        if self.judge is not None:
            timing["judge_busy_s"] += self.judge.busy_seconds
            timing["judge_busy_during_generation_s"] += self.judge.busy_before(generated)
        return [Group(task, completion_ids[k * g:(k + 1) * g], logprobs[k * g:(k + 1) * g] if logprobs else None,
                      [values.get(i) for i in range(k * g, (k + 1) * g)])
                for k, task in enumerate(tasks)]

    def _output(self, groups: list[Group]) -> dict:
        g = self.num_generations
        rows = [self.rows[group.task] for group in groups for _ in range(g)]
        columns = {key: [row[key] for row in rows] for key in rows[0]}
        logprobs = None
        if all(group.logprobs is not None for group in groups):
            logprobs = [lp for group in groups for lp in group.logprobs]
        return {**columns, "prompt_ids": [self._ids(group.task) for group in groups for _ in range(g)],
                "completion_ids": [c for group in groups for c in group.completion_ids], "logprobs": logprobs}

    def _log(self, trainer, counts: Counter, timing: Counter, step: int) -> None:
        self.totals.update(counts)
        for key in ("dropped_all_passed", "dropped_all_failed", "dropped_same_reward", "dropped_unjudged",
                    "filled_without_spread", "swapped_by_curriculum", "rounds"):
            trainer._log_metric(f"groups/{key}", float(counts[key]))
        for key, value in self.pool.counts(step).items():
            trainer._log_metric(f"curriculum/{key}", float(value))
        for key, value in timing.items():
            trainer._log_metric(f"timing/rollout_{key}", value)
        busy = timing["judge_busy_s"]
        if busy:
            trainer._log_metric("timing/judge_overlap", timing["judge_busy_during_generation_s"] / busy)
