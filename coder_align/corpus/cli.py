"""`coder-align corpus build`: repositories -> corpus JSONL, stats JSON and report.

    coder-align corpus build --repos DIR [DIR ...] --out corpus.jsonl [--workers N] [options]
    coder-align corpus build --config configs/corpus/repos.yaml data.repos=[a,b] output_path=corpus.jsonl
    coder-align corpus build --config configs/corpus/slurm.yaml data.repo_list=repos.txt output_path=corpus/

Settings are `CorpusConfig` (groups data, dedup, decontam, build), filled by YAML and dotted
`key=value` overrides like every stage's; the flags below are aliases of its keys.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from coder_align.benchmarks.decontam import DEFAULT_MBPP
from coder_align.cli import user_error
from coder_align.config import NON_NEGATIVE, ONE_OR_MORE, ConfigError, Range, load_config_with_flags
from coder_align.corpus.build import build_corpus
from coder_align.corpus.walk import DEFAULT_MAX_FILE_BYTES


@dataclass
class CorpusDataConfig:
    repos: list[str] = field(default_factory=list)  # repository directories or git checkouts
    repo_list: str | None = None  # a text file, one repository directory per line (after `repos`)
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES  # larger files are skipped and counted
    seed: int = 0  # tie-breaking seed of the file ordering

    RANGES: ClassVar[dict] = {"max_file_bytes": ONE_OR_MORE, "seed": NON_NEGATIVE}


@dataclass
class CorpusDedupConfig:
    threshold: float = 0.7  # MinHash Jaccard threshold for near-duplicate repositories
    num_perm: int = 128  # MinHash permutations

    RANGES: ClassVar[dict] = {"threshold": Range(0, 1, low_open=True), "num_perm": Range(2)}


@dataclass
class CorpusDecontamConfig:
    enabled: bool = True  # drop files sharing 10-grams with HumanEval/MBPP
    mbpp: str | None = DEFAULT_MBPP  # MBPP JSONL; "default": the one coder_align.benchmarks finds (skipped if none)
    extra_files: list[str] = field(default_factory=list)  # more benchmark JSONL (fields text/code/test_list)


@dataclass
class CorpusSlurmConfig:
    """datatrove's SlurmPipelineExecutor settings: one job array per stage."""

    partition: str = ""  # required with build.executor=slurm
    time: str = "24:00:00"  # limit per array task
    cpus_per_task: int = 1
    mem_per_cpu_gb: float = 2
    qos: str | None = None
    env_command: str | None = None  # run before each task, e.g. "source /shared/venv/bin/activate"; default: this venv
    sbatch_args: dict = field(default_factory=dict)  # more #SBATCH options, e.g. {account: myproject}
    tasks_per_job: int = 1  # tasks run one after another by each array job (fewer, longer jobs)

    RANGES: ClassVar[dict] = {"cpus_per_task": ONE_OR_MORE, "mem_per_cpu_gb": Range(0, low_open=True),
                              "tasks_per_job": ONE_OR_MORE}


@dataclass
class CorpusRayConfig:
    """datatrove's RayPipelineExecutor settings (a running Ray cluster; pip install 'ray[default]')."""

    cpus_per_task: int = 1
    mem_per_cpu_gb: float = 2

    RANGES: ClassVar[dict] = {"cpus_per_task": ONE_OR_MORE, "mem_per_cpu_gb": Range(0, low_open=True)}


@dataclass
class CorpusBuildConfig:
    workers: int = 0  # local: processes, 0 = all cores; slurm/ray: tasks running at once, 0 = no limit
    executor: Literal["local", "slurm", "ray"] = "local"
    shards: int = 0  # consecutive-repository shards; 0: min(repos, max(64, repos / 2000))
    format: Literal["jsonl", "parquet"] = "jsonl"  # parquet needs a directory output_path
    work_dir: str | None = None  # resume state and intermediate files; default beside/inside output_path
    resume: bool = True  # rerun continues an interrupted build; false: start over
    verbose: bool = False  # datatrove's per-task log lines on stderr (always in <work_dir>/logs)
    slurm: CorpusSlurmConfig = field(default_factory=CorpusSlurmConfig)
    ray: CorpusRayConfig = field(default_factory=CorpusRayConfig)

    RANGES: ClassVar[dict] = {"workers": NON_NEGATIVE, "shards": NON_NEGATIVE}


@dataclass
class CorpusConfig:
    """Build a repository-level pretraining corpus."""

    data: CorpusDataConfig = field(default_factory=CorpusDataConfig)
    dedup: CorpusDedupConfig = field(default_factory=CorpusDedupConfig)
    decontam: CorpusDecontamConfig = field(default_factory=CorpusDecontamConfig)
    build: CorpusBuildConfig = field(default_factory=CorpusBuildConfig)
    # the corpus: a .jsonl file (stats and report beside it) or a directory of shards with manifest.json
    output_path: str = ""
    stats_path: str | None = None  # default: <output_path without .jsonl>.stats.json, or <directory>/stats.json
    report_path: str | None = None  # default: <output_path without .jsonl>.report.txt, or <directory>/report.txt


# flag (argparse dest) -> (key, add_argument keywords); the flags from before CorpusConfig
FLAGS = {
    "repos": ("data.repos", {"nargs": "+", "metavar": "DIR"}),
    "out": ("output_path", {}),
    "dedup_threshold": ("dedup.threshold", {}),
    "num_perm": ("dedup.num_perm", {}),
    "no_decontaminate": ("decontam.enabled", {"action": "store_const", "const": False}),
    "mbpp": ("decontam.mbpp", {}),
    "decontam_file": ("decontam.extra_files", {"action": "append", "metavar": "JSONL"}),
    "max_file_bytes": ("data.max_file_bytes", {}),
    "seed": ("data.seed", {}),
    "stats": ("stats_path", {}),
    "report": ("report_path", {}),
    "workers": ("build.workers", {"metavar": "N"}),
    "executor": ("build.executor", {"choices": ["local", "slurm", "ray"]}),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coder-align corpus", description="Build a repository-level pretraining corpus.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="repositories -> JSONL samples, stats JSON and report",
                       epilog="Settings: --config FILE and key=value overrides (data.repos=[...], output_path=..., "
                              "dedup.threshold=..., decontam.enabled=false, ...); the --flags are aliases.")
    b.add_argument("--config", "-c", default=None, help="YAML file with settings (groups as in CorpusConfig)")
    b.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. output_path=corpus.jsonl")
    for dest, (key, kwargs) in FLAGS.items():
        b.add_argument(f"--{dest.replace('_', '-')}", dest=dest, default=argparse.SUPPRESS,
                       help=f"same as {key}=...", **kwargs)
    return parser


def corpus_config(path: str | None, overrides: list[str], flags: dict) -> CorpusConfig:
    keyed = {FLAGS[dest][0]: value for dest, value in flags.items()}
    names = {FLAGS[dest][0]: f"--{dest.replace('_', '-')}" for dest in flags}
    config = load_config_with_flags(CorpusConfig, path, overrides, keyed, names)
    if not config.output_path:
        raise ConfigError("output_path (--out) is required: the corpus .jsonl file or shard directory to write")
    if not config.data.repos and not config.data.repo_list:
        raise ConfigError("data.repos (--repos) or data.repo_list is required: the repository directories to read")
    if config.build.executor == "slurm" and not config.build.slurm.partition:
        raise ConfigError("build.executor=slurm needs build.slurm.partition (the partition to submit to)")
    return config


def read_repo_list(path: str) -> list[str]:
    """Repository directories from a text file: one per line; blank lines and # comments skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ConfigError(f"data.repo_list: cannot read {path}: {e.strerror or e}") from e
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def cli(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    flags = {dest: value for dest, value in vars(args).items() if dest in FLAGS}
    try:
        config = corpus_config(args.config, args.overrides, flags)
    except ConfigError as e:
        return user_error("coder-align corpus", e)
    b = config.build
    try:
        repos = list(config.data.repos) + (read_repo_list(config.data.repo_list) if config.data.repo_list else [])
        stats = build_corpus(
            repos, config.output_path, dedup_threshold=config.dedup.threshold,
            num_perm=config.dedup.num_perm, decontaminate=config.decontam.enabled, mbpp=config.decontam.mbpp,
            decontam_files=config.decontam.extra_files, max_file_bytes=config.data.max_file_bytes,
            seed=config.data.seed, stats_path=config.stats_path, report_path=config.report_path,
            workers=b.workers, executor=b.executor, shards=b.shards, output_format=b.format, work_dir=b.work_dir,
            resume=b.resume, verbose=b.verbose, slurm={k: v for k, v in asdict(b.slurm).items() if v is not None},
            ray=asdict(b.ray),
        )
    except (OSError, ValueError, ImportError) as e:
        return user_error("coder-align corpus", e)
    if stats.get("submitted"):
        print(f"submitted the build's Slurm job arrays (work dir {stats['work']}); when the last one ends: "
              f"{stats['out']}, {stats['stats_path']}, {stats['report_path']}. Rerun the same command to resume "
              "tasks that failed.")
        return 0
    with open(stats["report_path"], encoding="utf-8") as f:
        print(f.read(), end="")
    print(f"wrote {config.output_path}, {stats['stats_path']}, {stats['report_path']}"
          + (" (resumed an interrupted build)" if stats["resumed"] else ""))
    return 0
