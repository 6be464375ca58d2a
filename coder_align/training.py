"""Pieces every training stage shares: TrainingArguments, output directory and resume, run summary."""

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
        **precision_flags(train.precision),
        **extra,
    )


# Settings that do not change what is trained: a resume may differ in these and nothing else.
NOT_SHAPING_TRAINING = {
    "train.output_dir", "train.resume", "train.overwrite", "train.report_to", "train.disable_progress_bar",
    "train.logging_steps", "train.save_steps", "train.save_total_limit", "model.gradient_checkpointing",
    "sample_prompts", "max_new_tokens", "grpo.clipped_ratio_warning",
}
CONFIG_FILE = "coder_align_config.yaml"
# what a run writes besides weights (overwritten anyway); completions.jsonl is appended to
RESULT_FILES = (CONFIG_FILE, "summary.json", "completions.jsonl", "samples.jsonl", "loss.png", "rewards.png", "runs",
                "start_model")


def _flatten(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict) and key not in ("rewards", "reward_kwargs"):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(saved: dict, current: dict) -> list[str]:
    """Keys that shape training and differ, as `key: saved -> current`."""
    a, b = _flatten(saved), _flatten(current)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k not in NOT_SHAPING_TRAINING and a.get(k) != b.get(k)]


def prepare_output_dir(config, out: Path) -> str | None:
    """Before anything loads: check the output directory is writable, pick the checkpoint to
    resume from (refusing one written with another config), and save the resolved config
    there at the start, so a crashed run still says what it was. Returns the checkpoint."""
    import shutil

    import yaml

    from coder_align.config import ConfigError, save_config, to_dict

    out = Path(out)
    if config.train.overwrite and out.is_dir() and is_main_process():
        for old in [*out.glob("checkpoint-*"), *(out / name for name in RESULT_FILES)]:
            shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)
    resume = "never" if config.train.overwrite else config.train.resume
    checkpoint = resolve_resume(resume, str(out))
    if checkpoint:
        check_checkpoint(checkpoint)
        # the checkpoint's own copy (save_serving_files) beats the directory's, which a later
        # train.resume=never run into the same directory may have replaced
        saved_path = next((p for p in (Path(checkpoint) / CONFIG_FILE, Path(checkpoint).parent / CONFIG_FILE)
                           if p.is_file()), None)
        if saved_path is not None:
            saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
            differences = config_differences(saved, to_dict(config))
            if differences:
                raise ConfigError(
                    f"{out} holds {Path(checkpoint).name} of a run with another config ({'; '.join(differences)}); "
                    "resuming would train a mix of the two. Use a new train.output_dir, or start over here with "
                    "train.resume=never (keeps old files) or train.overwrite=true (deletes its checkpoints)")
        else:
            log.warning("%s: no %s beside it, so its config cannot be compared; resuming anyway",
                        checkpoint, CONFIG_FILE)
    if is_main_process():
        try:
            if not out.exists():
                CREATED_DIRS.append(out)
            out.mkdir(parents=True, exist_ok=True)
            save_config(config, out / CONFIG_FILE)
        except OSError as e:
            raise ConfigError(f"train.output_dir {out} is not writable: {e.strerror or e}") from e
    return checkpoint


CREATED_DIRS: list[Path] = []  # output directories this process created (see remove_unused_outputs)


def remove_unused_outputs() -> list[Path]:
    """After a failed run: remove the output directories this process created that hold only the
    config written at the start (the run failed before training wrote anything). Returns them."""
    import shutil

    removed = []
    for out in CREATED_DIRS:
        if out.is_dir() and {p.name for p in out.iterdir()} <= {CONFIG_FILE}:
            shutil.rmtree(out)
            removed.append(out)
    CREATED_DIRS.clear()
    return removed


def check_checkpoint(checkpoint: str) -> None:
    """A checkpoint to resume from must hold its trainer state and readable weights; a run
    killed while saving leaves one that fails deep inside transformers otherwise."""
    from coder_align.config import ConfigError

    path = Path(checkpoint)
    way_out = (f"delete {path} to resume from the checkpoint before it, or set train.resume=never "
               "(or train.overwrite=true) to start over")
    problem = None
    state = path / "trainer_state.json"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problem = "no trainer_state.json"
    except (ValueError, OSError) as e:
        problem = f"trainer_state.json is unreadable ({e})"
    weights = [p for p in path.iterdir() if p.name.endswith((".safetensors", ".bin", ".pt"))
               or p.name.startswith("global_step")]  # global_stepN/: DeepSpeed
    if problem is None and not weights:
        problem = "no weights or adapter file"
    for file in (p for p in weights if p.suffix == ".safetensors"):
        try:
            from safetensors import safe_open

            with safe_open(str(file), "pt") as f:
                f.keys()
        except Exception as e:  # a truncated file has a bad header or size
            problem = f"{file.name} is unreadable ({type(e).__name__}: {e})"
            break
    if problem:
        raise ConfigError(f"cannot resume from {path}: {problem}; {way_out}")


def checkpoint_step(checkpoint: str | None) -> int | None:
    """The global step a checkpoint was saved at (trainer_state.json), or None."""
    if not checkpoint:
        return None
    state = Path(checkpoint) / "trainer_state.json"
    if state.is_file():
        return json.loads(state.read_text(encoding="utf-8")).get("global_step")
    name = Path(checkpoint).name
    return int(name.rsplit("-", 1)[-1]) if name.rsplit("-", 1)[-1].isdigit() else None


def resolve_resume(resume: str, output_dir: str) -> str | None:
    """`auto`: the newest checkpoint-N in output_dir, if any; `never`/`none`; or an explicit path."""
    if resume in ("never", "none", "", "false"):
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


@dataclass
class TrainingRun:
    result: object  # transformers TrainOutput
    seconds: float
    resumed_from: str | None
    resumed_from_step: int | None
    losses: list[float]
    epochs: float
    steps: int
    is_main: bool


def leave_process_group_together() -> None:
    """Under a launcher, wait until every rank is done (the main process writes after the
    others have saved) and close the process group. A rank that simply exits while another
    still writes can die in the gloo/NCCL teardown ("terminate called without an active
    exception") and fail the whole launch."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def save_serving_files(directory: str | Path, model, tokenizer, config) -> None:
    """What makes a weights or adapter directory servable and mergeable on its own: the
    tokenizer with <|EOT|> and the chat template, the generation config that stops on it,
    and the resolved config (merge reads the base model from it)."""
    from coder_align.config import save_config

    tokenizer.save_pretrained(directory)
    if getattr(model, "generation_config", None) is not None:  # a reward model (score head) generates nothing
        model.generation_config.save_pretrained(directory)
    save_config(config, Path(directory) / CONFIG_FILE)
    if _added_rows_are_trainable_tokens(model):
        # peft saves whole embedding matrices whenever the vocabulary grew (two 28M-value copies
        # for SmolLM2, ~240 MB), though the only changed rows are the trainable tokens it saves
        # anyway; AutoPeftModelForCausalLM grows the base to the saved tokenizer on load.
        model.save_pretrained(directory, save_embedding_layers=False)
    readable_by_umask(directory)


def readable_by_umask(directory: str | Path) -> None:
    """Give files saved with mode 0600 (safetensors and torch write through private temporary
    files) the permissions the user's umask asks for, like every other file in the directory."""
    mask = os.umask(0)
    os.umask(mask)
    for path in Path(directory).iterdir():
        if path.is_file() and path.stat().st_mode & 0o777 == 0o600:
            path.chmod(0o666 & ~mask)


def _added_rows_are_trainable_tokens(model) -> bool:
    """A LoRA model whose added-token rows train as peft trainable tokens (SFT). GRPO keeps them
    frozen copies of EOS, which only the full embedding matrices carry, so those stay saved.
    ZeRO-3 partitioned weights are left to the Trainer's gathered save."""
    peft_config = getattr(model, "peft_config", None)
    if not peft_config or any(hasattr(p, "ds_id") for p in model.parameters()):
        return False
    return bool(getattr(peft_config.get(model.active_adapter), "trainable_token_indices", None))


def log_last_step_callback():
    """A TrainerCallback that logs the last step too, so a run whose max_steps is not a multiple
    of logging_steps (or is below it) still has a final loss and a point in the plots."""
    from transformers import TrainerCallback

    class LogLastStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.max_steps and state.global_step >= state.max_steps:
                control.should_log = True
            return control

    return LogLastStep()


def servable_checkpoints_callback(tokenizer, config):
    """A TrainerCallback that completes every checkpoint-N the Trainer saves (which holds only
    weights and optimizer state) with `save_serving_files`, so any checkpoint can be evaluated,
    merged or served like the final directory."""
    from transformers import TrainerCallback

    class ServableCheckpoints(TrainerCallback):
        def on_save(self, args, state, control, model=None, **kwargs):
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and checkpoint.is_dir() and model is not None:
                save_serving_files(checkpoint, getattr(model, "module", model), tokenizer, config)

    return ServableCheckpoints()


def train_and_save(trainer, config, tokenizer, out: Path, resume: str | None = None) -> TrainingRun:
    """Train (from `resume`, the checkpoint `prepare_output_dir` picked), then save weights or
    adapter on every rank (ZeRO-3 gathers 16-bit weights) and tokenizer, generation config and
    resolved config on the main process."""
    trainer.add_callback(servable_checkpoints_callback(tokenizer, config))
    trainer.add_callback(log_last_step_callback())
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started
    trainer.save_model(str(out))  # stage3_gather_16bit_weights_on_model_save in our ZeRO-3 JSONs
    main = is_main_process()
    if main:
        save_serving_files(out, trainer.model, tokenizer, config)
    leave_process_group_together()
    history = trainer.state.log_history
    return TrainingRun(
        result=result,
        seconds=seconds,
        resumed_from=resume,
        resumed_from_step=checkpoint_step(resume),
        losses=[h["loss"] for h in history if "loss" in h],
        epochs=trainer.state.epoch or 0.0,
        steps=trainer.state.global_step,
        is_main=main,
    )
