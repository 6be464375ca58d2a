"""Batch collators: per-batch padding (the official script's way) or padding-free packing."""

from __future__ import annotations

from coder_align.templates import IGNORE_INDEX


class PaddingCollator:
    """Right-pads each batch to its longest sample; padding gets label -100 and mask 0."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, examples: list[dict]) -> dict:
        import torch

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
    """Packs a batch into rows whose position_ids restart at each sample, with no attention mask.

    transformers derives a block-diagonal causal mask from the position_ids (sdpa, eager,
    flex) or variable-length boundaries (flash-attention), so no token attends across
    samples. Each sample's first token is prompt (label -100), so the shifted loss never
    predicts one sample from another.

    `max_row_tokens` caps a row's length (first-fit, longest samples first): without
    flash-attention, attention over a row is quadratic in its length, so one row of a whole
    batch can cost more than padding did. Shorter rows are filled up with a padding segment
    whose positions restart too and whose labels are -100, so it is invisible to real tokens.
    """

    def __init__(self, max_row_tokens: int | None = None, pad_token_id: int = 0):
        self.max_row_tokens = max_row_tokens
        self.pad_token_id = pad_token_id

    def rows(self, examples: list[dict]) -> list[list[dict]]:
        if not self.max_row_tokens:
            return [examples]
        rows: list[list[dict]] = []
        room: list[int] = []
        for e in sorted(examples, key=lambda e: len(e["input_ids"]), reverse=True):
            n = len(e["input_ids"])
            slot = next((i for i, r in enumerate(room) if r >= n), None)
            if slot is None:
                rows.append([])
                room.append(max(self.max_row_tokens, n))
                slot = len(rows) - 1
            rows[slot].append(e)
            room[slot] -= n
        return rows

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        packed = []
        for row in self.rows(examples):
            input_ids, labels, position_ids = [], [], []
            for e in row:
                input_ids += e["input_ids"]
                labels += [IGNORE_INDEX] + list(e["labels"][1:])
                position_ids += range(len(e["input_ids"]))
            packed.append((input_ids, labels, position_ids))
        width = max(len(ids) for ids, _, _ in packed)
        for ids, labels, positions in packed:
            pad = width - len(ids)
            ids += [self.pad_token_id] * pad
            labels += [IGNORE_INDEX] * pad
            positions += range(pad)
        return {
            "input_ids": torch.tensor([p[0] for p in packed], dtype=torch.long),  # (rows, T)
            "labels": torch.tensor([p[1] for p in packed], dtype=torch.long),
            "position_ids": torch.tensor([p[2] for p in packed], dtype=torch.long),
        }
