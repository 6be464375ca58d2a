"""A training stage's output directory: checked before anything loads, resumed only with the
same config, cleaned up when a run fails before it wrote anything, and where an adapter
starting point is merged once (`merged_start`).

Not here: what a finished run writes (`run.py`), reading a run folder back (`coder_align.run_dir`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import yaml

from coder_align.config import (
    COMMAND_FILE, ConfigError, save_config, settings_differences, to_dict,
)
from coder_align.models.merge import merge
from coder_align.run_dir import CONFIG_FILE, START_MODEL, VALIDATION_RECORD, Run
from coder_align.training.arguments import is_main_process

log = logging.getLogger(__name__)


# Settings that do not change what is trained: a resume may differ in these and nothing else.
NOT_SHAPING_TRAINING = {
    "train.output_dir", "train.resume", "train.overwrite", "train.report_to", "train.disable_progress_bar",
    "train.logging_steps", "train.save_steps", "train.save_total_limit", "model.gradient_checkpointing",
    "sample_prompts", "max_new_tokens", "grpo.clipped_ratio_warning",
}
# what a run writes besides weights (overwritten anyway); completions.jsonl and validation.jsonl are appended to
RESULT_FILES = (CONFIG_FILE, "summary.json", "completions.jsonl", "samples.jsonl", "loss.png", "rewards.png", "runs",
                START_MODEL, VALIDATION_RECORD)


def config_differences(saved: dict, current: dict) -> list[str]:
    """Keys that shape training and differ, as `key: saved -> current` (reward weights and
    their arguments compared whole)."""
    return settings_differences(saved, current, NOT_SHAPING_TRAINING, whole=("rewards", "reward_kwargs"))


def prepare_output_dir(config, out: Path) -> str | None:
    """Before anything loads: check the output directory is writable, pick the checkpoint to
    resume from (refusing one written with another config), and save the resolved config
    there at the start, so a crashed run still says what it was. Returns the checkpoint."""
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
            note_output_dir(out)
            out.mkdir(parents=True, exist_ok=True)
            save_config(config, out / CONFIG_FILE)
        except OSError as e:
            raise ConfigError(f"train.output_dir {out} is not writable: {e.strerror or e}") from e
    return checkpoint


# Directories runs of this process started writing into, each with the names it held before
# (None: the run created it); see remove_unused_outputs.
STARTED_DIRS: list[tuple[Path, set[str] | None]] = []
# what a run writes before any work: its resolved config (training stages, eval, rft) and the
# command line beside it (config.save_config)
START_FILES = {CONFIG_FILE, "eval_config.yaml", "rft_config.yaml", COMMAND_FILE}


def note_output_dir(out: Path) -> None:
    """Call before a run first writes into `out`, so that a run refused or failed before it wrote
    anything but its config leaves `out` as it found it (`remove_unused_outputs`)."""
    out = Path(out)
    STARTED_DIRS.append((out, {p.name for p in out.iterdir()} if out.is_dir() else None))


def remove_unused_outputs() -> list[Path]:
    """After a failed run: in each directory `note_output_dir` saw, when the run added nothing but
    its config files, remove those (files that were there before stay) and the directory if the
    run created it. A run that wrote a checkpoint, samples or logs keeps everything. Returns the
    directories removed, and the files removed from directories that stay."""
    removed = []
    for out, before in reversed(STARTED_DIRS):
        if not out.is_dir():
            continue
        added = {p.name for p in out.iterdir()} - (before or set())
        if not added <= START_FILES:
            continue
        for name in added:
            (out / name).unlink()
        if before is None and not any(out.iterdir()):
            out.rmdir()
            removed.append(out)
        else:
            removed += [out / name for name in sorted(added)]
    STARTED_DIRS.clear()
    return removed


def check_checkpoint(checkpoint: str) -> None:
    """A checkpoint to resume from must hold its trainer state and readable weights; a run
    killed while saving leaves one that fails deep inside transformers otherwise."""
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


def merged_start(run: Run, target: Path, wait_s: float = 3600.0) -> str:
    """The adapter of `run` folded into full weights once, at `target` (reused on resume). On
    disk rather than in memory so that the stage's output (weights, or an adapter whose base is
    `target`) loads, merges and evaluates on its own. The main process writes; other ranks wait."""
    target = target.resolve()  # peft records this path as the base of the new adapter
    if (target / "config.json").is_file():
        return str(target)
    if is_main_process():
        log.info("merging the adapter %s into %s (once)", run.adapter, target)
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        merge(run, tmp)  # in the dtype the adapter was trained against
        os.rename(tmp, target)
        return str(target)
    deadline = time.monotonic() + wait_s
    while not (target / "config.json").is_file():
        if time.monotonic() > deadline:
            raise RuntimeError(f"rank {os.environ.get('RANK')}: {target} did not appear")
        time.sleep(2)
    return str(target)
