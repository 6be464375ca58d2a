"""`coder-align corpus build`: repositories -> corpus JSONL, stats JSON and report.

    coder-align corpus build --repos DIR [DIR ...] --out corpus.jsonl [options]
    coder-align corpus build --config configs/corpus/repos.yaml data.repos=[a,b] output_path=corpus.jsonl

Settings are `CorpusConfig` (groups data, dedup, decontam), filled by YAML and dotted
`key=value` overrides like every stage's; the flags below are aliases of its keys.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import ClassVar

from coder_align.cli import user_error
from coder_align.config import NON_NEGATIVE, ONE_OR_MORE, ConfigError, Range, load_config_with_flags
from coder_align.corpus.decontam import DEFAULT_MBPP
from coder_align.corpus.walk import DEFAULT_MAX_FILE_BYTES


@dataclass
class CorpusDataConfig:
    repos: list[str] = field(default_factory=list)  # repository directories or git checkouts
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
class CorpusConfig:
    """Build a repository-level pretraining corpus."""

    data: CorpusDataConfig = field(default_factory=CorpusDataConfig)
    dedup: CorpusDedupConfig = field(default_factory=CorpusDedupConfig)
    decontam: CorpusDecontamConfig = field(default_factory=CorpusDecontamConfig)
    output_path: str = ""  # the corpus JSONL; stats and report are written beside it
    stats_path: str | None = None  # default: <output_path>.stats.json
    report_path: str | None = None  # default: <output_path>.report.txt


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
        raise ConfigError("output_path (--out) is required: the corpus JSONL to write")
    if not config.data.repos:
        raise ConfigError("data.repos (--repos) is required: the repository directories to read")
    return config


def cli(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    flags = {dest: value for dest, value in vars(args).items() if dest in FLAGS}
    try:
        config = corpus_config(args.config, args.overrides, flags)
    except ConfigError as e:
        return user_error("coder-align corpus", e)
    from coder_align.corpus.build import build_corpus  # heavy imports only once the settings are valid

    try:
        stats = build_corpus(
            config.data.repos, config.output_path, dedup_threshold=config.dedup.threshold,
            num_perm=config.dedup.num_perm, decontaminate=config.decontam.enabled, mbpp=config.decontam.mbpp,
            decontam_files=config.decontam.extra_files, max_file_bytes=config.data.max_file_bytes,
            seed=config.data.seed, stats_path=config.stats_path, report_path=config.report_path,
        )
    except (OSError, ValueError) as e:
        return user_error("coder-align corpus", e)
    with open(stats["report_path"], encoding="utf-8") as f:
        print(f.read(), end="")
    print(f"wrote {config.output_path}, {stats['stats_path']}, {stats['report_path']}")
    return 0
