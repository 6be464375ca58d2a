"""Supervised instruction tuning, the DeepSeek-Coder-Instruct way.

    deepspeed coder_align/sft.py --config configs/sft/deepseek-coder-6.7b-full-zero3.yaml
    coder-align sft --config configs/sft/deepseek-coder-6.7b-qlora.yaml data.path=my.jsonl
    python -c "from coder_align.sft import main, SFTConfig; main(SFTConfig())"

Steps: tokenizer (with <|EOT|> and our chat template) -> data (validated, tokenized, loss
only on responses, over-long samples dropped and counted) -> model (full, LoRA or QLoRA)
-> transformers Trainer (DeepSpeed when configured) -> output directory with weights or
adapter, tokenizer, resolved config, summary.json, TensorBoard logs and loss.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run as `deepspeed coder_align/sft.py`: import the package, not sibling files.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import json
import logging
from dataclasses import dataclass, field, replace
from typing import ClassVar, Literal

from coder_align.config import (
    FRACTION, NON_NEGATIVE, ONE_OR_MORE, ConfigError, ModelConfig, PeftConfig, Range, TrainConfig, parse_args, to_dict,
)
from coder_align.data import DataError, PackingCollator, PaddingCollator, build_sft_examples, read_sft_rows
from coder_align.models.loading import check_model_path, load_model, load_tokenizer, stop_token_ids
from coder_align.run_dir import read_run
from coder_align.templates import system_prompt_note
from coder_align.training import (
    is_main_process, prepare_output_dir, train_and_save, training_arguments, write_summary,
)
from coder_align.training.plots import plot_loss, smoothed_final

log = logging.getLogger("coder_align.sft")


@dataclass
class SFTDataConfig:
    path: str = ""  # .jsonl / .json / .parquet file, or a hub dataset name
    split: str = "train"
    template: Literal["deepseek", "model"] = "deepseek"  # model: the tokenizer's own chat template
    system_prompt: str | None = None  # None: the model's run's, else DeepSeek's for DeepSeek models, else neutral
    max_length: int = 1024  # model_max_length of the official script
    overlong: Literal["drop", "truncate_prompt"] = "drop"
    on_invalid: Literal["error", "skip"] = "error"
    packing: bool = False  # padding-free: one row per batch, position_ids restart per sample
    max_rows: int | None = None  # use at most this many valid rows of each file (reading stops there)
    # More files trained on beside `path`: {file: weight}, the times each of its rows is used per
    # epoch (0.5: a random half; 2: twice, a code row's copies each with its own FIM draw).
    mix: dict[str, float] = field(default_factory=dict)
    # Plain code rows {"text": ...} become FIM samples at this rate (0.5 PSM in DeepSeek-Coder),
    # so an instruct model keeps infilling; FIM sentinels are added to the tokenizer if missing.
    fim_rate: float = 0.0
    fim_spm_rate: float = 0.0
    seed: int = 0

    RANGES: ClassVar[dict] = {"max_length": Range(2), "max_rows": ONE_OR_MORE, "fim_rate": FRACTION,
                              "fim_spm_rate": FRACTION, "seed": NON_NEGATIVE}


@dataclass
class SFTConfig:
    """Supervised instruction tuning (DeepSeek-Coder-Instruct recipe)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    peft: PeftConfig = field(default_factory=PeftConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(output_dir="outputs/sft"))
    # Instructions answered by the tuned model after training (printed, saved to samples.jsonl).
    sample_prompts: list[str] = field(default_factory=list)
    max_new_tokens: int = 256

    RANGES: ClassVar[dict] = {"max_new_tokens": ONE_OR_MORE}


def main(config: SFTConfig) -> dict:
    """Train, save, and return the run summary (also written to summary.json)."""
    from transformers import Trainer, set_seed

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not config.data.path:
        raise ConfigError("data.path is required (a .jsonl/.json/.parquet file or a hub dataset name)")
    check_mix(config.data.mix)
    config, prompt_note = resolve_system_prompt(config)
    set_seed(config.train.seed)
    out = Path(config.train.output_dir)

    # --- data, then tokenizer: rows are checked before a model (or its GGUF conversion) loads ---
    rows = read_sft_rows(config.data)
    if not rows[0]:
        raise DataError(config.data.path, f"no trainable rows left ({rows[1].as_dict()})", "no_rows")
    check_model_path(config.model.path)  # a typo'd path fails before anything is written
    resume = prepare_output_dir(config, out)  # before the model: a wrong resume or directory fails fast
    tokenizer = load_tokenizer(config.model.path, config.data.template, config.data.system_prompt,
                               fim_tokens=config.data.fim_rate > 0)
    examples, data_stats = build_sft_examples(config.data, tokenizer, rows)
    log.info("data: %s", data_stats.as_dict())
    if not examples:
        raise DataError(config.data.path, f"no trainable rows left ({data_stats.as_dict()})", "no_rows")

    # --- training arguments before the model: ZeRO-3 must partition it while loading ------
    args = training_arguments(config.train, config.model.gradient_checkpointing)

    # --- model --------------------------------------------------------------------------
    model = load_model(config.model, tokenizer, config.peft, training=True, template=config.data.template)
    if config.data.packing:
        check_packing_support(model)
    if hasattr(model, "print_trainable_parameters") and is_main_process():
        model.print_trainable_parameters()

    if config.data.packing:
        collator = PackingCollator(config.data.max_length, tokenizer.pad_token_id)
    else:
        collator = PaddingCollator(tokenizer.pad_token_id)
    trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=collator)

    # --- train and save ------------------------------------------------------------------
    run = train_and_save(trainer, config, tokenizer, out, resume)
    if not run.is_main:
        return {}
    summary = {
        "stage": "sft",
        "model": config.model.path,
        "peft": config.peft.method,
        "data": data_stats.as_dict(),
        "steps": run.steps,
        "epochs": round(run.epochs, 3),
        "train_seconds": round(run.seconds, 2),
        "tokens_per_second": round(data_stats.tokens * run.epochs / run.seconds, 1),
        "supervised_tokens_per_second": round(data_stats.supervised_tokens * run.epochs / run.seconds, 1),
        "first_loss": run.losses[0] if run.losses else None,
        "final_loss": run.losses[-1] if run.losses else None,
        **smoothed_final(run.losses),
        "train_loss": run.result.training_loss,
        **run.provenance(),
        "packing": config.data.packing,
        "system_prompt": prompt_note,
        "peak_gpu_memory_gb": peak_gpu_memory_gb(),
        "config": to_dict(config),
    }
    plot_loss(trainer.state.log_history, out / "loss.png", "SFT training loss", run.resumed_from_step)
    if config.sample_prompts:
        summary["samples"] = generate_samples(unwrap(model), tokenizer, config, out)
    write_summary(out, summary)
    return summary


def resolve_system_prompt(config: SFTConfig) -> tuple[SFTConfig, dict | None]:
    """The config with the system prompt trained on made explicit (DeepSeek's for DeepSeek models,
    a neutral one for others, unless data.system_prompt or the starting run says), and the
    summary's note on it; saved with the run, so later stages prompt as SFT trained."""
    if config.data.template != "deepseek":
        return config, {"text": None, "source": "template: model (the tokenizer's own chat template)"}
    start = read_run(config.model.path, system_prompt=config.data.system_prompt)
    note = system_prompt_note(start.system_prompt, start.system_prompt_source)
    log.info("system prompt: %r (%s; to change: %s)", note["text"], note["source"], note["to_change"])
    return replace(config, data=replace(config.data, system_prompt=start.system_prompt)), note


def check_mix(mix: dict) -> None:
    """data.mix must map files to positive weights (a typo'd weight would silently change the recipe)."""
    for path, weight in mix.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            raise ConfigError(f"data.mix: the weight of {path!r} must be a number > 0 (times its rows are used "
                              f"per epoch), got {weight!r}")


def peak_gpu_memory_gb() -> float | None:
    """What this process held on its GPU at most (the caching allocator's reserved peak)."""
    import torch

    return round(torch.cuda.max_memory_reserved() / 1e9, 2) if torch.cuda.is_available() else None


def unwrap(model):
    return getattr(model, "module", model)


def check_packing_support(model) -> None:
    """Refuse packing unless this model really keeps packed samples apart.

    Runs two short random samples alone and packed; their logits must match. This is
    what transformers gives with sdpa/eager/flex (mask from position_ids) and flash-attention.
    """
    import torch

    base = unwrap(model)
    if any(hasattr(p, "ds_id") for p in base.parameters()):
        return  # ZeRO-3 partitioned weights cannot run a probe here; transformers' masks apply.
    vocab = base.get_input_embeddings().weight.shape[0]
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randint(0, vocab, (n,), generator=g).tolist() for n in (7, 5))
    batch = PackingCollator()([{"input_ids": a, "labels": a}, {"input_ids": b, "labels": b}])
    device = next(base.parameters()).device
    was_training = base.training
    base.eval()
    with torch.no_grad():
        alone = base(torch.tensor([b], device=device), use_cache=False).logits[0].float()
        packed = base(batch["input_ids"].to(device), position_ids=batch["position_ids"].to(device),
                      use_cache=False).logits[0, len(a):].float()
    base.train(was_training)
    # A leak across samples shifts logits by O(1); low precision only by rounding.
    tolerance = (1e-4 if alone.dtype == torch.float32 and next(base.parameters()).dtype == torch.float32 else 3e-2)
    if (alone - packed).abs().max().item() > tolerance * max(1.0, alone.abs().max().item()):
        raise RuntimeError(
            "data.packing=true: this model attends across packed samples (attn_implementation="
            f"{base.config._attn_implementation}); use sdpa, eager or flash_attention_2, or set data.packing=false"
        )


def generate(model, tokenizer, instructions: list[str], max_new_tokens: int = 256,
             template: str = "deepseek") -> list[dict]:
    """Greedy answers to single-turn instructions, stopped at <|EOT|> (or EOS).

    Each answer is {"instruction", "response", "stopped_at_eot"}; `stopped_at_eot` is False
    when generation ran into max_new_tokens instead of a stop token.
    """
    import torch

    model.eval()
    model.config.use_cache = True
    device = next(model.parameters()).device
    stops = stop_token_ids(tokenizer, template)
    answers = []
    for instruction in instructions:
        messages = [{"role": "user", "content": instruction}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        ids = {k: v.to(device) for k, v in ids.items()}
        with torch.no_grad():
            output = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                    eos_token_id=stops, pad_token_id=tokenizer.pad_token_id)
        new = output[0, ids["input_ids"].shape[1]:]
        stopped = bool(len(new)) and int(new[-1]) in stops
        answers.append({"instruction": instruction, "response": tokenizer.decode(new, skip_special_tokens=True),
                        "stopped_at_eot": stopped})
    return answers


def generate_samples(model, tokenizer, config: SFTConfig, out: Path) -> list[dict]:
    """Greedy answers to config.sample_prompts, stopped at <|EOT|>; written to samples.jsonl."""
    samples = generate(model, tokenizer, config.sample_prompts, config.max_new_tokens, config.data.template)
    for s in samples:
        print(f"\n### Instruction:\n{s['instruction']}\n### Response:\n{s['response']}\n"
              f"[{'stopped at <|EOT|>' if s['stopped_at_eot'] else 'hit max_new_tokens'}]")
    with open(out / "samples.jsonl", "w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(s) + "\n")
    return samples


def cli(argv: list[str]) -> int:
    config = parse_args(SFTConfig, argv, prog="coder-align sft")
    summary = main(config)
    if summary:
        out = Path(config.train.output_dir)
        print(f"\nfinal loss {summary['final_loss']} (first {summary['first_loss']}), "
              f"{summary['tokens_per_second']} tokens/s; output in {out}:")
        for p in sorted(out.iterdir()):
            print(f"  {p.name}{'/' if p.is_dir() else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
