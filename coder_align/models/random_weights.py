"""Random-initialised models with DeepSeek-Coder's shapes, and a tokenizer made offline.

For benchmarks and GPU tests on machines that cannot reach a model hub: speed and memory
depend on a model's shapes, not on its weight values, so a random model with the published
shapes measures what the real one would. The tokenizer is a byte-level BPE trained in a
second on this package's own source: real merges and special tokens, no download.

Not here: loading real checkpoints (`models/loading.py`), or anything a trained model's quality
depends on.
"""

from __future__ import annotations

from pathlib import Path

import torch

# config.json of deepseek-ai/deepseek-coder-{1.3b,6.7b,33b}-{base,instruct}: Llama blocks,
# vocabulary 32256, 16K context by linear RoPE scaling (factor 4, theta 100000).
DEEPSEEK_CODER_SHAPES = {
    "1.3b": dict(hidden_size=2048, intermediate_size=5504, num_hidden_layers=24, num_attention_heads=16,
                 num_key_value_heads=16),
    "6.7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=32),
    "33b": dict(hidden_size=7168, intermediate_size=19200, num_hidden_layers=62, num_attention_heads=56,
                num_key_value_heads=8),
}
DEEPSEEK_CODER_COMMON = dict(vocab_size=32256, max_position_embeddings=16384, rms_norm_eps=1e-6,
                             tie_word_embeddings=False, hidden_act="silu",
                             rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 100000.0})
# --tiny: the same structure (the 33B keeps grouped-query attention) at a size a CPU trains in
# seconds; widths are multiples of 64, as bitsandbytes' CPU 4-bit kernel needs.
TINY_SHAPES = {
    "1.3b": dict(hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4),
    "6.7b": dict(hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4),
    "33b": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=1),
}
TINY_VOCAB = 1024


def shape_of(model_path: str) -> str:
    """`deepseek-ai/deepseek-coder-6.7b-instruct` -> `6.7b` (the recipes name their model this way)."""
    for size in DEEPSEEK_CODER_SHAPES:
        if f"-{size}-" in model_path or model_path.endswith(f"-{size}"):
            return size
    raise ValueError(f"{model_path}: not a DeepSeek-Coder model name (sizes: {', '.join(DEEPSEEK_CODER_SHAPES)})")


def llama_config(size: str, tiny: bool = False, vocab_size: int | None = None, attn_implementation: str = "sdpa"):
    from transformers import LlamaConfig

    shape = (TINY_SHAPES if tiny else DEEPSEEK_CODER_SHAPES)[size]
    common = dict(DEEPSEEK_CODER_COMMON)
    if tiny:
        common.update(vocab_size=TINY_VOCAB, max_position_embeddings=2048)
    if vocab_size is not None:
        common["vocab_size"] = vocab_size
    config = LlamaConfig(**shape, **common)
    config._attn_implementation = attn_implementation
    return config


def random_model(config, dtype: torch.dtype, device: str | torch.device = "cpu", seed: int = 0):
    """`config`'s model with random weights, built directly on `device` (a 33B model in bf16
    is 66 GB: initialising it on the GPU takes seconds, on a CPU minutes)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model


def non_embedding_parameters(model) -> int:
    """Parameters that do matrix work per token (all but the input embedding lookup)."""
    embedding = model.get_input_embeddings().weight
    return sum(p.numel() for p in model.parameters() if p is not embedding)


def quantize_4bit_(model, compute_dtype: torch.dtype = torch.bfloat16, skip: tuple[str, ...] = ("lm_head",)):
    """Replace every Linear (but `skip`) by bitsandbytes' NF4 Linear4bit with double quantisation,
    in place and one layer at a time, on the device the weights are on.

    What `from_pretrained(quantization_config=BitsAndBytesConfig(load_in_4bit=True,
    bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, ...))` does while loading, for
    a model that exists only in memory (there is no checkpoint to load from, and a 33B one
    would not fit the disk). tests/test_gpu_recipes.py checks both give the same model.
    """
    import bitsandbytes as bnb

    # Names, not modules: a list of modules would keep every bf16 weight alive until the end
    # (a 33B model: 66 GB of bf16 plus 18 GB of 4-bit, more than an 80 GB card holds).
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
             and not any(n == s or n.endswith(f".{s}") for s in skip)]
    for full in names:
        parent_name, _, name = full.rpartition(".")
        parent = model.get_submodule(parent_name)
        child = getattr(parent, name)
        quantized = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=compute_dtype, compress_statistics=True, quant_type="nf4",
                                      device="meta")
        weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, compress_statistics=True, quant_type="nf4")
        quantized.weight = weight.to(child.weight.device)  # .to() quantizes (CUDA, or bitsandbytes' CPU backend)
        if child.bias is not None:
            quantized.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
        setattr(parent, name, quantized)
        del child, weight  # the bf16 weight goes now, not at the end
    # What transformers' bitsandbytes quantizer sets after loading; peft's k-bit preparation reads it.
    model.is_loaded_in_4bit = True
    return model


def offline_tokenizer(path: str | Path, vocab_size: int = 2048):
    """A byte-level BPE tokenizer trained on this package's source, saved to `path`.

    Byte-level: any text encodes (nothing is unknown). BOS/EOS/PAD are special tokens, as
    in DeepSeek-Coder's tokenizer; `<|EOT|>` is left out on purpose, so loading it through
    `models.load_tokenizer` adds it the way it does for a base model that lacks it.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    source = sorted(Path(__file__).resolve().parents[1].rglob("*.py"))
    text = [p.read_text(encoding="utf-8") for p in source]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    special = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<pad>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(text, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=special[0], eos_token=special[1],
                                   pad_token=special[2])
    Path(path).mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(path)
    return fast


def save_random_model(path: str | Path, size: str, tiny: bool, dtype: torch.dtype = torch.bfloat16,
                      device: str = "cpu", tokenizer_vocab: int = 2048) -> Path:
    """An offline tokenizer and a random DeepSeek-Coder-shaped model saved together in `path`,
    loadable by every stage (`model.path=PATH`). The model keeps its shape's vocabulary; ids the
    small tokenizer lacks simply never come out of it as text."""
    path = Path(path)
    tokenizer = offline_tokenizer(path, tokenizer_vocab)
    config = llama_config(size, tiny=tiny)
    config.vocab_size = max(config.vocab_size, len(tokenizer))
    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    model = random_model(config, dtype, device)
    model.save_pretrained(path)
    del model
    return path
