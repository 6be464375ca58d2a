"""Training and saving, the same way in every stage: `train_and_save` runs the Trainer (from the
checkpoint `output_dir.prepare_output_dir` picked) and leaves a directory that serves, merges
and evaluates on its own; `write_summary` writes summary.json.

Not here: TrainingArguments (`arguments.py`), checks before loading (`output_dir.py`), plots.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from coder_align.config import save_config
from coder_align.models.loading import readable_by_umask
from coder_align.models.stopping_base import record_stopping_base
from coder_align.models.threads import fit_threads_to_machine
from coder_align.run_dir import CONFIG_FILE
from coder_align.training.arguments import is_main_process
from coder_align.training.output_dir import checkpoint_step


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
    cpu_threads: list[dict]  # [{"from_step": 0, "threads": 2}, ...]: see fit_threads_callback

    def provenance(self) -> dict:
        """What a summary says of how the run went, besides its results: where it resumed
        from and the CPU threads it trained with."""
        return {"resumed": self.resumed_from is not None, "resumed_from": self.resumed_from,
                "resumed_from_step": self.resumed_from_step, "cpu_threads": self.cpu_threads}


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
    tokenizer.save_pretrained(directory)
    generation = getattr(model, "generation_config", None)  # None: a reward model (score head) generates nothing
    if generation is not None:
        generation.save_pretrained(directory)
    save_config(config, Path(directory) / CONFIG_FILE)
    if _added_rows_are_trainable_tokens(model):
        # peft saves whole embedding matrices whenever the vocabulary grew (two 28M-value copies
        # for SmolLM2, ~240 MB), though the only changed rows are the trainable tokens it saves
        # anyway; AutoPeftModelForCausalLM grows the base to the saved tokenizer on load.
        model.save_pretrained(directory, save_embedding_layers=False)
    if generation is not None and getattr(model, "peft_config", None):
        # plain peft generates with its base's generation config (models/stopping_base.py)
        record_stopping_base(directory, generation.eos_token_id)
    readable_by_umask(directory)


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


def fit_threads_callback(changes: list[dict]):
    """A TrainerCallback that sizes torch's CPU threads to the free cores again every 10 steps:
    on a shared machine the other jobs come and go (`models.threads`). Each count is appended to
    `changes` with the step it took effect: another count sums in another order (the `sft-v2`
    command, rerun at another load, ended at loss 1.49046 against 1.48987). To reproduce a run
    to every digit, pin the count it recorded: OMP_NUM_THREADS=N."""
    import torch
    from transformers import TrainerCallback

    class FitThreads(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step % 10 == 0:
                fit_threads_to_machine()
                threads = torch.get_num_threads()
                if not changes or changes[-1]["threads"] != threads:
                    changes.append({"from_step": state.global_step, "threads": threads})
            return control

    return FitThreads()


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
    thread_changes: list[dict] = []
    trainer.add_callback(fit_threads_callback(thread_changes))
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
        cpu_threads=thread_changes,
    )
