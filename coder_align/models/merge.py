"""Fold a LoRA or QLoRA adapter into full weights: `coder-align merge ADAPTER_DIR --out DIR`.

The base is re-loaded unquantised (bf16 by default), so a QLoRA adapter merges into a
bf16 copy of the base, never into 4-bit weights. The result is a plain model directory
(safetensors, tokenizer with the training chat template, generation config that stops
on <|EOT|>) that any serving stack loads without peft.

Every function takes the `Run` its caller already read (`run_dir.read_run`), or a path,
read once here.

Not here: training adapters (`models.loading.apply_lora`); a stage that starts from an
adapter merges it once into its output directory (`training.output_dir.merged_start`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from coder_align.config import show_defaults
from coder_align.models.loading import fit_embeddings, readable_by_umask, resolve_dtype, resolve_model_path
from coder_align.run_dir import CONFIG_FILE, Run, as_run, is_adapter_dir

__all__ = ["base_model_of", "cli", "is_adapter_dir", "load_merged", "merge", "merge_dtype"]


def base_model_of(adapter_dir: str | Path) -> str:
    """The base the adapter was trained on (as `run_dir.read_run` resolves it)."""
    if not is_adapter_dir(adapter_dir):
        raise FileNotFoundError(f"{adapter_dir}: no adapter_config.json; is this a LoRA output directory?")
    return as_run(adapter_dir).weights


def merge_dtype(run: Run, base: str | None = None) -> str:
    """`auto`: the dtype the adapter was trained against, so merging does not change the model's
    greedy output: the base's own dtype, or bf16 for a QLoRA adapter (its base was 4-bit)."""
    if (run.config.get("peft") or {}).get("method") == "qlora":
        return "bfloat16"
    from transformers import AutoConfig

    stored = getattr(AutoConfig.from_pretrained(resolve_model_path(base or run.weights)), "dtype", None)
    name = str(stored).removeprefix("torch.") if stored else ""
    return name if name in ("float32", "bfloat16", "float16") else "float32"


def load_merged(run_or_path: Run | str | Path, base: str | None = None, dtype: str = "auto"):
    """(merged model, tokenizer) of an adapter run: base re-loaded unquantised, grown to the
    adapter's vocabulary, adapter folded in; generation config from the adapter run.
    `dtype="auto"` merges in the dtype the adapter was trained against (`merge_dtype`)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    run = as_run(run_or_path)
    if not run.adapter:
        raise FileNotFoundError(f"{run.path}: no adapter_config.json; is this a LoRA output directory?")
    adapter_dir = Path(run.adapter)
    if dtype == "auto":
        dtype = merge_dtype(run, base)
    tokenizer = AutoTokenizer.from_pretrained(run.tokenizer)  # carries <|EOT|> and the chat template
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(base or run.weights), dtype=resolve_dtype(dtype))
    fit_embeddings(model, tokenizer)  # the adapter was trained against the grown vocabulary
    model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    if (adapter_dir / "generation_config.json").exists():
        model.generation_config = GenerationConfig.from_pretrained(adapter_dir)
    return model, tokenizer


def merge(run_or_path: Run | str | Path, out: str | Path, base: str | None = None, dtype: str = "auto") -> Path:
    """Write the merged model of an adapter run to `out`; returns `out`."""
    run, out = as_run(run_or_path), Path(out)
    model, tokenizer = load_merged(run, base, dtype)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    for name in (CONFIG_FILE, "summary.json"):
        if (Path(run.adapter) / name).exists():
            shutil.copy(Path(run.adapter) / name, out / name)
    readable_by_umask(out)  # safetensors writes 0600
    return out


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="coder-align merge", description=__doc__.splitlines()[0])
    parser.add_argument("adapter", help="output directory of a LoRA/QLoRA run (adapter_model.safetensors)")
    parser.add_argument("--out", required=True, help="directory for the merged model")
    parser.add_argument("--base", help="base model (default: the one recorded in the adapter directory)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"],
                        help="auto (default): the base's own dtype, bf16 for QLoRA; another changes greedy output")
    args = show_defaults(parser).parse_args(argv)
    out = merge(args.adapter, args.out, args.base, args.dtype)
    print(f"merged model written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
