"""Corpus build throughput on a real source tree: MB/s, files/s, per-stage timing.

    PYTHONPATH=. python benchmarks/corpus_build.py [--repos DIR ...] [--out DIR]

Defaults to the installed ``transformers`` package's source directory: one large
repository of Python files. Add more ``--repos`` to measure dedup across repositories.
Prints the figures recorded in benchmarks/README.md ("## Corpus build").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def default_repo() -> str:
    import importlib.util

    spec = importlib.util.find_spec("transformers")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("transformers is not installed: pass --repos DIR")
    return list(spec.submodule_search_locations)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", nargs="+", default=None)
    parser.add_argument("--out", default=None, help="output directory (default: a temp dir)")
    parser.add_argument("--no-decontaminate", action="store_true")
    args = parser.parse_args()

    from coder_align.corpus import build_corpus

    repos = args.repos or [default_repo()]
    out_dir = Path(args.out or tempfile.mkdtemp(prefix="corpus_bench_"))
    start = time.perf_counter()
    stats = build_corpus(repos, out_dir / "corpus.jsonl", decontaminate=not args.no_decontaminate)
    wall = time.perf_counter() - start

    c = stats["counts"]
    mb_in = c["bytes_in"] / 1e6
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    print(f"repos: {', '.join(repos)}")
    print(f"wall {wall:.2f}s (includes loading the decontamination index)")
    print(f"read {c['files_walked']} files, {mb_in:.2f} MB -> {c['files_out']} files in {c['samples']} samples, "
          f"{c['bytes_out'] / 1e6:.2f} MB, {c['dependency_edges']} dependency edges")
    print(f"throughput: {mb_in / wall:.2f} MB/s, {c['files_walked'] / wall:.0f} files/s")
    print("stage       seconds   share")
    total = sum(stats["seconds"].values())
    for name, sec in stats["seconds"].items():
        print(f"  {name:<9} {sec:8.2f}  {100 * sec / total:5.1f}%")
    removed = {k: v for k, v in c.items() if v and (k.startswith(("skipped_", "filter_")) or "removed" in k)}
    print("counts:", json.dumps(removed, sort_keys=True))


if __name__ == "__main__":
    main()
