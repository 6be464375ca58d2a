"""Batch collators: per-batch padding (the official script's way) or padding-free packing."""

from __future__ import annotations

import torch

from coder_align.templates import IGNORE_INDEX


class PaddingCollator:
    """Right-pads each batch to its longest sample; padding gets label -100 and mask 0."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(e["input_ids"]) for e in examples)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(examples), length), self.pad_token_id, dtype=torch.long)  # (B, T)
        labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
        for i, e in enumerate(examples):
            n = len(e["input_ids"])
            input_ids[i, :n] = torch.tensor(e["input_ids"])
            labels[i, :n] = torch.tensor(e["labels"])
            attention_mask[i, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


class PackingCollator:
    """Concatenates a batch into one row with position_ids restarting at each sample.

    No attention_mask is returned: transformers then derives a block-diagonal causal mask
    from the position_ids (sdpa, eager, flex) or varlen boundaries (flash-attention), so
    no token attends across samples. Each sample's first token is prompt (label -100), so
    the shifted loss never predicts one sample from another.
    """

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        input_ids, labels, position_ids = [], [], []
        for e in examples:
            input_ids += e["input_ids"]
            labels += [IGNORE_INDEX] + list(e["labels"][1:])
            position_ids += range(len(e["input_ids"]))
        return {
            "input_ids": torch.tensor([input_ids], dtype=torch.long),  # (1, sum T)
            "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([position_ids], dtype=torch.long),
        }
