"""Sample a model on tasks with tests and judge every sample in the sandbox.

The data side of rejection-sampling fine-tuning (`coder_align.rft`), the difficulty filter
(`coder-align data difficulty`) and reward-model data (`coder-align rm data`) all start here:

    run = read_run("outputs/sft")                                     # the model, read once
    tasks, stats = load_tasks("data_templates/mbpp_train.jsonl", task_ids="511-974")
    model = GeneratorSpec(run)                                         # or a loaded generator
    judged, seconds = sample_and_judge(model, tasks, SamplingConfig(k=8), JudgingConfig())
    rows = [s.to_dict() for per_task in judged for s in per_task]

- Tasks are GRPO's task rows (`data.grpo_rows`: MBPP, HumanEval-style and generic rows with
  tests); by default a benchmark's held-out task (MBPP test split, HumanEval) is refused.
- Prompts are rendered as eval renders them (`evaluation.prompts.chat_prompt`: the run's
  template and system prompt), and generated as `eval run` generates
  (`evaluation.generation`: continuous batching over one process per core on CPU, vLLM on a
  GPU when installed); answers are cut at eval's stop strings, and an answer that ran into
  max_new_tokens is marked `clipped`.
- Judging is GRPO's `unit_test` reward's: the code `benchmarks.extract_code` takes from the
  answer, run strictly against ALL of the task's tests (not only the one the prompt shows).
  A sample the sandbox could not judge is `unavailable`: neither a pass nor a fail, counted;
  if nothing at all could be judged, `SandboxUnavailable` is raised.

Not here: what is done with the verdicts (rft.py, difficulty.py, rm_data.py), files of
verdicts (verdicts.py), or any sandboxing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import ClassVar, Literal

from coder_align import sandbox
from coder_align.benchmarks import extract_code
from coder_align.config import NON_NEGATIVE, ONE_OR_MORE, POSITIVE, Range
from coder_align.data.grpo_rows import read_tasks, refuse_test_ids
from coder_align.datagen.verdicts import JudgedSample
from coder_align.evaluation.generation import (
    GenerationSettings, GeneratorSpec, generate_with_clipping, load_generator, texts_and_clipping,
)
from coder_align.evaluation.prompts import chat_adds_special_tokens, chat_prompt, chat_stops
from coder_align.evaluation.tasks import cut_at_stops
from coder_align.run_dir import Run
from coder_align.sandbox.results import UNAVAILABLE

log = logging.getLogger(__name__)


# --- settings groups shared by the commands built on this (rft, difficulty filter) --------

@dataclass
class SampledModelConfig:
    path: str = "embedded"  # a model or an output directory of ours (its template and system prompt are used)
    dtype: str = "auto"
    backend: Literal["auto", "transformers", "vllm"] = "auto"  # auto: vLLM on a GPU when installed


@dataclass
class TaskDataConfig:
    path: str = ""  # task rows with tests (GRPO's formats: MBPP, HumanEval-style, generic)
    split: str = "train"  # for a hub dataset
    format: Literal["auto", "rows", "mbpp", "humaneval"] = "auto"
    task_ids: str | None = None  # e.g. "601-974"; MBPP test-split ids are refused
    shown_tests: int = 1  # MBPP: asserts shown in the prompt (GRPO's default)
    template: Literal["deepseek", "model"] | None = None  # None: the model's own run's, else deepseek
    system_prompt: str | None = None  # None: the model's own run's, else DeepSeek's for DeepSeek models, else neutral
    on_invalid: Literal["error", "skip"] = "error"
    max_rows: int | None = None

    RANGES: ClassVar[dict] = {"shown_tests": NON_NEGATIVE, "max_rows": ONE_OR_MORE}


@dataclass
class SamplingConfig:
    k: int = 8  # completions per task
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 512
    batch_size: int = 16  # rows decoded together (eval's continuous batching)
    seed: int = 0
    # CPU: generation in `processes` processes of `threads` torch threads each, as eval run
    # does (None: one single-thread process per core for small models)
    processes: int | None = None
    threads: int | None = None

    RANGES: ClassVar[dict] = {"k": ONE_OR_MORE, "temperature": NON_NEGATIVE, "top_p": Range(0, 1, low_open=True),
                              "max_new_tokens": ONE_OR_MORE, "batch_size": ONE_OR_MORE, "seed": NON_NEGATIVE,
                              "processes": ONE_OR_MORE, "threads": ONE_OR_MORE}


@dataclass
class JudgingConfig:
    timeout: float = 10.0  # seconds per program
    workers: int | None = None  # sandbox workers on this machine; default: CPU count

    RANGES: ClassVar[dict] = {"timeout": POSITIVE, "workers": ONE_OR_MORE}


def generator_spec(run: Run, model: SampledModelConfig, sampling: SamplingConfig, work_dir: str) -> GeneratorSpec:
    """How the sampled model is loaded: as `eval run` loads it, in `sampling.processes` x `threads`."""
    return GeneratorSpec(run, model.dtype, model.backend, sampling.processes, sampling.threads, work_dir)


# --- tasks ------------------------------------------------------------------------------

def load_tasks(path: str, task_ids: str | None = None, *, fmt: str = "auto", split: str = "train",
               shown_tests: int = 1, language: str = "python", on_invalid: str = "error",
               max_rows: int | None = None, training: bool = True) -> tuple[list[dict], dict]:
    """GRPO task rows `{"prompt": messages, "tests", "language", "task_id", "row", "where"}`
    (`row`: the input row unchanged) and the read counts. `training` refuses MBPP test-split
    ids and HumanEval tasks (by id and, row by row, as they are read)."""
    if training:
        refuse_test_ids(task_ids, "task_ids")
    tasks, stats = read_tasks(path, split, fmt, task_ids, shown_tests, language, on_invalid, max_rows,
                              training=training, keep_rows=True)
    return tasks, stats.as_dict()


# --- sampling ---------------------------------------------------------------------------

def sample(model: GeneratorSpec | object, tasks: list[dict], sampling: SamplingConfig,
           run: Run | None = None) -> tuple[list[list[str]], list[list[bool]]]:
    """k completions per task, in task order, and per completion whether it ran into
    max_new_tokens.

    `model`: a `GeneratorSpec` (loaded and run as `eval run` does: its run's template and
    system prompt; on CPU in processes), or a loaded generator with eval's interface
    (`generate(prompts, settings, stops, add_special_tokens)`, a `tokenizer`), run in this
    process and prompted with `run`'s template and system prompt (DeepSeek's without one).
    """
    if sampling.k < 1:
        raise ValueError(f"k must be >= 1, got {sampling.k}")
    spec = model if isinstance(model, GeneratorSpec) else None
    generator = load_generator(spec)[0] if spec else model
    run = spec.run if spec else run
    template, system_prompt = (run.template, run.system_prompt) if run else (None, None)
    prompts = [chat_prompt(task["prompt"], template, system_prompt, getattr(generator, "tokenizer", None))
               for task in tasks]
    stops = chat_stops(template)
    s = sampling
    settings = GenerationSettings(s.k, s.temperature, s.top_p, s.max_new_tokens, s.batch_size, s.seed)
    add_special = chat_adds_special_tokens(template)
    if spec:
        texts, clipped = generate_with_clipping(spec, generator, prompts, settings, stops, add_special)
    else:
        texts, clipped = texts_and_clipping(generator, prompts, settings, stops, add_special)
    return [[cut_at_stops(text, stops) for text in outs] for outs in texts], clipped


# --- judging ----------------------------------------------------------------------------

def judge(tasks: list[dict], completions: list[list[str]], timeout: float = 10.0, *, workers: int | None = None,
          clipped: list[list[bool]] | None = None) -> list[list[JudgedSample]]:
    """Every completion run against all of its task's tests, strictly; per task, per completion.

    On the sandbox servers configured for the process (`sandbox.remote.configure`), else on
    this machine. Raises `SandboxUnavailable` when not one sample could be judged.
    """
    if len(completions) != len(tasks):
        raise ValueError(f"judge: {len(completions)} completion lists for {len(tasks)} tasks")
    jobs, where = [], []
    for t, (task, outs) in enumerate(zip(tasks, completions)):
        for c, completion in enumerate(outs):
            code = extract_code(completion, task["language"])
            jobs.append({"source": code, "tests": task["tests"],
                         "language": task["language"], "timeout": timeout, "strict": True})
            where.append((t, c, code))
    if not jobs:
        return [[] for _ in tasks]
    reports = sandbox.check_many(jobs, workers=workers, return_exceptions=True)
    judged: list[list[JudgedSample]] = [[] for _ in tasks]
    for (t, c, code), report in zip(where, reports):
        judged[t].append(JudgedSample(
            task_id=tasks[t]["task_id"], prompt=tasks[t]["prompt"], completion=completions[t][c], code=code,
            passed=bool(report.passed) and report.status != UNAVAILABLE, status=report.status,
            tests_passed_fraction=None if report.status == UNAVAILABLE else report.fraction,
            clipped=bool(clipped[t][c]) if clipped else False))
    unavailable = [r for r in reports if r.status == UNAVAILABLE]
    if len(unavailable) == len(reports):
        reason = next((r.error.strip().splitlines()[-1] for r in unavailable if (r.error or "").strip()),
                      "no reason given")
        raise sandbox.SandboxUnavailable(f"the sandbox judged none of {len(reports)} samples ({reason[:300]})")
    if unavailable:
        log.warning("%d of %d samples could not be judged (unavailable); they count as neither pass nor fail",
                    len(unavailable), len(reports))
    return judged


def sample_and_judge(model: GeneratorSpec | object, tasks: list[dict], sampling: SamplingConfig,
                     judging: JudgingConfig, run: Run | None = None) -> tuple[list[list[JudgedSample]], dict]:
    """`sample`, then `judge` every sample; the verdicts per task and the seconds each took."""
    started = time.perf_counter()
    completions, clipped = sample(model, tasks, sampling, run)
    sampling_seconds = time.perf_counter() - started
    started = time.perf_counter()
    judged = judge(tasks, completions, judging.timeout, workers=judging.workers, clipped=clipped)
    seconds = {"sampling_seconds": round(sampling_seconds, 1),
               "judging_seconds": round(time.perf_counter() - started, 1)}
    return judged, seconds
