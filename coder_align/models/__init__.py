"""Models: loading them (the embedded default, GGUF caching, <|EOT|>, LoRA and QLoRA), folding
an adapter into full weights, and random-initialised models with DeepSeek-Coder's shapes.

- `loading`: `load_model`, `load_tokenizer`, `resolve_model_path`, `stop_token_ids`, `apply_lora`.
- `merge`: `coder-align merge`; `load_merged` and `merge` of an adapter run.
- `stopping_base`: what an adapter on a local base records as peft's base, so plain peft stops at <|EOT|>.
- `random_weights`: random models and an offline tokenizer, for benchmarks and GPU tests.
- `threads`: how many CPU threads torch uses on a machine shared with other jobs.

Not here: what a run folder holds and how its model was prompted (`coder_align.run_dir`),
training (`coder_align.training`).
"""

from coder_align.models.loading import (
    EMBEDDED_ALIASES, ModelError, apply_lora, cache_root, convert_gguf, embedded_gguf, fit_embeddings, load_model,
    load_tokenizer, resolve_dtype, resolve_layers, resolve_model_path, score_head_expected, stop_token_ids,
)

__all__ = [
    "EMBEDDED_ALIASES", "ModelError", "apply_lora", "cache_root", "convert_gguf", "embedded_gguf", "fit_embeddings",
    "load_model", "load_tokenizer", "resolve_dtype", "resolve_layers", "resolve_model_path", "score_head_expected",
    "stop_token_ids",
]
