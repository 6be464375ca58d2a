"""Continued pretraining on a code corpus, with document-level FIM and optional RoPE scaling.

    deepspeed coder_align/pretrain.py --config configs/pretrain/deepseek-coder-6.7b-continue-16k-zero3.yaml
    coder-align pretrain --config configs/pretrain/quickstart-cpu.yaml data.path=corpus.jsonl

Steps: tokenizer (+ FIM sentinels where missing) -> corpus rows (`text`, as written by
`coder-align corpus build`) -> FIM per document (PSM at rate 0.5, DeepSeek-Coder's choice)
-> tokens, EOS between documents -> fixed windows -> Trainer (every token is a label)
-> output directory like the SFT stage's. The long-context option sets RoPE linear
scaling and theta (DeepSeek-Coder: factor 4, theta 100000 for 16K), written into the
saved config so inference uses the same positions.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from coder_align.config import (
    FRACTION, NON_NEGATIVE, ONE_OR_MORE, POSITIVE, ConfigError, ModelConfig, PeftConfig, Range, TrainConfig,
    parse_args, to_dict,
)
from coder_align.data.records import DataError, iter_rows
from coder_align.fim import apply_fim, split_fim
from coder_align.models.loading import load_model, load_tokenizer
from coder_align.training import prepare_output_dir, train_and_save, training_arguments, write_summary
from coder_align.training.plots import plot_loss, smoothed_final

log = logging.getLogger("coder_align.pretrain")


@dataclass
class PretrainDataConfig:
    path: str = ""  # corpus JSONL (coder-align corpus build) or a hub dataset name
    split: str = "train"
    text_field: str = "text"
    fim_rate: float = 0.5  # DeepSeek-Coder: 50% PSM
    fim_spm_rate: float = 0.0  # share of FIM documents in SPM order (as data.fim_spm_rate in SFT)
    max_length: int = 2048  # tokens per training window (the name SFT uses for its sample length)
    on_invalid: Literal["error", "skip"] = "error"
    max_rows: int | None = None  # use at most this many valid documents (as data.max_rows in SFT and GRPO)
    seed: int = 0

    ALIASES: ClassVar[dict] = {"spm_rate": "fim_spm_rate", "seq_length": "max_length", "max_documents": "max_rows"}
    RANGES: ClassVar[dict] = {"fim_rate": FRACTION, "fim_spm_rate": FRACTION, "max_length": Range(2),
                              "max_rows": ONE_OR_MORE, "seed": NON_NEGATIVE}


@dataclass
class RopeConfig:
    scaling_factor: float | None = None  # linear scaling; DeepSeek-Coder 16K: 4.0
    theta: float | None = None  # base frequency; DeepSeek-Coder 16K: 100000

    RANGES: ClassVar[dict] = {"scaling_factor": POSITIVE, "theta": POSITIVE}


@dataclass
class PretrainConfig:
    """Continued pretraining with FIM (DeepSeek-Coder base recipe)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    rope: RopeConfig = field(default_factory=RopeConfig)
    peft: PeftConfig = field(default_factory=PeftConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(output_dir="outputs/pretrain", learning_rate=5e-5))


def main(config: PretrainConfig) -> dict:
    from transformers import Trainer, set_seed

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not config.data.path:
        raise ConfigError("data.path is required (a corpus .jsonl from `coder-align corpus build`, or a hub dataset)")
    set_seed(config.train.seed)
    out = Path(config.train.output_dir)

    # --- tokenizer, corpus, FIM, fixed windows --------------------------------------------
    documents, doc_stats = read_documents(config.data)  # before the tokenizer: a GGUF model converts there
    if not documents:
        raise DataError(config.data.path, f"no usable documents ({doc_stats})", "no_rows")
    tokenizer = load_pretrain_tokenizer(config.model.path)
    windows, pack_stats = pack_documents(documents, tokenizer, config.data)
    log.info("corpus: %s, packing: %s", doc_stats, pack_stats)
    if not windows:
        raise DataError(config.data.path, f"not enough text for one window of {config.data.max_length} tokens",
                        "no_rows")
    resume = prepare_output_dir(config, out)  # before the model: a wrong resume or directory fails fast

    # --- model (RoPE overrides are part of the saved config) -----------------------------
    args = training_arguments(config.train, config.model.gradient_checkpointing)
    model = load_model(config.model, tokenizer, config.peft, training=True, template="model",
                       config_overrides=rope_overrides(config.rope))
    trainer = Trainer(model=model, args=args, train_dataset=windows, data_collator=stack_windows)

    # --- train and save ---------------------------------------------------------------------
    run = train_and_save(trainer, config, tokenizer, out, resume)
    if not run.is_main:
        return {}
    summary = {
        "stage": "pretrain",
        "model": config.model.path,
        "corpus": doc_stats,
        "packing": pack_stats,
        "steps": run.steps,
        "train_seconds": round(run.seconds, 2),
        "tokens_per_second": round(pack_stats["tokens_in_windows"] * run.epochs / run.seconds, 1),
        "first_loss": run.losses[0] if run.losses else None,
        "final_loss": run.losses[-1] if run.losses else None,
        **smoothed_final(run.losses),
        "train_loss": run.result.training_loss,
        "rope_parameters": rope_overrides(config.rope),
        "resumed": run.resumed_from is not None,
        "resumed_from": run.resumed_from,
        "resumed_from_step": run.resumed_from_step,
        "config": to_dict(config),
    }
    plot_loss(trainer.state.log_history, out / "loss.png", "Continued pretraining loss", run.resumed_from_step)
    write_summary(out, summary)
    return summary


def load_pretrain_tokenizer(path: str):
    """The model's tokenizer with DeepSeek's FIM sentinels added as special tokens if missing."""
    tokenizer = load_tokenizer(path, template="model", fim_tokens=True)
    if tokenizer.eos_token is None:
        raise ValueError(f"{path}: tokenizer has no EOS token to separate documents")
    return tokenizer


def read_documents(data: PretrainDataConfig) -> tuple[list[str], dict]:
    """Texts of the corpus rows; rows without usable text raise or are counted."""
    documents, skipped = [], Counter()
    for item in iter_rows(data.path, data.split):
        if data.max_rows is not None and len(documents) >= data.max_rows:
            break
        try:
            if isinstance(item, DataError):
                raise item
            text = item.data.get(data.text_field)
            if not isinstance(text, str):
                raise DataError(item.where, f"missing or non-string field '{data.text_field}'", "missing_text")
            if not text.strip():
                raise DataError(item.where, f"field '{data.text_field}' is empty", "empty_text")
            documents.append(text)
        except DataError as e:
            if data.on_invalid != "skip":
                raise
            skipped[e.reason] += 1
    return documents, {"documents": len(documents), "skipped_by_reason": dict(skipped)}


def pack_documents(documents: list[str], tokenizer, data: PretrainDataConfig) -> tuple[list[dict], dict]:
    """FIM per document, then one token stream with EOS after each document, cut into windows.

    The final partial window is dropped (and its tokens counted): padding it would train
    on pad tokens, and carrying it over would break reproducibility across resumes.
    """
    rng = random.Random(data.seed)
    stream: list[int] = []
    fim_documents = 0
    for text in documents:
        text = apply_fim(text, rng, data.fim_rate, data.fim_spm_rate)
        fim_documents += split_fim(text) is not None
        stream += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    n = len(stream) // data.max_length
    windows = [{"input_ids": stream[i * data.max_length:(i + 1) * data.max_length]} for i in range(n)]
    stats = {
        "fim_documents": fim_documents,
        "tokens": len(stream),
        "windows": n,
        "tokens_in_windows": n * data.max_length,
        "tail_tokens_dropped": len(stream) - n * data.max_length,
    }
    return windows, stats


def stack_windows(examples: list[dict]):
    import torch

    ids = torch.tensor([e["input_ids"] for e in examples], dtype=torch.long)  # (B, max_length)
    return {"input_ids": ids, "labels": ids.clone()}


def rope_overrides(rope: RopeConfig) -> dict:
    """Model-config overrides for RoPE (transformers 5 `rope_parameters`)."""
    if rope.scaling_factor is None and rope.theta is None:
        return {}
    params: dict = {"rope_type": "linear" if rope.scaling_factor else "default"}
    if rope.scaling_factor:
        params["factor"] = float(rope.scaling_factor)
    if rope.theta:
        params["rope_theta"] = float(rope.theta)
    return {"rope_parameters": params}


def cli(argv: list[str]) -> int:
    config = parse_args(PretrainConfig, argv, prog="coder-align pretrain")
    summary = main(config)
    if summary:
        print(f"final loss {summary['final_loss']} (first {summary['first_loss']}); output in {config.train.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
