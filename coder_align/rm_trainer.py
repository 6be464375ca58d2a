"""`CodeRewardTrainer`: TRL's RewardTrainer (pairwise Bradley-Terry loss) plus an optional
pointwise pass/fail loss.

Imported only when a reward model trains, so `import coder_align.reward_model` does not import TRL.

TRL 1.16's RewardTrainer takes pre-tokenized pairs (`chosen_ids`, `rejected_ids`), batches
chosen rows first and rejected rows second, and minimises -log sigmoid(r_chosen - r_rejected);
it logs `accuracy` and `margin` per step and `eval_accuracy` on the held-out pairs. What it
lacks is the label each row already has: the chosen side passed its tests, the rejected side
failed. `pointwise_weight` > 0 adds binary cross-entropy on those labels,
-(log sigmoid(r_chosen) + log sigmoid(-r_rejected)) / 2, which anchors the score's zero (a
sigmoid of the score reads as a pass probability); the pairwise loss alone only orders rows.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from trl import RewardTrainer


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
