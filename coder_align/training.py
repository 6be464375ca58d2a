"""Pieces every training stage shares: TrainingArguments, resume, run summary and loss plot."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def precision_flags(precision: str) -> dict:
    """bf16 where the hardware has it (fp16 gave NaN losses in DeepSeek's runs)."""
    if precision == "auto":
        on_gpu = torch.cuda.is_available()
        precision = "bf16" if on_gpu and torch.cuda.is_bf16_supported() else ("fp16" if on_gpu else "fp32")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def training_arguments(train, gradient_checkpointing: bool, args_class=None, **extra):
    """TrainingArguments (or a subclass such as TRL's GRPOConfig) from a TrainConfig.

    Extra keys pass straight through.
    """
    import inspect

    from transformers import TrainingArguments

    args_class = args_class or TrainingArguments

    # transformers 5.x renamed gradient_checkpointing to activation_checkpointing.
    name = "activation_checkpointing"
    if name not in inspect.signature(TrainingArguments.__init__).parameters:
        name = "gradient_checkpointing"
    checkpointing = {
        name: gradient_checkpointing,
        f"{name}_kwargs": {"use_reentrant": False} if gradient_checkpointing else None,
    }
    if train.deepspeed and not torch.cuda.is_available():
        # accelerate only finds the gloo process group that `deepspeed` started on CPU
        # when told it runs on CPU; DeepSpeed itself is still used (ZeRO over gloo).
        extra = {"use_cpu": True, "ddp_backend": "gloo", **extra}
        if "LOCAL_RANK" in os.environ:
            import deepspeed

            deepspeed.init_distributed(dist_backend="gloo")  # so ZeRO sees the real world size
    return args_class(
        output_dir=train.output_dir,
        learning_rate=train.learning_rate,
        lr_scheduler_type=train.lr_scheduler_type,
        warmup_steps=train.warmup_steps,
        num_train_epochs=train.num_train_epochs,
        max_steps=train.max_steps,
        per_device_train_batch_size=train.per_device_train_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        logging_steps=train.logging_steps,
        save_steps=train.save_steps,
        save_total_limit=train.save_total_limit,
        seed=train.seed,
        deepspeed=train.deepspeed,
        report_to=train.report_to,
        disable_tqdm=train.disable_progress_bar,
        **checkpointing,
        remove_unused_columns=False,
        **precision_flags(train.precision),
        **extra,
    )


def resolve_resume(resume: str, output_dir: str) -> str | None:
    """`auto`: the newest checkpoint-N in output_dir, if any; `none`; or an explicit path."""
    if resume in ("none", "", "false"):
        return None
    if resume == "auto":
        from transformers.trainer_utils import get_last_checkpoint

        if not os.path.isdir(output_dir):
            return None
        last = get_last_checkpoint(output_dir)
        if last:
            log.info("resuming from %s", last)
        return last
    if not os.path.isdir(resume):
        raise FileNotFoundError(f"train.resume: checkpoint directory not found: {resume}")
    return resume


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def write_summary(output_dir: str | Path, summary: dict) -> None:
    path = Path(output_dir) / "summary.json"
    path.write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def plot_metric(log_history: list[dict], key: str | list[str], path: str | Path, title: str) -> bool:
    """Line plot of logged metrics (one or several keys) over steps; False when nothing was logged."""
    keys = [key] if isinstance(key, str) else list(key)
    series = {k: [(h["step"], h[k]) for h in log_history if h.get(k) is not None and "step" in h] for k in keys}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, points in series.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 50 else None,
                label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(keys[0] if len(keys) == 1 else "value")
    if len(keys) > 1:
        ax.legend(fontsize=7)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


@dataclass
class TrainingRun:
    result: object  # transformers TrainOutput
    seconds: float
    resumed_from: str | None
    losses: list[float]
    epochs: float
    steps: int
    is_main: bool


def train_and_save(trainer, config, tokenizer, out: Path) -> TrainingRun:
    """Train (resuming as `config.train.resume` says), then save weights or adapter on every
    rank (ZeRO-3 gathers 16-bit weights) and tokenizer, generation config and resolved
    config on the main process."""
    from coder_align.config import save_config

    resume = resolve_resume(config.train.resume, str(out))
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started
    trainer.save_model(str(out))  # stage3_gather_16bit_weights_on_model_save in our ZeRO-3 JSONs
    main = is_main_process()
    if main:
        tokenizer.save_pretrained(out)
        trainer.model.generation_config.save_pretrained(out)
        save_config(config, Path(out) / "coder_align_config.yaml")
    history = trainer.state.log_history
    return TrainingRun(
        result=result,
        seconds=seconds,
        resumed_from=resume,
        losses=[h["loss"] for h in history if "loss" in h],
        epochs=trainer.state.epoch or 0.0,
        steps=trainer.state.global_step,
        is_main=main,
    )
