"""The corpus pipeline: repositories in, JSONL samples + stats + report out.

Per repository, in this order (each stage timed, each removal counted):

1. walk     -- read source files (walk.py: .gitignore, vendored, binary, ...)
2. filter   -- StarCoder quality rules (filters.py)
3. neardup  -- the whole repository vs. those kept before it (MinHash LSH)
4. exact    -- files identical to a file kept earlier in the corpus
5. decontam -- files sharing a 10-gram with HumanEval / MBPP
6. order    -- dependency graph, components, one sample per component (repo.py)
7. write    -- one JSONL row per sample: text, repo, files, language

Near-dedup runs before exact dedup so that a fork is counted as one near-duplicate
repository rather than as hundreds of duplicate files. Repositories are processed one
at a time, so memory holds one repository, not the corpus.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from coder_align.corpus import filters
from coder_align.corpus.decontam import DEFAULT_MBPP, load_index
from coder_align.corpus.dedup import ExactDedup, NearDedup
from coder_align.corpus.deps import dependencies
from coder_align.corpus.repo import order_graph, render_sample
from coder_align.corpus.walk import DEFAULT_MAX_FILE_BYTES, walk_repo

STAGES = ("walk", "filter", "neardup", "exact", "decontam", "order", "write")


def _repo_names(repos: list[Path]) -> list[str]:
    """Directory names, made unique with the parent's name when two repos share one."""
    names = [p.name or str(p) for p in repos]
    dupes = {n for n in names if names.count(n) > 1}
    return [f"{p.parent.name}/{p.name}" if n in dupes else n for p, n in zip(repos, names)]


def build_corpus(
    repos: list[str | os.PathLike],
    out: str | os.PathLike,
    *,
    dedup_threshold: float = 0.7,
    num_perm: int = 128,
    decontaminate: bool = True,
    mbpp: str | os.PathLike | None = DEFAULT_MBPP,
    decontam_files: list[str | os.PathLike] = (),
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    seed: int = 0,
    stats_path: str | os.PathLike | None = None,
    report_path: str | os.PathLike | None = None,
) -> dict:
    """Build the corpus; returns the stats dict that is also written as JSON.

    ``stats_path`` / ``report_path`` default to ``<out>.stats.json`` / ``<out>.report.txt``
    (``out`` without its ``.jsonl`` suffix).
    """
    repos = [Path(r) for r in repos]
    for r in repos:
        if not r.is_dir():
            raise NotADirectoryError(f"{r}: --repos entry is not a directory")
    out = Path(out)
    base = out.with_suffix("") if out.suffix == ".jsonl" else out
    stats_path = Path(stats_path) if stats_path else Path(f"{base}.stats.json")
    report_path = Path(report_path) if report_path else Path(f"{base}.report.txt")

    # --- what every repository is checked against ------------------------------------------
    counts = Counter(dict.fromkeys(HEADLINE_COUNTS, 0))  # exist (as 0) even when nothing was removed
    timer = StageTimer()
    index, benchmark_sources = (load_index(mbpp=mbpp, extra=list(decontam_files)) if decontaminate else (None, {}))
    near, exact = NearDedup(dedup_threshold, num_perm), ExactDedup()
    languages: Counter = Counter()

    # --- one repository at a time: clean files -> dependency order -> samples ------------------
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as sink:
        for path, name in zip(repos, _repo_names(repos)):
            counts["repos_in"] += 1
            clean = _clean_files(path, name, counts, timer, max_file_bytes, near, exact, index)
            if not clean:
                continue
            with timer("order"):
                texts = {f.path: f.text for f in clean}
                deps = dependencies(texts, counts)
                counts["dependency_edges"] += sum(map(len, deps.values()))
                components = order_graph(deps, seed)
            with timer("write"):
                for comp in components:
                    text, language = render_sample(comp, texts)
                    sink.write(json.dumps({"text": text, "repo": name, "files": comp, "language": language},
                                          ensure_ascii=False) + "\n")
                    languages[language] += 1
                    counts["samples"] += 1
                    counts["bytes_out"] += len(text.encode("utf-8"))
            counts["repos_out"] += 1
            counts["files_out"] += len(clean)

    # --- stats and report --------------------------------------------------------------------
    stats = {
        "repos": [str(r) for r in repos],
        "out": str(out),
        "settings": {"dedup_threshold": dedup_threshold, "num_perm": num_perm, "decontaminate": decontaminate,
                     "max_file_bytes": max_file_bytes, "seed": seed},
        "benchmarks": benchmark_sources,
        "counts": dict(sorted(counts.items())),
        "samples_by_language": dict(languages.most_common()),
        "seconds": {k: round(v, 4) for k, v in timer.seconds.items()},
    }
    stats_path.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    report_path.write_text(format_report(stats), encoding="utf-8")
    stats["stats_path"], stats["report_path"] = str(stats_path), str(report_path)
    return stats


HEADLINE_COUNTS = ("repos_in", "repos_out", "files_walked", "files_out", "samples", "bytes_in", "bytes_out",
                   "neardup_repos_removed", "neardup_files_removed", "exact_duplicate_files_removed",
                   "decontam_files_removed", "repos_empty_after_filtering", "dependency_edges")


class StageTimer:
    """Seconds spent per stage, summed over repositories (`with timer("walk"): ...`)."""

    def __init__(self):
        self.seconds = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        yield
        self.seconds[name] += time.perf_counter() - start


def _clean_files(path: Path, name: str, counts: Counter, timer: StageTimer, max_file_bytes: int,
                 near: NearDedup, exact: ExactDedup, index) -> list:
    """A repository's files that survive walk -> filters -> near-dup -> exact dup -> decontamination,
    each removal counted; [] when nothing is left (a near-duplicate repository, or all removed)."""
    with timer("walk"):
        files = walk_repo(path, counts, max_file_bytes)
    counts["bytes_in"] += sum(f.size for f in files)
    with timer("filter"):
        kept = []
        for f in files:
            reason = filters.rejecting_filter(f)
            counts[f"filter_{reason}" if reason else "filter_kept"] += 1
            if not reason:
                kept.append(f)
    with timer("neardup"):
        dup_of = near.duplicate_of(name, "\n".join(f.text for f in kept)) if kept else None
    if dup_of is not None:  # the whole repository goes: it is a copy of one already written
        counts["neardup_repos_removed"] += 1
        counts["neardup_files_removed"] += len(kept)
        return []
    with timer("exact"):
        unique = [f for f in kept if not exact.is_duplicate(f.text)]
        counts["exact_duplicate_files_removed"] += len(kept) - len(unique)
    with timer("decontam"):
        clean = unique
        if index is not None:
            clean = [f for f in unique if index.match(f.text) is None]
            counts["decontam_files_removed"] += len(unique) - len(clean)
    if not clean:
        counts["repos_empty_after_filtering"] += 1
    return clean


def format_report(stats: dict) -> str:
    c = Counter(stats["counts"])
    removed_by_filter = {k[len("filter_"):]: v for k, v in c.items() if k.startswith("filter_") and k != "filter_kept"}
    skipped = {k[len("skipped_"):]: v for k, v in c.items() if k.startswith("skipped_")}
    total = sum(stats["seconds"].values()) or 1e-9
    lines = [
        f"Corpus: {stats['out']}",
        f"repositories: {c['repos_in']} in, {c['repos_out']} out "
        f"({c['neardup_repos_removed']} near-duplicate, {c['repos_empty_after_filtering']} empty after filtering)",
        f"files: {c['files_walked']} read, {c['files_out']} kept in {c['samples']} samples",
        f"bytes: {c['bytes_in']:,} read, {c['bytes_out']:,} written",
        f"skipped while walking: {skipped or 'none'}",
        f"removed by filters: {removed_by_filter or 'none'}",
        f"removed as exact duplicates: {c['exact_duplicate_files_removed']} files; "
        f"in near-duplicate repositories: {c['neardup_files_removed']} files",
        f"decontamination: {c['decontam_files_removed']} files removed; benchmarks: {stats['benchmarks'] or 'off'}",
        f"samples by language: {stats['samples_by_language']}",
        f"time: {total:.2f}s ({', '.join(f'{k} {v:.2f}s' for k, v in stats['seconds'].items())})",
    ]
    return "\n".join(lines) + "\n"
