"""Batched generation: transformers on CPU/GPU, vLLM when it is installed and a GPU is there.

Both backends take prompt *texts* and return, per prompt, `n` generated texts with the
prompt removed. Stop strings end a sequence early to save time; the caller still cuts
completions at the stops (tasks.cut_at_stops), because a stop string can end mid-token
and transformers keeps the whole token. Not here: prompts and templates (tasks.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class GenerationSettings:
    n: int = 1
    temperature: float = 0.0  # 0: greedy
    top_p: float = 0.95
    max_new_tokens: int = 512
    batch_size: int = 8
    seed: int = 0


def vllm_usable() -> bool:
    """vLLM only with a GPU; its import is optional and never required."""
    try:
        import torch

        if not torch.cuda.is_available():
            return False
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


class HFGenerator:
    """transformers `generate` over left-padded batches, longest prompts first."""

    backend = "transformers"

    def __init__(self, model, tokenizer, stop_ids: list[int]):
        self.model, self.tokenizer, self.stop_ids = model, tokenizer, stop_ids
        self.model.eval()
        self.model.config.use_cache = True

    def generate(self, prompts: list[str], settings: GenerationSettings, stops: list[str],
                 add_special_tokens: bool = True) -> list[list[str]]:
        return self.generate_with_clipping(prompts, settings, stops, add_special_tokens)[0]

    def generate_with_clipping(self, prompts: list[str], settings: GenerationSettings, stops: list[str],
                               add_special_tokens: bool = True) -> tuple[list[list[str]], list[list[bool]]]:
        """`generate`'s texts, and per text whether it ran into max_new_tokens (no stop token
        or stop string ended it): a clipped answer is not one to train on."""
        import torch

        tok = self.tokenizer
        tok.padding_side = "left"  # new tokens must follow every prompt's last token directly
        device = next(self.model.parameters()).device
        greedy = settings.temperature <= 0
        # Greedy samples are identical: generate one and repeat it.
        per_prompt = 1 if greedy else settings.n
        lengths = [len(tok(p, add_special_tokens=add_special_tokens).input_ids) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -lengths[i])  # similar lengths share a batch
        results: list[list[str]] = [[] for _ in prompts]
        clipped: list[list[bool]] = [[] for _ in prompts]
        stop_set = set(self.stop_ids)
        torch.manual_seed(settings.seed)
        for start in range(0, len(order), settings.batch_size):
            idx = order[start:start + settings.batch_size]
            batch = tok([prompts[i] for i in idx], return_tensors="pt", padding=True,
                        add_special_tokens=add_special_tokens).to(device)
            kwargs = dict(max_new_tokens=settings.max_new_tokens, eos_token_id=self.stop_ids,
                          pad_token_id=tok.pad_token_id, num_return_sequences=per_prompt)
            if greedy:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            else:
                kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=None)
            if stops:
                kwargs.update(stop_strings=stops, tokenizer=tok)
            with torch.no_grad():
                out = self.model.generate(**batch, **kwargs)  # (B * per_prompt, T_prompt + T_new)
            new = out[:, batch["input_ids"].shape[1]:]
            texts = tok.batch_decode(new, skip_special_tokens=True)
            # finished sequences hold a stop id (then padding) or end in a stop string
            cut = [not stop_set.intersection(row.tolist()) and not any(s in text for s in stops)
                   for row, text in zip(new, texts)]
            for j, i in enumerate(idx):
                chunk = slice(j * per_prompt, (j + 1) * per_prompt)
                results[i] = texts[chunk] * settings.n if greedy else texts[chunk]
                clipped[i] = cut[chunk] * settings.n if greedy else cut[chunk]
            log.info("generated %d/%d prompts", min(start + settings.batch_size, len(order)), len(order))
        return results, clipped


class VLLMGenerator:
    """vLLM's offline engine; stop strings and stop token ids are applied by vLLM itself."""

    backend = "vllm"

    def __init__(self, model_path: str, tokenizer, stop_ids: list[int], dtype: str = "auto"):
        from vllm import LLM

        self.tokenizer, self.stop_ids = tokenizer, stop_ids
        self.llm = LLM(model=model_path, tokenizer=model_path, dtype=dtype)

    def generate(self, prompts: list[str], settings: GenerationSettings, stops: list[str],
                 add_special_tokens: bool = True) -> list[list[str]]:
        return self.generate_with_clipping(prompts, settings, stops, add_special_tokens)[0]

    def generate_with_clipping(self, prompts: list[str], settings: GenerationSettings, stops: list[str],
                               add_special_tokens: bool = True) -> tuple[list[list[str]], list[list[bool]]]:
        from vllm import SamplingParams

        greedy = settings.temperature <= 0
        # older vLLM refuses n > 1 with greedy sampling; the samples would be identical anyway
        params = SamplingParams(n=1 if greedy else settings.n, temperature=max(settings.temperature, 0.0),
                                top_p=1.0 if greedy else settings.top_p,
                                max_tokens=settings.max_new_tokens, stop=stops or None,
                                stop_token_ids=self.stop_ids, seed=settings.seed)
        # Token ids, so BOS handling matches the transformers path exactly.
        ids = [self.tokenizer(p, add_special_tokens=add_special_tokens).input_ids for p in prompts]
        outputs = self.llm.generate([{"prompt_token_ids": i} for i in ids], params)
        texts = [[o.outputs[0].text] * settings.n if greedy else [c.text for c in o.outputs] for o in outputs]
        clipped = [[o.outputs[0].finish_reason == "length"] * settings.n if greedy
                   else [c.finish_reason == "length" for c in o.outputs] for o in outputs]
        return texts, clipped
