"""Validation pass@1 during GRPO training: every `grpo.validation_every` steps (and at the
last step) one greedy completion per validation task on the policy's current weights, judged
in the sandbox, logged as `validation/pass@1` beside the rewards; the summary keeps the
history, the best step and the saved checkpoint with the best pass@1 (`best_checkpoint`).
Each task's completion and verdict go to `validation.jsonl` in the run's folder, so a
checkpoint's in-training verdicts can be set beside `eval run`'s on the same tasks.

The tasks are a split no stage trains on: by default MBPP's validation ids 511-600
(`benchmarks.validation_split`, which every training pool leaves out), never a test split.
A verdict the sandbox could not give (`unavailable`) is counted on its own and left out of
pass@1: an infrastructure failure is not a wrong answer.

Not here: how code is judged (`coder_align.rewards`, handed in as `judge`), the eval
generator's greedy decoding (`Rollout.greedy`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from coder_align import benchmarks
from coder_align.benchmarks.sources import HOW_TO_GET, MBPP_FILE
from coder_align.config import ConfigError
from coder_align.data import DataError
from coder_align.data.grpo_rows import benchmark_test_task, detect_format, read_tasks

log = logging.getLogger("coder_align.grpo")

VALIDATION_TASKS = "mbpp-validation"  # as `eval run --tasks mbpp-validation`
PASS_AT_1 = "validation/pass@1"


def read_validation_tasks(spec: str, shown_tests: int = 1, limit: int | None = None) -> list[dict]:
    """The validation tasks: MBPP's validation split from the local MBPP file, or the tasks of
    a rows file (whose benchmark test-split rows are refused, as in training)."""
    if spec == VALIDATION_TASKS:
        source = benchmarks.mbpp_source()
        if not Path(source).is_file():
            raise ConfigError(f"grpo.validation_tasks={VALIDATION_TASKS} needs the MBPP file "
                              f"{MBPP_FILE} ({HOW_TO_GET[MBPP_FILE]}); "
                              "or set grpo.validation_tasks to a rows file")
        tasks, _ = read_tasks(source, fmt="mbpp", task_ids="validation", shown_tests=shown_tests, max_rows=limit)
    else:
        tasks, _ = read_tasks(spec, shown_tests=shown_tests, max_rows=limit, keep_rows=True)
        for task in tasks:
            held_out = benchmark_test_task(task["row"], detect_format(task["row"]))
            if held_out:
                raise DataError(task["where"], f"{held_out}: a test-split task cannot be a validation task",
                                "benchmark_test_task")
    if not tasks:
        raise DataError(spec, "no validation tasks", "no_rows")
    return tasks


def validation_metrics(verdicts: list[float | None], seconds: float) -> dict:
    """pass@1 over the judged tasks; None verdicts (unavailable) counted apart, never as failures."""
    passed = sum(1 for v in verdicts if v is not None and v >= 1.0)
    unavailable = sum(1 for v in verdicts if v is None)
    judged = len(verdicts) - unavailable
    metrics = {"validation/passed": float(passed), "validation/failed": float(judged - passed),
               "validation/unavailable": float(unavailable), "validation/tasks": float(len(verdicts)),
               "timing/validation_s": round(seconds, 3)}
    if judged:
        metrics[PASS_AT_1] = passed / judged
    return metrics


def model_greedy(tokenize: Callable, max_new_tokens: int) -> Callable:
    """Greedy completions with the trainer's own `model.generate`, one task at a time: for
    rollout backends without greedy decoding of their own (trl, vllm)."""
    import torch

    def generate(rows: list[dict], trainer) -> list[str]:
        model = trainer.accelerator.unwrap_model(trainer.model)
        tokenizer = trainer.processing_class
        was_training, out = model.training, []
        model.eval()
        try:
            with torch.no_grad():
                for row in rows:
                    ids = torch.tensor([tokenize(row["prompt"])], device=model.device)
                    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
                    tokens = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                            max_new_tokens=max_new_tokens, pad_token_id=pad)
                    out.append(tokenizer.decode(tokens[0, ids.shape[1]:], skip_special_tokens=True))
        finally:
            model.train(was_training)
        return out

    return generate


class Validation:
    """Validate every `every` steps and at the last one, on the main process, and hand the
    metrics to `log` (`validation_callback`: `transformers.Trainer.log`, so they have their own
    entry in the log history and TensorBoard, not averaged into the step's training metrics)."""

    def __init__(self, trainer, tasks: list[dict], generate: Callable, judge: Callable, every: int,
                 log_metrics: Callable[[dict], None], record_to: Path | None = None):
        self.trainer, self.tasks, self.generate, self.judge, self.every = trainer, tasks, generate, judge, every
        self.log_metrics, self.record_to = log_metrics, record_to

    def step_end(self, state) -> dict | None:
        last = bool(state.max_steps) and state.global_step >= state.max_steps
        if not (state.global_step % self.every == 0 or last) or not state.is_world_process_zero:
            return None
        metrics = self.validate(state.global_step)
        log.info("step %d: validation %s", state.global_step, metrics)
        self.log_metrics(metrics)
        score = metrics.get(PASS_AT_1)
        if score is not None and (getattr(state, "best_metric", None) is None or score > state.best_metric):
            # the Trainer's own record of the best step: its checkpoint rotation (save_total_limit)
            # then keeps that checkpoint, which the summary's best_checkpoint names, however long the run
            state.best_metric, state.best_global_step = score, state.global_step
        return metrics

    def validate(self, step: int | None = None) -> dict:
        started = time.perf_counter()
        completions = self.generate(self.tasks, self.trainer)
        verdicts = self.judge(completions, self.tasks)
        if len(verdicts) != len(self.tasks):
            raise RuntimeError(f"validation: {len(verdicts)} verdicts for {len(self.tasks)} tasks")
        if self.record_to is not None:
            with open(self.record_to, "a", encoding="utf-8") as f:
                for task, completion, verdict in zip(self.tasks, completions, verdicts):
                    f.write(json.dumps({"step": step, "task_id": task.get("task_id"), "verdict": verdict,
                                        "completion": completion}) + "\n")
        return validation_metrics(verdicts, time.perf_counter() - started)


def validation_callback(trainer, tasks: list[dict], generate: Callable, judge: Callable, every: int,
                        record_to: Path | None = None):
    """A TrainerCallback running `Validation` at each step's end (transformers imported here:
    importing a stage module stays light); `record_to`: the per-task verdicts' file."""
    from transformers import Trainer, TrainerCallback

    class ValidationCallback(TrainerCallback):
        def __init__(self):
            self.validation = Validation(trainer, tasks, generate, judge, every,
                                         lambda metrics: Trainer.log(trainer, metrics), record_to)

        def on_step_end(self, args, state, control, **kwargs):
            # Trainer.log clears should_log (CallbackHandler.on_log); without this the step's own
            # training metrics were not logged at a validated step but averaged into the next one
            should_log = control.should_log
            self.validation.step_end(state)
            control.should_log = should_log
            return control

    return ValidationCallback()


def validation_summary(log_history: list[dict], output_dir: str | Path, every: int, tasks: int) -> dict:
    """The validation history, the best step (the earliest at a tie) and the saved checkpoint
    with the best pass@1 among those validated (None when no checkpoint step was validated)."""
    history = [{"step": h["step"], "pass@1": h.get(PASS_AT_1), "passed": int(h["validation/passed"]),
                "failed": int(h["validation/failed"]), "unavailable": int(h["validation/unavailable"])}
               for h in log_history if "validation/tasks" in h]
    scored = [h for h in history if h["pass@1"] is not None]
    best = max(scored, key=lambda h: (h["pass@1"], -h["step"]), default=None)
    saved = [h for h in scored if (Path(output_dir) / f"checkpoint-{h['step']}").is_dir()]
    best_saved = max(saved, key=lambda h: (h["pass@1"], -h["step"]), default=None)
    return {"every": every, "tasks": tasks, "history": history,
            "best_step": best["step"] if best else None, "best_pass@1": best["pass@1"] if best else None,
            "best_checkpoint": str(Path(output_dir) / f"checkpoint-{best_saved['step']}") if best_saved else None,
            "best_checkpoint_pass@1": best_saved["pass@1"] if best_saved else None}


def greedy_generation(rollout, max_new_tokens: int) -> Callable:
    """The rollout backend's greedy decoding on the current weights (eval_generator), else the
    trainer's own `model.generate` (trl, vllm backends)."""
    if hasattr(rollout.generation, "greedy"):
        return rollout.greedy
    log.info("validation: rollout backend %s has no greedy decoding; using the trainer's model.generate",
             rollout.backend)
    return model_greedy(rollout.tokenize, max_new_tokens)


def check_held_out(spec: str, validation: list[dict], training: list[dict], trained_on_validation_ids: int) -> None:
    """Refuse validation tasks that the run also trains on: pass@1 on them would choose nothing."""
    if spec == VALIDATION_TASKS and trained_on_validation_ids:
        raise ConfigError(f"data.task_ids names {trained_on_validation_ids} MBPP validation ids, and validation "
                          "pass@1 is measured on that split: leave ids 511-600 out of training")
    trained = {str(task["prompt"]) for task in training}
    shared = [task["task_id"] for task in validation if str(task["prompt"]) in trained]
    if shared:
        raise ConfigError(f"{len(shared)} validation tasks are also training tasks (e.g. {shared[0]}): "
                          "validate on tasks no stage trains on")
