"""How GRPO uses the reward functions: a `RewardSet` scores, combines and records a batch
(the functions are in `execution.py` and `reward_model.py`, their names in `registry.py`).

    rewards = RewardSet({"unit_test": 1.0, "format": 0.1}, record_to="out/completions.jsonl")
    GRPOTrainer(..., reward_funcs=rewards.functions(), args=GRPOConfig(reward_weights=rewards.weights))

Names are short (`unit_test`), the function's own name (`unit_test_reward`), or an import
path (`my_pkg.rewards:length_penalty`). TRL gets one function per component, each keeping
its reward's `__name__` (it becomes the metric key `rewards/<name>/mean`). Whichever one TRL
calls first scores every component for the batch, and the others take their column from
that result, found by an explicit key (the step and the prompt/completion texts; a batch
is served at most once per component), not by TRL's call order or object identity. So:

- a row that a judging reward (unit tests, compile) could not judge because the sandbox
  failed (None) becomes None in *every* component: TRL then leaves it out of the group
  baseline and gives it zero advantage. An infrastructure failure never counts as wrong,
  and is counted (`unjudged`) and logged (`code/unjudged`).
- pass rate, compile rate and reward time are logged per step next to TRL's metrics.
- a reward that raises stops training with its name (`on_error="error"`), or makes the
  batch unscorable and is counted (`on_error="skip"`).

Not done here: running code (that is `coder_align.sandbox`) and weighting (TRL sums the
weighted components, then normalises within each group).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from coder_align.config import ConfigError
from coder_align.data.grpo_rows import decode_tests
from coder_align.rewards.execution import compile_reward, completion_text
from coder_align.rewards.registry import JUDGING, resolve_reward

log = logging.getLogger(__name__)


class RewardSet:
    def __init__(self, weights: dict[str, float], reward_kwargs: dict[str, dict] | None = None,
                 on_error: str = "error", record_to: str | Path | None = None, compile_rate: bool = True):
        if not weights:
            raise ConfigError("grpo.rewards is empty: name at least one reward, e.g. {unit_test: 1.0}")
        reward_kwargs = dict(reward_kwargs or {})
        self.components: list[tuple[str, Callable, dict]] = []
        self.weights: list[float] = []
        for name, weight in weights.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise ConfigError(f"grpo.rewards.{name}: the weight must be a number, got {weight!r}")
            fn = resolve_reward(name)
            extra = reward_kwargs.pop(name, None) or reward_kwargs.pop(fn.__name__, None) or {}
            if not isinstance(extra, dict):
                raise ConfigError(f"grpo.reward_kwargs.{name} must be a mapping of keyword arguments")
            validate = getattr(fn, "validate_kwargs", None)
            if validate is not None:  # e.g. reward_model's path: a ConfigError now, not at the first step
                validate(extra)
            self.components.append((fn.__name__, fn, extra))
            self.weights.append(float(weight))
        if reward_kwargs:
            raise ConfigError(f"grpo.reward_kwargs: {', '.join(reward_kwargs)} is not among grpo.rewards")
        names = [c[0] for c in self.components]
        if len(set(names)) != len(names):
            raise ConfigError(f"grpo.rewards names the same function twice: {names}")
        self.on_error = on_error
        self.record_to = Path(record_to) if record_to else None
        # Compile rate is logged even when compile_reward is not a reward (Python: a parse, cheap).
        self.compile_rate = compile_rate and "compile_reward" not in names
        self.unjudged: Counter = Counter()  # rows a judging reward returned None for, by reward
        self.reward_errors: Counter = Counter()  # batches lost to a reward that raised, by reward
        self.rows_scored = 0
        self.reward_seconds = 0.0
        # The batch being served: its key, every component's values, components already served.
        self._batch: dict | None = None

    @property
    def names(self) -> list[str]:
        return [c[0] for c in self.components]

    def functions(self) -> list[Callable]:
        """One TRL reward function per component, named like the reward it serves."""
        return [self._component(i) for i in range(len(self.components))]

    def _component(self, index: int) -> Callable:
        name = self.components[index][0]

        def serve(completions, **kwargs):
            key = batch_key(completions, kwargs)
            batch = self._batch
            # A new batch, or this component was already served for it (the same texts again at
            # the same step are a new batch): score every component once for it.
            if batch is None or batch["key"] != key or name in batch["served"]:
                batch = self._batch = {"key": key, "values": self.score(completions, **kwargs), "served": set()}
            batch["served"].add(name)
            return batch["values"][name]

        serve.__name__ = serve.__qualname__ = self.components[index][0]
        return serve

    def score(self, completions, **kwargs) -> dict[str, list[float | None]]:
        """Every component for one batch, unjudged rows set to None in all of them."""
        n = len(completions)
        if "tests" in kwargs:  # JSON text in the dataset (see data.grpo_rows.to_dataset)
            kwargs["tests"] = decode_tests(kwargs["tests"])
        log_metric = kwargs.get("log_metric")
        started = time.perf_counter()
        values: dict[str, list] = {}
        for name, fn, extra in self.components:
            try:
                out = list(fn(completions, **kwargs, **extra))
            except Exception as e:
                if self.on_error != "skip":
                    raise RuntimeError(
                        f"reward '{name}' raised {type(e).__name__}: {e}. A reward must return None for rows it "
                        "cannot judge; set grpo.on_reward_error=skip to count such batches and go on") from e
                self.reward_errors[name] += 1
                log.warning("reward '%s' raised %s: %s; this batch of %d completions is left unscored",
                            name, type(e).__name__, e, n)
                out = [None] * n
            if len(out) != n:
                raise RuntimeError(f"reward '{name}' returned {len(out)} values for {n} completions")
            values[name] = [None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
                            for v in out]
        compile_values = values.get("compile_reward")
        if self.compile_rate:
            compile_values = compile_reward(completions, language=kwargs.get("language"))
        # A judging reward's None is a sandbox failure: the row is unscorable, not wrong.
        for name in JUDGING & set(values):
            self.unjudged[name] += sum(v is None for v in values[name])
        lost = [i for i in range(n) if any(values[name][i] is None for name in JUDGING & set(values))]
        for i in lost:
            for name in values:
                values[name][i] = None
        elapsed = time.perf_counter() - started
        self.reward_seconds += elapsed
        self.rows_scored += n

        metrics = {"timing/reward_s": elapsed, "code/unjudged": float(len(lost))}
        if "unit_test_reward" in values:
            judged = [v for v in values["unit_test_reward"] if v is not None]
            metrics["code/pass_rate"] = sum(v == 1.0 for v in judged) / len(judged) if judged else math.nan
        if compile_values is not None:
            judged = [v for v in compile_values if v is not None]
            metrics["code/compile_rate"] = sum(v == 1.0 for v in judged) / len(judged) if judged else math.nan
        if log_metric is not None:
            for key, value in metrics.items():
                if not math.isnan(value):
                    log_metric(key, value)
        if self.record_to is not None:
            self._record(completions, values, kwargs)
        return values

    def _record(self, completions, values, kwargs) -> None:
        state = kwargs.get("trainer_state")
        step = state.global_step + 1 if state is not None else None  # the optimizer step it trains
        task_ids = kwargs.get("task_id") or [None] * len(completions)
        self.record_to.parent.mkdir(parents=True, exist_ok=True)
        with open(self.record_to, "a", encoding="utf-8") as f:
            for i, completion in enumerate(completions):
                f.write(json.dumps({"step": step, "task_id": task_ids[i], "completion": completion_text(completion),
                                    "rewards": {name: values[name][i] for name in values}}) + "\n")

    def summary(self) -> dict:
        return {"rows_scored": self.rows_scored, "reward_seconds": round(self.reward_seconds, 2),
                "unjudged": {k: v for k, v in self.unjudged.items() if v}, "reward_errors": dict(self.reward_errors),
                "weights": dict(zip(self.names, self.weights))}


def batch_key(completions, kwargs: dict) -> tuple:
    """What identifies one batch of TRL reward calls: the optimizer step, the prompts and
    the completion texts (TRL passes `trainer_state` and `prompts` to every reward function)."""
    state = kwargs.get("trainer_state")
    prompts = kwargs.get("prompts")
    return (getattr(state, "global_step", None), repr(prompts) if prompts is not None else None,
            tuple(completion_text(c) for c in completions))
