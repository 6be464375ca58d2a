"""`CodeGRPOTrainer`: TRL's GRPOTrainer plus per-step timing and a clipped-completions warning.

Imported only when GRPO trains, so `import coder_align.grpo` does not import TRL.

What this relies on in TRL beyond its public API, checked by `check_trl` when this module
is imported (a TRL upgrade that changes them fails before a long run starts, naming what
changed) and by tests/test_grpo_trainer.py:

- `GRPOTrainer._generate(self, prompts)`: the one method around both transformers and vLLM
  generation, so timing it covers both. TRL 1.16 has no public hook for this: its own
  `profiling_context` timings go only to wandb/mlflow/trackio, not to the trainer's logs.
- `GRPOTrainer._log_metric(self, name, value)`: the hook TRL hands reward functions as
  `log_metric`; values are averaged per logging step across processes.
- Reward functions receive `prompts`, `completions`, `trainer_state` and `log_metric`
  (coder_align.reward_set keys a batch on them and logs through them).

Step timing and the warning use public `Trainer` hooks (`training_step`, `log`).
"""

from __future__ import annotations

import inspect
import logging
import time

import trl
from trl import GRPOTrainer

log = logging.getLogger("coder_align.grpo")

# method -> parameter names we call it with
RELIED_ON = {"_generate": ["self", "prompts"], "_log_metric": ["self", "name", "value"]}


def check_trl(trainer_class=GRPOTrainer) -> None:
    """Raise if TRL no longer has the private methods this trainer builds on."""
    problems = []
    for name, params in RELIED_ON.items():
        method = getattr(trainer_class, name, None)
        if not callable(method):
            problems.append(f"{trainer_class.__name__}.{name} no longer exists")
        elif list(inspect.signature(method).parameters) != params:
            problems.append(f"{trainer_class.__name__}.{name}{inspect.signature(method)} no longer takes {params[1:]}")
    if problems:
        raise RuntimeError(f"TRL {trl.__version__} changed what coder_align.grpo_trainer relies on: "
                           f"{'; '.join(problems)}. Use trl 1.16 or update coder_align/grpo_trainer.py.")


check_trl()


class CodeGRPOTrainer(GRPOTrainer):
    """GRPOTrainer plus generation/step timing and a warning when completions get clipped."""

    clipped_ratio_warning = 0.2

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.warnings: list[str] = []
        self._step_seconds: list[float] = []  # since the last log

    def _generate(self, prompts):
        started = time.perf_counter()
        result = super()._generate(prompts)
        self._log_metric("timing/generation_s", time.perf_counter() - started)
        return result

    def training_step(self, *args, **kwargs):
        # Includes generation and rewards when this step starts a new generation batch.
        started = time.perf_counter()
        loss = super().training_step(*args, **kwargs)
        self._step_seconds.append(time.perf_counter() - started)
        return loss

    def log(self, logs, start_time=None):
        if self._step_seconds and "loss" in logs:  # a training log, not eval or the final summary
            logs = {**logs, "timing/step_s": sum(self._step_seconds) / len(self._step_seconds)}
            self._step_seconds.clear()
        super().log(logs, start_time)
        clipped = logs.get("completions/clipped_ratio")
        if clipped is not None and clipped > self.clipped_ratio_warning and not self.warnings:
            message = (f"step {self.state.global_step}: {clipped:.0%} of completions hit "
                       f"max_completion_length={self.args.max_completion_length}; truncated code fails its "
                       "tests, so raise grpo.max_completion_length or set grpo.mask_truncated_completions=true")
            self.warnings.append(message)
            log.warning(message)
