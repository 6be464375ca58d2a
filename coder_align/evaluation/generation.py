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
    """transformers models through `batching.continuous_generate`: a finished row's place goes
    to the next prompt at once, longest prompts first so that prompts prefilled together
    share a length."""

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
        from coder_align.evaluation.batching import continuous_generate

        tok = self.tokenizer
        greedy = settings.temperature <= 0
        # Greedy samples are identical: generate one and repeat it.
        per_prompt = 1 if greedy else settings.n
        ids = [tok(p, add_special_tokens=add_special_tokens).input_ids for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -len(ids[i]))
        rows = [i for i in order for _ in range(per_prompt)]
        done = [0]

        def progress(_row: int) -> None:
            done[0] += 1
            if done[0] % 50 == 0 or done[0] == len(rows):
                log.info("generated %d/%d completions", done[0], len(rows))

        pad = tok.pad_token_id if tok.pad_token_id is not None else self.stop_ids[0]
        generated = continuous_generate(
            self.model, [ids[i] for i in rows], max_new_tokens=settings.max_new_tokens,
            batch_size=settings.batch_size, stop_ids=self.stop_ids, pad_id=pad,
            temperature=settings.temperature, top_p=settings.top_p, seed=settings.seed, stop_strings=stops,
            decode=lambda t: tok.decode(t, skip_special_tokens=True), on_finished=progress)
        results: list[list[str]] = [[] for _ in prompts]
        clipped: list[list[bool]] = [[] for _ in prompts]
        stop_set = set(self.stop_ids)
        for i, tokens, text in zip(rows, generated, tok.batch_decode(generated, skip_special_tokens=True)):
            results[i].append(text)
            clipped[i].append(len(tokens) >= settings.max_new_tokens and not stop_set.intersection(tokens[-1:])
                              and not any(s in text for s in stops))
        if greedy:
            return [r * settings.n for r in results], [c * settings.n for c in clipped]
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
