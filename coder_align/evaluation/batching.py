"""Continuous batching for `transformers` models on a KV cache: every row of the batch is busy.

`generate` in transformers runs a batch until its longest row ends: with a 512-token cap and
a model that sometimes loops to the cap, most of the batch computes padding after its rows
have stopped (on the embedded model 59% of the token slots of a HumanEval batch were idle).
Here a finished row leaves the batch at once and the next prompt takes its place: the new
prompts are prefilled together, their KV cache is left-padded to the running one and
concatenated on the batch axis, and leading columns that every row masks are trimmed. So
the work follows the tokens really generated, not batches x the longest row.

Greedy decoding gives the tokens `generate` gives for each prompt alone (up to floating-point
summation order, which the batch's composition can change). Sampling draws from one seeded
generator, so a run is reproducible for a given batch size and prompt order.

Not here: stop strings' meaning for the caller (the caller still cuts texts at its stops),
chat templates and prompts (tasks.py), vLLM (generation.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it runs: importing eval's generators stays light
    import torch

# A stop string is searched in the text of the last few tokens only; tokens are at least a
# character, so this many tokens cover any stop string up to TAIL_TOKENS characters.
TAIL_TOKENS = 24


def pick_tokens(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Next token per row: argmax for temperature <= 0, else nucleus sampling."""
    import torch

    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        drop = sorted_probs.cumsum(dim=-1) - sorted_probs > top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        choice = torch.multinomial(sorted_probs, 1, generator=generator)
        return order.gather(-1, choice).squeeze(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _left_pad(tensor: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    import torch

    missing = length - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


class _Batch:
    """The running rows: their prompt indices, KV cache, attention mask and last tokens."""

    def __init__(self):
        self.rows: list[int] = []
        self.cache = None
        self.mask: torch.Tensor | None = None  # (rows, cached length): 1 for real tokens
        self.last: torch.Tensor | None = None  # (rows,): the token to feed next

    def add(self, rows: list[int], cache, mask: torch.Tensor, last: torch.Tensor) -> None:
        import torch

        if self.cache is None:
            self.rows, self.cache, self.mask, self.last = list(rows), cache, mask, last
            return
        length = max(self.mask.shape[1], mask.shape[1])
        for mine, theirs in zip(self.cache.layers, cache.layers):
            mine.keys = torch.cat([_left_pad(mine.keys, length, 2), _left_pad(theirs.keys, length, 2)])
            mine.values = torch.cat([_left_pad(mine.values, length, 2), _left_pad(theirs.values, length, 2)])
        self.mask = torch.cat([_left_pad(self.mask, length, 1), _left_pad(mask, length, 1)])
        self.rows += rows
        self.last = torch.cat([self.last, last])

    def keep(self, keep: list[int]) -> None:
        """Only the rows at positions `keep`; columns no row needs any more are dropped."""
        import torch

        if not keep:
            self.__init__()
            return
        index = torch.tensor(keep, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        start = int(mask.any(dim=0).int().argmax())  # first column some row still attends to
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, start:]
            layer.values = layer.values.index_select(0, index)[:, :, start:]
        self.mask = mask[:, start:]
        self.rows = [self.rows[i] for i in keep]
        self.last = self.last.index_select(0, index)


def continuous_generate(model, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, batch_size: int,
                        stop_ids: Sequence[int], pad_id: int, temperature: float = 0.0, top_p: float = 1.0,
                        seed: int = 0, stop_strings: Sequence[str] = (),
                        decode: Callable[[list[int]], str] | None = None,
                        on_finished: Callable[[int, list[int]], None] | None = None) -> list[list[int]]:
    """Generated token ids per prompt (prompt excluded; a final stop token included, as
    `generate` does). A row ends at a stop token, after `max_new_tokens`, or once the text
    of its last tokens (`decode`) contains a stop string. Prompts are taken in the order
    given; sort them by length first so that rows prefilled together share a length.
    `on_finished(row, tokens)` is called as each row ends, so a caller can use it at once
    (GRPO's rollout sends it to the sandbox while the other rows still generate)."""
    import inspect

    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    # transformers 5.24 renamed `past_key_values` to `cache` (the old name warns)
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    generator = torch.Generator(device=device).manual_seed(seed) if temperature > 0 else None
    stops = set(stop_ids)
    if stop_strings and decode is None:
        raise ValueError("stop_strings need a decode function")
    outputs: list[list[int]] = [[] for _ in prompts]
    waiting = deque(range(len(prompts)))
    batch = _Batch()

    def finished(row: int, token: int) -> bool:
        out = outputs[row]
        out.append(token)
        if token in stops or len(out) >= max_new_tokens:
            return True
        if stop_strings:
            tail = decode(out[-TAIL_TOKENS:])
            return any(s in tail for s in stop_strings)
        return False

    def settle(tokens: torch.Tensor, rows: list[int]) -> list[int]:
        """Append each row's token; positions of the rows that go on."""
        going = []
        for position, (row, token) in enumerate(zip(rows, tokens.tolist())):
            if finished(row, token):
                if on_finished:
                    on_finished(row, outputs[row])
            else:
                going.append(position)
        return going

    with torch.no_grad():
        while waiting or batch.rows:
            free = batch_size - len(batch.rows)
            if free > 0 and waiting:
                rows = [waiting.popleft() for _ in range(min(free, len(waiting)))]
                ids, mask = _left_padded([prompts[r] for r in rows], pad_id, device)
                cache = DynamicCache()
                logits = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0),
                               use_cache=True, logits_to_keep=1, **{cache_arg: cache}).logits[:, -1]
                tokens = pick_tokens(logits, temperature, top_p, generator)
                going = settle(tokens, rows)
                if going:
                    index = torch.tensor(going, device=device)
                    for layer in cache.layers:
                        layer.keys, layer.values = layer.keys.index_select(0, index), layer.values.index_select(0, index)
                    batch.add([rows[i] for i in going], cache, mask.index_select(0, index), tokens.index_select(0, index))
                continue  # admit more before decoding when first tokens already ended rows
            # one decoding step for every running row
            positions = batch.mask.sum(dim=1, keepdim=True)  # real tokens so far = the new token's position
            batch.mask = torch.cat([batch.mask, batch.mask.new_ones((len(batch.rows), 1))], dim=1)
            logits = model(input_ids=batch.last[:, None], attention_mask=batch.mask, position_ids=positions,
                           use_cache=True, **{cache_arg: batch.cache}).logits[:, -1]
            tokens = pick_tokens(logits, temperature, top_p, generator)
            batch.last = tokens
            going = settle(tokens, batch.rows)
            if len(going) < len(batch.rows):
                batch.keep(going)
    return outputs


def _left_padded(sequences: list[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, s in enumerate(sequences):
        if s:
            ids[i, length - len(s):] = torch.tensor(list(s), dtype=torch.long)
            mask[i, length - len(s):] = 1
    return ids.to(device), mask.to(device)
