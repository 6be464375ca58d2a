"""Rejection-sampling fine-tuning (RFT): sample, keep what passes the tests, fine-tune on it.

    coder-align rft --config configs/rft/embedded.yaml
    coder-align rft --config configs/rft/quickstart-cpu.yaml model.path=outputs/quickstart sampling.k=4

DeepSeekMath's cheapest way to turn a verifier into better data (its RFT baseline beside
SFT, online RFT and GRPO): the model answers each training task k times, the sandbox runs
every answer against all of the task's tests (not only the one the prompt shows), and the
passing, distinct answers (at most `keep.max_per_task` per task) become SFT rows. They keep
the answer as the model wrote it, prose, fence and all, so what it learns to emit (a fenced
block, then <|EOT|>) is its own behaviour, reinforced. Then the SFT stage (`sft.main`) trains
on them, optionally mixed with rows of another SFT file (`data.extra_sft_path`), against
forgetting what those taught.

Steps: tasks (GRPO's rows; MBPP test-split and HumanEval tasks refused) -> sandbox check
-> k samples per task and their verdicts (`datagen.self_sampling.sample_and_judge`: eval's
generator and prompts) -> kept rows -> SFT. Output directory: `judged.jsonl` (every sample
and its verdict, for `datagen.verdicts.read_judged`: reward-model data reuses it),
`rft_rows.jsonl` (the kept rows), `sft_rows.jsonl` (with the extra rows, when mixed),
`rft_config.yaml`, `summary.json`, and the fine-tuned model in `sft/`
(`sft.train.output_dir`). A rerun with the same sampling settings reuses `judged.jsonl`
instead of sampling again.

Where this departs from DeepSeekMath: a run is one round (offline RFT). Expert iteration is
the same command on the last round's model, `model.path=<output_dir>/sft` (or a GRPO output):
it samples its own answers with the template it was trained on, and its rows are its own.
"""

from __future__ import annotations

import ast
import json
import logging
import random
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Literal

import yaml

from coder_align import sandbox, sft
from coder_align.config import (
    ONE_OR_MORE, ConfigError, ModelConfig, TrainConfig, check_ranges, from_dict, parse_args, save_config, to_dict,
)
from coder_align.data.records import DataError, iter_rows
from coder_align.datagen.self_sampling import (
    JudgingConfig, SampledModelConfig, SamplingConfig, TaskDataConfig, generator_spec, load_tasks, sample_and_judge,
)
from coder_align.datagen.verdicts import judged_by_task, status_counts, write_judged
from coder_align.rewards import format_reward
from coder_align.run_dir import Run, read_run
from coder_align.sandbox.preflight import require_sandbox
from coder_align.sandbox.remote import SandboxConfig
from coder_align.sft import SFTConfig, SFTDataConfig
from coder_align.training import START_MODEL, config_differences, merged_start, note_output_dir, resolve_resume

log = logging.getLogger("coder_align.rft")

JUDGED = "judged.jsonl"
ROWS = "rft_rows.jsonl"
MIXED = "sft_rows.jsonl"
CONFIG = "rft_config.yaml"
SFT_DIR = "sft"


@dataclass
class RFTDataConfig(TaskDataConfig):
    path: str = "data_templates/mbpp_train.jsonl"  # training tasks with tests
    task_ids: str | None = "601-974"  # MBPP's train ids; test-split ids are refused, validation ids counted
    extra_sft_path: str | None = None  # SFT rows mixed in with the kept ones (any SFT format)
    extra_sft_rows: int | None = None  # at most this many of them, drawn at random (None: all)

    RANGES: ClassVar[dict] = {**TaskDataConfig.RANGES, "extra_sft_rows": ONE_OR_MORE}


@dataclass
class KeepConfig:
    max_per_task: int = 2  # passing, distinct answers kept per task (m)
    # Distinct by code: "ast" compares the parsed program (comments, spacing and quotes aside;
    # falls back to whitespace for code that does not parse), "whitespace" the stripped lines.
    dedupe: Literal["ast", "whitespace"] = "ast"
    clipped: bool = False  # keep answers that ran into max_new_tokens (they never learnt to stop)
    # Only answers that are one closed fenced block and nothing more (format_reward's test): a
    # passing answer may go on with more blocks or an invented instruction, which SFT would teach.
    one_block: bool = False

    RANGES: ClassVar[dict] = {"max_per_task": ONE_OR_MORE}


@dataclass
class RFTFineTuneModel(ModelConfig):
    path: str = ""  # "": the sampled model (model.path)


@dataclass
class RFTFineTuneTrain(TrainConfig):
    output_dir: str = ""  # "": <output_dir>/sft


@dataclass
class RFTFineTune(SFTConfig):
    """The SFT stage's settings. data.path is the kept rows (set by rft); data.template and
    data.system_prompt are the sampled model's, so it trains on the prompts it answered."""

    model: RFTFineTuneModel = field(default_factory=RFTFineTuneModel)
    train: RFTFineTuneTrain = field(default_factory=RFTFineTuneTrain)


@dataclass
class RFTConfig:
    """Rejection-sampling fine-tuning: k samples per task, keep the passing ones, SFT on them."""

    model: SampledModelConfig = field(default_factory=SampledModelConfig)
    data: RFTDataConfig = field(default_factory=RFTDataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    judging: JudgingConfig = field(default_factory=JudgingConfig)
    keep: KeepConfig = field(default_factory=KeepConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)  # servers to judge on; none: this machine
    sft: RFTFineTune = field(default_factory=RFTFineTune)
    output_dir: str = "outputs/rft"
    overwrite: bool = False  # true: replace a previous run's samples here (and the SFT output's checkpoints)


# --- choosing rows: small pure functions -------------------------------------------------

def code_key(code: str, how: str = "ast") -> str:
    """What makes two answers the same program.

    >>> code_key("def f(x):\\n    return x  # id") == code_key("def f( x ):\\n  return (x)")
    True
    >>> code_key("x = (", "ast") == code_key("x  =  (", "ast")
    False
    """
    if how == "ast":
        try:
            return ast.dump(ast.parse(code))
        except (SyntaxError, ValueError):
            pass
    return "\n".join(line.strip() for line in code.strip().splitlines() if line.strip())


def select(judged_task: list, max_per_task: int, dedupe: str = "ast", keep_clipped: bool = False,
           one_block: bool = False) -> tuple[list, Counter]:
    """The samples of one task to train on, in sampling order, and why the others were not.

    Reasons: `failed`, `unavailable` (never judged: not a fail, not kept), `clipped`,
    `not_one_block`, `duplicate` (the same program as one kept), `over_max_per_task`.
    """
    kept, dropped, seen = [], Counter(), set()
    for s in judged_task:
        if s.status == "unavailable":
            dropped["unavailable"] += 1
        elif not s.passed:
            dropped["failed"] += 1
        elif s.clipped and not keep_clipped:
            dropped["clipped"] += 1
        elif one_block and format_reward([s.completion])[0] != 1.0:
            dropped["not_one_block"] += 1
        elif code_key(s.code, dedupe) in seen:
            dropped["duplicate"] += 1
        elif len(kept) >= max_per_task:
            dropped["over_max_per_task"] += 1
        else:
            seen.add(code_key(s.code, dedupe))
            kept.append(s)
    return kept, dropped


def sft_row(s) -> dict:
    """An SFT row (the `messages` format) from a kept sample: its prompt and the answer as
    generated. The template closes a response with "\\n<|EOT|>", and the generated text ends
    with that newline when the model stopped at <|EOT|>, so one trailing newline is dropped
    rather than doubled."""
    answer = s.completion[:-1] if s.completion.endswith("\n") else s.completion
    return {"messages": [*s.prompt, {"role": "assistant", "content": answer}], "task_id": s.task_id, "source": "rft"}


# --- the stage -------------------------------------------------------------------------------

def main(config: RFTConfig) -> dict:
    """Sample, judge, keep, fine-tune; returns the run summary (also summary.json)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for group in ("data", "sampling", "judging", "keep"):  # also for configs built in Python, not parsed
        check_ranges(getattr(config, group), "RFTConfig", prefix=f"{group}.")
    if config.sft.data.path:
        raise ConfigError("sft.data.path is set by rft (the kept rows); to mix in another SFT file use "
                          "data.extra_sft_path")
    d = config.data
    if d.extra_sft_path and not Path(d.extra_sft_path).exists():
        raise DataError(d.extra_sft_path, "file not found (data.extra_sft_path)", "missing_file")
    out = Path(config.output_dir)
    run = read_run(config.model.path, d.template, d.system_prompt)  # read once: sampled, then fine-tuned
    sft_config = fine_tune_config(config, run)  # fails on a bad sft group before an hour of sampling
    sandbox.remote.configure(config.sandbox)

    # --- tasks (held-out benchmark tasks refused) ----------------------------------------
    tasks, data_stats = load_tasks(d.path, d.task_ids, fmt=d.format, split=d.split, shown_tests=d.shown_tests,
                                   on_invalid=d.on_invalid, max_rows=d.max_rows)
    if not tasks:
        raise DataError(d.path, f"no tasks left ({data_stats})", "no_rows")

    # --- samples and verdicts: reused from an earlier run with the same settings ------------
    reused = reusable_samples(config, out)
    if reused:
        judged, _ = judged_by_task(out / JUDGED, tasks)
        log.info("reusing %s (same model, tasks and sampling settings)", out / JUDGED)
        seconds = {"sampling_seconds": 0.0, "judging_seconds": 0.0}
    else:
        # before the model: sampling that nothing can judge
        require_sandbox({t["language"] for t in tasks}, "cannot judge samples here")
        note_output_dir(out)  # a run that fails before its samples are judged leaves `out` as it was
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / CONFIG)
        (out / JUDGED).unlink(missing_ok=True)  # a half-written run never looks reusable
        model = generator_spec(run, config.model, config.sampling, str(out))
        judged, seconds = sample_and_judge(model, tasks, config.sampling, config.judging)
        write_judged(out / JUDGED, judged)

    # --- rows to train on ---------------------------------------------------------------------
    rows, dropped = kept_rows(judged, config.keep)
    statuses = status_counts(judged)
    samples = sum(len(per) for per in judged)
    summary = {
        "stage": "rft", "model": config.model.path, "tasks_file": d.path, "data": data_stats,
        "tasks_tried": len(tasks), "tasks_with_pass": sum(any(x.passed for x in per) for per in judged),
        "tasks_with_rows": len({r["task_id"] for r in rows}), "samples": samples,
        "samples_passed": sum(x.passed for per in judged for x in per), "rows_kept": len(rows),
        "statuses": statuses, "unavailable": statuses.get("unavailable", 0), "dropped": dict(dropped),
        "reused_samples": bool(reused), **seconds,
    }
    log.info("%d of %d tasks passed at least once; %d rows kept (dropped: %s)", summary["tasks_with_pass"],
             len(tasks), len(rows), dict(dropped))
    if not rows:
        write_rows(out / ROWS, rows)
        write_summary(out, summary, config)
        raise DataError(str(out / JUDGED), f"no passing answer to train on ({summary['samples_passed']} of {samples} "
                        f"samples passed; statuses {statuses}); try more samples (sampling.k), a higher "
                        "sampling.max_new_tokens, or easier tasks", "no_rows")

    # --- fine-tune ----------------------------------------------------------------------------
    summary.update(fine_tune(config, sft_config, run, rows, out))
    write_summary(out, summary, config)
    return summary


def kept_rows(judged: list[list], keep: KeepConfig) -> tuple[list[dict], Counter]:
    """The SFT rows of every task's kept samples, and why the others were not kept."""
    rows, dropped = [], Counter()
    for per_task in judged:
        kept, why = select(per_task, keep.max_per_task, keep.dedupe, keep.clipped, keep.one_block)
        rows += [sft_row(x) for x in kept]
        dropped.update(why)
    return rows, dropped


def fine_tune(config: RFTConfig, sft_config: SFTConfig, run: Run, rows: list[dict], out: Path) -> dict:
    """The SFT stage on the kept rows (mixed with data.extra_sft_path's); what it reports."""
    d, report = config.data, {}
    data_path, train_rows = out / ROWS, rows
    if d.extra_sft_path:
        extra = extra_rows(d.extra_sft_path, d.extra_sft_rows, config.sampling.seed)
        train_rows = rows + extra
        random.Random(config.sampling.seed).shuffle(train_rows)
        data_path = out / MIXED
        report["extra_rows"] = len(extra)
        write_rows(out / ROWS, rows)  # the kept rows on their own too
    check_resumable(data_path, train_rows, sft_config)
    write_rows(data_path, train_rows)
    sft_config = replace(sft_config, data=replace(sft_config.data, path=str(data_path)))
    start = run if sft_config.model.path == run.path else read_run(sft_config.model.path)
    if start.adapter:  # a LoRA output directory cannot be trained as a model path: merged once, as GRPO does
        sft_config = replace(sft_config, model=replace(sft_config.model, path=merged_start(start, out / START_MODEL)))
    sft_summary = sft.main(sft_config)
    report["sft"] = {k: sft_summary.get(k) for k in ("steps", "first_loss", "final_loss", "train_seconds", "data")}
    report["sft"]["output_dir"] = sft_config.train.output_dir
    return report


def fine_tune_config(config: RFTConfig, run) -> SFTConfig:
    """The SFT stage's config: the `sft` group with the sampled model, template and system prompt
    filled in (the model answered the prompts in that template, so it trains on them in it)."""
    ft = config.sft
    for key, value in (("template", ft.data.template), ("system_prompt", ft.data.system_prompt)):
        default, used = getattr(SFTDataConfig(), key), getattr(run, key)
        if value != default and value != used:
            raise ConfigError(f"sft.data.{key}={value!r} differs from the {key} the model was sampled with "
                              f"({used!r}); set data.{key}, which both use")
    resolved = to_dict(ft)
    resolved["model"]["path"] = ft.model.path or config.model.path
    resolved["train"]["output_dir"] = ft.train.output_dir or str(Path(config.output_dir) / SFT_DIR)
    resolved["data"].update(template=run.template, system_prompt=run.system_prompt)
    if config.overwrite:
        resolved["train"]["overwrite"] = True
    return from_dict(SFTConfig, resolved, "RFTConfig.sft")


SAMPLING_GROUPS = ("model", "data", "sampling", "judging")  # what the samples depend on
MIX_KEYS = ("extra_sft_path", "extra_sft_rows")


def reusable_samples(config: RFTConfig, out: Path) -> bool:
    """Whether `out` holds the samples of a run with the same model, tasks and sampling settings.
    Samples of other settings are an error (unless `overwrite`): training on them would mix runs."""
    saved_path = out / CONFIG
    if config.overwrite or not (out / JUDGED).is_file() or not saved_path.is_file():
        return False
    saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
    current = to_dict(config)
    for settings in (saved, current):  # what is mixed in later does not shape the samples
        for key in MIX_KEYS:
            (settings.get("data") or {}).pop(key, None)
    differences = config_differences({g: saved.get(g) for g in SAMPLING_GROUPS},
                                     {g: current[g] for g in SAMPLING_GROUPS})
    if differences:
        raise ConfigError(f"{out} holds the samples of an RFT run with other settings ({'; '.join(differences)}); "
                          "use a new output_dir, or overwrite=true to sample again here")
    return True


def check_resumable(path: Path, rows: list[dict], sft_config: SFTConfig) -> None:
    """The SFT stage resumes a checkpoint whose config matches, and the rows file keeps its name:
    rows that changed since (other keep.* or data.extra_* settings) must not be resumed on."""
    t = sft_config.train
    if not path.is_file() or t.overwrite or not resolve_resume(t.resume, t.output_dir):
        return
    if path.read_text(encoding="utf-8") != "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows):
        raise ConfigError(f"{path}: the rows to fine-tune on changed since {t.output_dir} was trained on them; "
                          "use a new output_dir, or sft.train.overwrite=true to fine-tune again from the start")


def extra_rows(path: str, limit: int | None, seed: int) -> list[dict]:
    """Rows of an SFT file, unchanged (the SFT stage validates them), `limit` of them at random."""
    rows = []
    for item in iter_rows(path):
        if isinstance(item, DataError):
            raise item
        rows.append(item.data)
    if limit is not None and limit < len(rows):
        rows = random.Random(seed).sample(rows, limit)
    return rows


def write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_summary(out: Path, summary: dict, config: RFTConfig) -> None:
    summary["config"] = to_dict(config)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def cli(argv: list[str]) -> int:
    config = parse_args(RFTConfig, argv, prog="coder-align rft")
    summary = main(config)
    print(f"\n{summary['tasks_with_pass']} of {summary['tasks_tried']} tasks passed at least once; "
          f"{summary['rows_kept']} rows kept; fine-tuned model in {summary['sft']['output_dir']} "
          f"(loss {summary['sft']['first_loss']} -> {summary['sft']['final_loss']}); "
          f"samples and verdicts in {Path(config.output_dir) / JUDGED}")
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
