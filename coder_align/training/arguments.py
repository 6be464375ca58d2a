"""TrainingArguments for every training stage, from the shared `TrainConfig` group.

Not here: the output directory and resuming (`output_dir.py`), the training loop (`run.py`).
"""

from __future__ import annotations

import os

from coder_align.models.threads import fit_threads_to_machine


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def precision_flags(precision: str) -> dict:
    """bf16 where the hardware has it (fp16 gave NaN losses in DeepSeek's runs)."""
    import torch

    if precision == "auto":
        on_gpu = torch.cuda.is_available()
        precision = "bf16" if on_gpu and torch.cuda.is_bf16_supported() else ("fp16" if on_gpu else "fp32")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def training_arguments(train, gradient_checkpointing: bool, args_class=None, **extra):
    """TrainingArguments (or a subclass such as TRL's GRPOConfig) from a TrainConfig.

    Extra keys pass straight through.
    """
    import inspect

    import torch
    from transformers import TrainingArguments

    args_class = args_class or TrainingArguments
    fit_threads_to_machine()  # a shared CPU: as many threads as there are free cores, not every core

    # transformers 5.x renamed gradient_checkpointing to activation_checkpointing.
    name = "activation_checkpointing"
    if name not in inspect.signature(TrainingArguments.__init__).parameters:
        name = "gradient_checkpointing"
    checkpointing = {
        name: gradient_checkpointing,
        f"{name}_kwargs": {"use_reentrant": False} if gradient_checkpointing else None,
    }
    if train.precision == "bf16" and not torch.cuda.is_available():
        # bf16 autocast on CPU (fast where the CPU has AVX512-BF16/AMX); transformers asks to be told
        extra = {"use_cpu": True, **extra}
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
        dataloader_pin_memory=torch.cuda.is_available(),  # a CPU has no pinned memory to copy from
        **precision_flags(train.precision),
        **extra,
    )
