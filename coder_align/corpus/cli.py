"""`coder-align corpus build --repos DIR [DIR ...] --out corpus.jsonl [options]`."""

from __future__ import annotations

import argparse
import sys

from coder_align.cli import user_error
from coder_align.corpus.decontam import DEFAULT_MBPP
from coder_align.corpus.walk import DEFAULT_MAX_FILE_BYTES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coder-align corpus", description="Build a repository-level pretraining corpus.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="repositories -> JSONL samples, stats JSON and report")
    b.add_argument("--repos", nargs="+", required=True, metavar="DIR", help="repository directories or git checkouts")
    b.add_argument("--out", required=True, help="output JSONL (stats and report are written beside it)")
    b.add_argument("--dedup-threshold", type=float, default=0.7, help="MinHash Jaccard threshold for near-duplicate repositories")
    b.add_argument("--num-perm", type=int, default=128, help="MinHash permutations")
    b.add_argument("--no-decontaminate", action="store_true", help="skip HumanEval/MBPP decontamination")
    b.add_argument("--mbpp", default=DEFAULT_MBPP,
                   help="MBPP JSONL for decontamination (default: the one coder_align.benchmarks finds; skipped if none)")
    b.add_argument("--decontam-file", action="append", default=[], metavar="JSONL",
                   help="extra benchmark JSONL (fields text/code/test_list); repeatable")
    b.add_argument("--max-file-bytes", type=int, default=DEFAULT_MAX_FILE_BYTES, help="skip larger files")
    b.add_argument("--seed", type=int, default=0, help="tie-breaking seed of the file ordering")
    b.add_argument("--stats", default=None, help="stats JSON path (default: <out>.stats.json)")
    b.add_argument("--report", default=None, help="report path (default: <out>.report.txt)")
    return parser


def cli(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from coder_align.corpus.build import build_corpus  # heavy imports only once args parse

    try:
        stats = build_corpus(
            args.repos, args.out, dedup_threshold=args.dedup_threshold, num_perm=args.num_perm,
            decontaminate=not args.no_decontaminate, mbpp=args.mbpp, decontam_files=args.decontam_file,
            max_file_bytes=args.max_file_bytes, seed=args.seed, stats_path=args.stats, report_path=args.report,
        )
    except (OSError, ValueError) as e:
        return user_error("coder-align corpus", e)
    with open(stats["report_path"], encoding="utf-8") as f:
        print(f.read(), end="")
    print(f"wrote {args.out}, {stats['stats_path']}, {stats['report_path']}")
    return 0
