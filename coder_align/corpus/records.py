"""What the corpus build's tasks record about themselves, and what the build makes of it.

A task's record (``counts/<stage>/<rank>.json``) holds its counts, seconds per kind of work
(``StageTimer``), start and end time and peak RSS (``reset_peak_rss`` / ``peak_rss_mb``).
From the records: the order to hand a stage's tasks to a pool (``longest_first``), the
build's stats (``summarize``) and its report (``format_report``).

Not here: the tasks themselves (``pipeline.py``); the files' layout (``workfiles.py``).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from coder_align.corpus.workfiles import file_sha256, shard_name

# Seconds are summed per kind of work over all tasks; `spill` is writing and reading the
# kept files between scan and write (the single-process build held them in memory).
STAGES = ("walk", "filter", "neardup", "exact", "decontam", "order", "write", "spill")
PIPELINE = ("scan", "buckets", "clusters", "exact", "write", "finish")
HEADLINE_COUNTS = ("repos_in", "repos_out", "files_walked", "files_out", "samples", "bytes_in", "bytes_out",
                   "neardup_repos_removed", "neardup_files_removed", "exact_duplicate_files_removed",
                   "decontam_files_removed", "repos_empty_after_filtering", "dependency_edges")


class StageTimer:
    """Seconds spent per kind of work (`with timer("walk"): ...`)."""

    def __init__(self):
        self.seconds = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        yield
        self.seconds[name] += time.perf_counter() - start


_peak_before_reset = 0.0  # MB: the process's peak up to its last reset_peak_rss()


def reset_peak_rss() -> None:
    """Restart the process's peak RSS (Linux), so that a task reports its own peak: a pool
    worker runs tasks of every stage, and its lifetime peak would be the largest of them."""
    global _peak_before_reset
    _peak_before_reset = max(_peak_before_reset, peak_rss_mb())
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # not Linux: peak_rss_mb() falls back to the lifetime peak
        pass


def peak_rss_mb() -> float:
    """Peak RSS since reset_peak_rss() (VmHWM), else since the process started (ru_maxrss)."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20 if sys.platform == "darwin" else 1024)


def lifetime_peak_rss_mb() -> float:
    """The process's peak RSS since it started, resets or not."""
    return max(_peak_before_reset, peak_rss_mb())


def task_records(work: Path, stage: str) -> list[dict]:
    """The records of a stage's tasks (``counts/<stage>/<rank>.json``), in rank order."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((work / "counts" / stage).glob("*.json"))]


def longest_first(work: str | os.PathLike, stage: str, ranks: list[int]) -> list[int]:
    """The order to hand a stage's tasks to a pool: ``write`` works on the files its rank's
    ``scan`` read, so the scan's times rank its tasks longest first (the longest task started
    last holds every worker at the stage's end). Other stages keep rank order: the user's order
    of repositories, largest first if they are listed so."""
    if stage != "write":
        return ranks
    records = Path(work) / "counts" / "scan"

    def scan_seconds(rank: int) -> float:
        try:
            r = json.loads((records / f"{rank:05d}.json").read_text(encoding="utf-8"))
            return r["ended"] - r["started"]
        except (OSError, ValueError, KeyError):
            return 0.0

    return sorted(ranks, key=lambda rank: -scan_seconds(rank))


def summarize(work: Path, plan: dict) -> dict:
    """Stats of the whole build from the tasks' records: counts, seconds, wall time and peak
    RSS per stage, languages, and the manifest of shards."""
    counts = Counter(dict.fromkeys(HEADLINE_COUNTS, 0))  # exist (as 0) even when nothing was removed
    seconds = dict.fromkeys(STAGES, 0.0)
    per_stage = {}
    for stage in PIPELINE[:-1]:
        records = task_records(work, stage)
        for r in records:
            counts.update(r["counts"])
            for k, v in r["seconds"].items():
                seconds[k] += v
        if records:
            per_stage[stage] = {"tasks": len(records),
                                "wall_seconds": round(max(r["ended"] for r in records) - min(r["started"] for r in records), 3),
                                "peak_rss_mb": round(max(r["peak_rss_mb"] for r in records), 1)}
    languages = Counter({k.split(":", 1)[1]: counts.pop(k) for k in list(counts) if k.startswith("language:")})
    counts.pop("neardup_candidate_groups", None)
    s = plan["settings"]
    shards = []
    for rank in range(plan["shards"]):
        path = Path(plan["shard_dir"]) / shard_name(rank, s["format"])
        record = json.loads((work / "counts" / "write" / f"{rank:05d}.json").read_text(encoding="utf-8"))
        written = record.get("shard") or {"bytes": path.stat().st_size if path.exists() else 0,
                                          "sha256": file_sha256(path) if path.exists() else None}
        shards.append({"path": path.name, "samples": record["counts"].get("samples", 0), **written})
    return {
        "repos": plan["repo_paths"] if plan["repo_paths"] is not None else f"{plan['repo_count']} repositories",
        "repo_count": plan["repo_count"],
        "out": plan["out"],
        "settings": {"dedup_threshold": s["dedup_threshold"], "num_perm": s["num_perm"],
                     "decontaminate": s["decontaminate"], "max_file_bytes": s["max_file_bytes"], "seed": s["seed"]},
        "build": {"shards": plan["shards"], "lsh_bands": plan["bands"], "lsh_rows": plan["rows"],
                  "exact_parts": plan["parts"], "format": s["format"], "work_dir": str(work)},
        "benchmarks": plan["benchmarks"],
        "counts": dict(sorted(counts.items())),
        "samples_by_language": dict(sorted(languages.items(), key=lambda kv: (-kv[1], kv[0]))),
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
        "pipeline": per_stage,
        "manifest": shards,
    }


def format_report(stats: dict) -> str:
    c = Counter(stats["counts"])
    removed_by_filter = {k[len("filter_"):]: v for k, v in c.items() if k.startswith("filter_") and k != "filter_kept"}
    skipped = {k[len("skipped_"):]: v for k, v in c.items() if k.startswith("skipped_")}
    total = sum(stats["seconds"].values()) or 1e-9
    pipeline = stats.get("pipeline", {})
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
        f"time in tasks: {total:.2f}s ({', '.join(f'{k} {v:.2f}s' for k, v in stats['seconds'].items())})",
        "pipeline (wall s, tasks, peak RSS MB): "
        + (", ".join(f"{k} {v['wall_seconds']:.2f} x{v['tasks']} {v['peak_rss_mb']:.0f}" for k, v in pipeline.items())
           or "none"),
    ]
    return "\n".join(lines) + "\n"
