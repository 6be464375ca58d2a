"""Sample a model on tasks with tests and judge every sample in the sandbox.

The data side of rejection-sampling fine-tuning (`coder_align.rft`), the difficulty filter
(`coder-align data difficulty`) and reward-model data all start here:

    tasks, stats = load_tasks("data_templates/mbpp_train.jsonl", task_ids="511-974")
    completions = sample("outputs/sft", tasks, k=8)                  # k answers per task
    judged = judge(tasks, completions)                              # per task, per answer
    rows = [s.to_dict() for per_task in judged for s in per_task]

- Tasks are GRPO's task rows (`data.grpo_rows`: MBPP, HumanEval-style and generic rows with
  tests); by default a benchmark's held-out task (MBPP test split, HumanEval) is refused.
- Prompts are rendered as eval renders them (`evaluate.chat_prompt`: the run's template
  and system prompt, read by `run_dir.read_run`), and generated as `eval run` generates
  (`evaluate.generate_with_clipping`: continuous batching over one process per core on CPU,
  vLLM on a GPU when installed); answers are cut at eval's stop strings, and an answer that
  ran into max_new_tokens is marked `clipped`.
- Judging is GRPO's `unit_test` reward's: the code `benchmarks.extract_code` takes from the
  answer, run strictly against ALL of the task's tests (not only the one the prompt shows).
  A sample the sandbox could not judge is `unavailable`: neither a pass nor a fail, counted;
  if nothing at all could be judged, `SandboxUnavailable` is raised.

Not here: what is done with the verdicts (rft.py, the difficulty filter), or any sandboxing.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Literal

from coder_align.benchmarks.extract import extract_code
from coder_align.config import NON_NEGATIVE, ONE_OR_MORE, POSITIVE, Range
from coder_align.data.records import DataError
from coder_align.sandbox.results import OK, UNAVAILABLE

log = logging.getLogger(__name__)

# read_judged: GRPO's completions.jsonl records rewards, not statuses; a failed row is this
FAILED = "failed"


@dataclass
class JudgedSample:
    task_id: str
    prompt: list[dict]  # the chat messages the model answered
    completion: str  # the answer as generated (cut at the stop strings)
    code: str  # what was run: the code extracted from the completion
    passed: bool  # every test passed (strict); False when unavailable
    status: str  # a sandbox status (ok, wrong_answer, ..., unavailable)
    tests_passed_fraction: float | None  # None where a file read back did not record it
    clipped: bool = False  # generation ran into max_new_tokens

    def to_dict(self) -> dict:
        return asdict(self)


# --- settings groups shared by the commands built on this (difficulty filter, rft) -------

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
    system_prompt: str | None = None  # None: the model's own run's, else DeepSeek's default
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


# --- tasks ------------------------------------------------------------------------------

def load_tasks(path: str, task_ids: str | None = None, *, fmt: str = "auto", split: str = "train",
               shown_tests: int = 1, language: str = "python", on_invalid: str = "error",
               max_rows: int | None = None, training: bool = True) -> tuple[list[dict], dict]:
    """GRPO task rows `{"prompt": messages, "tests", "language", "task_id", "row", "where"}`
    (`row`: the input row unchanged) and the read counts. `training` refuses MBPP test-split
    ids and HumanEval tasks (by id and, row by row, as they are read)."""
    from coder_align.data.grpo_rows import read_tasks, refuse_test_ids

    if training:
        refuse_test_ids(task_ids, "task_ids")
    tasks, stats = read_tasks(path, split, fmt, task_ids, shown_tests, language, on_invalid, max_rows,
                              training=training, keep_rows=True)
    return tasks, stats.as_dict()


# --- sampling ---------------------------------------------------------------------------

def sample(model_path_or_generator, tasks: list[dict], k: int, temperature: float = 0.8, top_p: float = 0.95,
           max_new_tokens: int = 512, batch_size: int = 16, seed: int = 0, *, template: str | None = None,
           system_prompt: str | None = None, backend: str = "auto", dtype: str = "auto",
           processes: int | None = None, threads: int | None = None, work_dir: str | None = None,
           return_clipped: bool = False):
    """k completions per task: `list[list[str]]`, in task order (with `return_clipped`, also
    per completion whether it ran into max_new_tokens).

    `model_path_or_generator`: a model path or output directory of ours, loaded and run as
    `eval run` does (its template and system prompt unless `template`/`system_prompt` say
    otherwise; on CPU `processes` x `threads`, default one single-thread process per core), or
    a generator with eval's interface (`generate(prompts, settings, stops, add_special_tokens)`,
    a `tokenizer`), prompted with `template` (default DeepSeek's), run in this process.
    `work_dir`: where vLLM's merged copy of an adapter goes.
    """
    from coder_align.evaluate import (
        chat_adds_special_tokens, chat_prompt, chat_stops, generate_with_clipping, load_generator, texts_and_clipping,
    )
    from coder_align.evaluation.generation import GenerationSettings
    from coder_align.evaluation.tasks import cut_at_stops

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    eval_config = None
    if isinstance(model_path_or_generator, (str, Path)):
        path = str(model_path_or_generator)
        eval_config = generation_config(path, template, system_prompt, backend, dtype, processes, threads, work_dir)
        generator, _ = load_generator(eval_config)
        template, system_prompt = eval_config.data.template, eval_config.data.system_prompt
    else:
        generator = model_path_or_generator
    tokenizer = getattr(generator, "tokenizer", None)
    prompts = [chat_prompt(task["prompt"], template, system_prompt, tokenizer) for task in tasks]
    stops = chat_stops(template)
    settings = GenerationSettings(k, temperature, top_p, max_new_tokens, batch_size, seed)
    add_special = chat_adds_special_tokens(template)
    if eval_config is not None:
        texts, clipped = generate_with_clipping(eval_config, generator, prompts, settings, stops, add_special)
    else:
        texts, clipped = texts_and_clipping(generator, prompts, settings, stops, add_special)
    completions = [[cut_at_stops(text, stops) for text in outs] for outs in texts]
    return (completions, clipped) if return_clipped else completions


def generation_config(path: str, template: str | None = None, system_prompt: str | None = None,
                      backend: str = "auto", dtype: str = "auto", processes: int | None = None,
                      threads: int | None = None, work_dir: str | None = None):
    """The EvalConfig `eval run` would load and generate with, for a model path: the run's
    template and system prompt (`run_dir.read_run`) unless given."""
    from coder_align.evaluation.config import EvalConfig, EvalDataConfig, EvalGenerationConfig, EvalModelConfig
    from coder_align.run_dir import read_run

    run = read_run(path, template, system_prompt)
    return EvalConfig(model=EvalModelConfig(path=path, dtype=dtype),
                      data=EvalDataConfig(template=run.template, system_prompt=run.system_prompt),
                      generation=EvalGenerationConfig(backend=backend, processes=processes, threads=threads),
                      output_dir=work_dir or "outputs/self_sampling")


# --- judging ----------------------------------------------------------------------------

def judge(tasks: list[dict], completions: list[list[str]], timeout: float = 10.0, endpoints: list[str] | None = None,
          *, workers: int | None = None, clipped: list[list[bool]] | None = None) -> list[list[JudgedSample]]:
    """Every completion run against all of its task's tests, strictly; per task, per completion.

    `endpoints`: sandbox servers to judge on (else those configured for the process, else
    this machine). Raises `SandboxUnavailable` when not one sample could be judged.
    """
    from coder_align.sandbox import SandboxUnavailable, check_many

    if len(completions) != len(tasks):
        raise ValueError(f"judge: {len(completions)} completion lists for {len(tasks)} tasks")
    jobs, where = [], []
    for t, (task, outs) in enumerate(zip(tasks, completions)):
        for c, completion in enumerate(outs):
            jobs.append({"source": extract_code(completion, task["language"]), "tests": task["tests"],
                         "language": task["language"], "timeout": timeout, "strict": True})
            where.append((t, c))
    if not jobs:
        return [[] for _ in tasks]
    if endpoints:
        from coder_align.sandbox import remote

        reports = remote.check_many(jobs, remote.SandboxConfig(endpoints=list(endpoints)), return_exceptions=True)
    else:
        reports = check_many(jobs, workers=workers, return_exceptions=True)
    judged: list[list[JudgedSample]] = [[] for _ in tasks]
    for job, (t, c), report in zip(jobs, where, reports):
        judged[t].append(JudgedSample(
            task_id=tasks[t]["task_id"], prompt=tasks[t]["prompt"], completion=completions[t][c], code=job["source"],
            passed=bool(report.passed) and report.status != UNAVAILABLE, status=report.status,
            tests_passed_fraction=None if report.status == UNAVAILABLE else report.fraction, clipped=bool(clipped[t][c]) if clipped else False))
    unavailable = [r for r in reports if r.status == UNAVAILABLE]
    if len(unavailable) == len(reports):
        reason = next((r.error.strip().splitlines()[-1] for r in unavailable if (r.error or "").strip()),
                      "no reason given")
        raise SandboxUnavailable(f"the sandbox judged none of {len(reports)} samples ({reason[:300]})")
    if unavailable:
        log.warning("%d of %d samples could not be judged (unavailable); they count as neither pass nor fail",
                    len(unavailable), len(reports))
    return judged


def status_counts(judged: list[list[JudgedSample]]) -> dict[str, int]:
    return dict(Counter(s.status for per_task in judged for s in per_task))


def write_judged(path: str | Path, judged: list[list[JudgedSample]]) -> None:
    """One JSON line per sample (`JudgedSample.to_dict()`), readable by `read_judged`."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for per_task in judged:
            for s in per_task:
                f.write(json.dumps(s.to_dict()) + "\n")


# --- reading verdicts back --------------------------------------------------------------

def read_judged(path: str | Path, tasks: list[dict] | None = None) -> list[JudgedSample]:
    """Judged samples from a file, whichever stage wrote it:

    - `judge`'s own rows (`write_judged`; `rft`'s judged.jsonl): taken as they are;
    - GRPO's `completions.jsonl` (`step`, `task_id`, `completion`, `rewards`): the verdict is
      `rewards.unit_test_reward` (1.0 passed, None unavailable, else failed: GRPO records no
      status, so it is `failed`); the code is extracted again;
    - eval's `samples_<task>.jsonl` (`task_id`, `completion`, `status`, `passed`, `response`):
      `response` is the answer, `completion` the code eval ran.

    Neither of the last two records the prompt: `tasks` (e.g. from `load_tasks`) supplies it
    by task id (`Mbpp/601` and `601` match). A row that lacks what is needed is a DataError
    naming the file, line and field.
    """
    from coder_align.data.records import iter_jsonl

    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), "file not found", "missing_file")
    by_id = {_plain_id(t["task_id"]): t for t in tasks or []}
    samples = []
    for item in iter_jsonl(path):
        if isinstance(item, DataError):
            raise item
        samples.append(_judged_row(item.data, item.where, by_id))
    return samples


def judged_by_task(path: str, tasks: list[dict]) -> tuple[list[list], dict]:
    """The judged samples in `path`, grouped in the order of `tasks`, and what was read: samples
    whose task is not among `tasks` are counted, never silently mixed in."""
    by_task: dict[str, list] = {_plain_id(t["task_id"]): [] for t in tasks}
    other: Counter = Counter()
    samples = read_judged(path, tasks)
    for sample_ in samples:
        key = _plain_id(sample_.task_id)
        if key in by_task:
            by_task[key].append(sample_)
        else:
            other[key] += 1
    judged = [by_task[_plain_id(t["task_id"])] for t in tasks]
    reused = {"path": str(path), "samples_read": len(samples), "samples_used": sum(map(len, judged)),
              "samples_of_other_tasks": sum(other.values()), "other_tasks": len(other),
              "tasks_without_samples": sum(not per for per in judged)}
    log.info("reusing %d judged samples from %s (%d of %d other tasks left out)", reused["samples_used"],
             path, reused["samples_of_other_tasks"], len(other))
    return judged, reused


def _plain_id(task_id) -> str:
    text = str(task_id)
    return text.split("/", 1)[1] if text.startswith("Mbpp/") else text


def _judged_row(d: dict, where: str, by_id: dict) -> JudgedSample:
    if "task_id" not in d:
        raise DataError(where, "missing field 'task_id'", "missing_task_id")
    task_id = str(d["task_id"])
    task = by_id.get(_plain_id(task_id))

    def prompt():
        if isinstance(d.get("prompt"), list):
            return d["prompt"]
        if task is None:
            why = "pass the tasks file so prompts can be found by task id" if not by_id else \
                f"task id {task_id} is not among the {len(by_id)} tasks given"
            raise DataError(where, f"missing field 'prompt' ({why})", "missing_prompt")
        return task["prompt"]

    def text(name):
        if not isinstance(d.get(name), str):
            raise DataError(where, f"missing field '{name}'", f"missing_{name}")
        return d[name]

    if "rewards" in d:  # GRPO's completions.jsonl
        rewards = d["rewards"] if isinstance(d["rewards"], dict) else {}
        if "unit_test_reward" not in rewards:
            raise DataError(where, f"field 'rewards' has no unit_test_reward verdict (rewards: "
                                   f"{', '.join(rewards) or 'none'}); only a run with the unit_test reward judged "
                                   "its completions", "missing_verdict")
        value = rewards["unit_test_reward"]
        completion = text("completion")
        passed = value is not None and value >= 1.0
        status = UNAVAILABLE if value is None else OK if passed else FAILED
        fraction = 1.0 if passed else value if value is not None and 0.0 < value < 1.0 else None
        language = task["language"] if task else None
        return JudgedSample(task_id, prompt(), completion, extract_code(completion, language), passed, status,
                            fraction)
    for name in ("passed", "status"):
        if name not in d:
            raise DataError(where, f"missing field '{name}' (no verdict: score the samples first, e.g. "
                                   "`coder-align eval score`)", "missing_verdict")
    if "code" in d:  # our own rows
        return JudgedSample(task_id, prompt(), text("completion"), text("code"), bool(d["passed"]), str(d["status"]),
                            d.get("tests_passed_fraction"), bool(d.get("clipped", False)))
    code = text("completion")  # eval: the code it ran; the answer is `response`
    return JudgedSample(task_id, prompt(), d.get("response") if isinstance(d.get("response"), str) else code, code,
                        bool(d["passed"]), str(d["status"]), 1.0 if d["passed"] else None)
