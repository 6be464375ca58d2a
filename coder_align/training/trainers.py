"""The TRL trainers the stages use, each TRL's own with what this project adds.

- `CodeGRPOTrainer`: TRL's GRPOTrainer plus per-step timing and a clipped-completions warning.
- `CodeRewardTrainer`: TRL's RewardTrainer (pairwise Bradley-Terry loss) plus an optional
  pointwise pass/fail loss.

This module imports TRL (its classes are the bases), so the stages import it only when they
train: `import coder_align.grpo` must not import TRL.

What CodeGRPOTrainer relies on in TRL beyond its public API, checked by `check_trl` when this
module is imported (a TRL upgrade that changes them fails before a long run starts, naming
what changed) and by tests/test_grpo_trainer.py:

- `GRPOTrainer._generate(self, prompts)`: the one method around both transformers and vLLM
  generation, so timing it covers both. TRL 1.16 has no public hook for this: its own
  `profiling_context` timings go only to wandb/mlflow/trackio, not to the trainer's logs.
- `GRPOTrainer._log_metric(self, name, value)`: the hook TRL hands reward functions as
  `log_metric`; values are averaged per logging step across processes.
- Reward functions receive `prompts`, `completions`, `trainer_state` and `log_metric`
  (`coder_align.rewards.reward_set` keys a batch on them and logs through them).
- The rollout (`coder_align.training.rollout`) is TRL's `rollout_func(prompts, trainer)`
  (marked experimental in TRL 1.16): its `prompt_ids`/`completion_ids`/`logprobs` are trained
  on, and its other keys overwrite the inputs' columns before the rewards see them (so a
  group replaced by dynamic sampling is scored on its own tests). With `grpo.rollout_backend`
  trl or vllm it generates through `GRPOTrainer._generate_single_turn(prompt_ids, images,
  multimodal_fields, num_generations)`, TRL's own transformers/vLLM path.

Step timing and the warning use public `Trainer` hooks (`training_step`, `log`).

CodeRewardTrainer: TRL 1.16's RewardTrainer takes pre-tokenized pairs (`chosen_ids`,
`rejected_ids`), batches chosen rows first and rejected rows second, and minimises
-log sigmoid(r_chosen - r_rejected); it logs `accuracy` and `margin` per step and
`eval_accuracy` on the held-out pairs. What it lacks is the label each row already has: the
chosen side passed its tests, the rejected side failed. `pointwise_weight` > 0 adds binary
cross-entropy on those labels, -(log sigmoid(r_chosen) + log sigmoid(-r_rejected)) / 2, which
anchors the score's zero (a sigmoid of the score reads as a pass probability); the pairwise
loss alone only orders rows.
"""

from __future__ import annotations

import inspect
import logging
import time

import torch
import trl
from torch.nn import functional as F
from trl import GRPOTrainer, RewardTrainer

log = logging.getLogger("coder_align.grpo")

# method -> parameter names we call it with
RELIED_ON = {"_generate": ["self", "prompts"], "_log_metric": ["self", "name", "value"],
             "_calculate_rewards": ["self", "inputs", "prompts", "completions", "completion_ids_list"],
             "_generate_single_turn": ["self", "prompt_ids", "images", "multimodal_fields", "num_generations",
                                       "has_tool_images"]}


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
        raise RuntimeError(f"TRL {trl.__version__} changed what coder_align.training.trainers relies on: "
                           f"{'; '.join(problems)}. Use trl 1.16 or update coder_align/training/trainers.py.")


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

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # Dynamic sampling (training/rollout.py) may put other tasks in a batch's rows; TRL merges their
        # columns, "prompt" included, into `inputs` but hands the rewards the prompts it sampled, so a
        # prompt-reading reward (the reward model) would score a completion against another task.
        prompts = [row["prompt"] for row in inputs]
        return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)

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


class CodeRewardTrainer(RewardTrainer):
    pointwise_weight = 0.0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if self.pointwise_weight:
            chosen, rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)  # (B,), (B,)
            pointwise = -(F.logsigmoid(chosen).mean() + F.logsigmoid(-rejected).mean()) / 2
            loss = loss + self.pointwise_weight * pointwise
            mode = "train" if self.model.training else "eval"
            self._metrics[mode]["pointwise_loss"].append(self.accelerator.gather_for_metrics(pointwise.detach())
                                                         .mean().item())
        return (loss, outputs) if return_outputs else loss
