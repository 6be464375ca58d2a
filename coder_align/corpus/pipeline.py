"""The corpus build as datatrove pipeline stages: the per-task work, one class per stage.

Each stage runs as one datatrove executor (``build.py`` makes them: local processes, Slurm
job arrays or Ray) and starts when the one before it has finished:

  scan      one task per shard   walk + filters per repository; the kept files spilled to
                                 disk; per repository a MinHash signature and its LSH band
                                 keys; per file a digest. Band keys and digests sorted.
  buckets   one task per band    merge that band's sorted keys over all shards; repositories
                                 sharing a key, checked by estimated Jaccard (``band_edges``)
  clusters  one task             replay "first kept wins" over those pairs (``greedy_removals``)
  exact     one task per range   merge that digest range over all shards, leaving out
                                 near-duplicate repositories; each copy after the first goes
  write     one task per shard   drop what was removed, decontaminate, order by dependency,
                                 write the shard under a temporary name, then rename it
  finish    one task             manifest, stats and report; one .jsonl output is the shards
                                 concatenated; the bulky intermediate files are deleted

This is datatrove's four-stage MinHash dedup (signatures, buckets, clusters, filter) with
the hashing, banding and "first kept wins" rule of the in-memory ``NearDedup``, so any number
of workers makes the decisions the single-process build made (datatrove's own stages hash
differently, skip the Jaccard check and remove whole union-find clusters). Memory: a task
holds one repository (scan, write) or one record per shard (the merges), plus the pairs and
removed ids in ``clusters`` and a shard's removed files in ``write`` -- never the corpus.

Resuming: datatrove marks a task complete (``logs/<stage>/completions/``) only after it
returned; every file a task writes appears under its final name by ``os.replace`` after it
was written in full, so a killed task leaves no complete-looking output and reruns whole.

Not here: planning, executors, settings (``build.py``); what is kept (walk/filters/dedup/...).
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import os
import resource
import shutil
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from datatrove.pipeline.base import PipelineStep

from coder_align.corpus import filters
from coder_align.corpus.dedup import band_edges, greedy_removals, signature
from coder_align.corpus.deps import dependencies
from coder_align.corpus.repo import order_graph, render_sample
from coder_align.corpus.walk import walk_repo

# Seconds are summed per kind of work over all tasks; `spill` is writing and reading the
# kept files between scan and write (the single-process build held them in memory).
STAGES = ("walk", "filter", "neardup", "exact", "decontam", "order", "write", "spill")
PIPELINE = ("scan", "buckets", "clusters", "exact", "write", "finish")
CHUNK = 1024  # records read at a time per shard in a merge: memory is shards x CHUNK records


# --- files ---------------------------------------------------------------------------------

TMP_MARK = ".tmp"


@contextmanager
def atomic(path: Path, mode: str = "w"):
    """Open a temporary sibling of ``path``; it becomes ``path`` only if the block completes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            yield f
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def save_array(path: Path, array: np.ndarray) -> None:
    with atomic(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def load_array(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)


def load_plan(work: Path) -> dict:
    return json.loads((work / "plan.json").read_text(encoding="utf-8"))


def shard_repos(work: Path, rank: int) -> list[list]:
    """[[repo index, path, name], ...] of shard ``rank``, in corpus order."""
    return json.loads((work / "shards" / f"{rank:05d}.json").read_text(encoding="utf-8"))


def band_dtype(rows: int) -> np.dtype:
    # big-endian values as one byte string: byte order == numeric order of the band's tuple
    return np.dtype([("key", f"S{4 * rows}"), ("repo", "<u8")])


DIGEST = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("repo", "<u8"), ("file", "<u8")])
PAIR = np.dtype([("repo", "<i8"), ("file", "<i8")])


def digest_range(part: int, parts: int) -> tuple[int, int]:
    """Task ``part`` of ``exact`` owns digests whose first 8 bytes lie in [lo, hi)."""
    return part * (1 << 64) // parts, (part + 1) * (1 << 64) // parts


def bounds(keys: np.ndarray, lo: int, hi: int) -> tuple[int, int]:
    """(start, end) of the sorted integer ``keys`` with lo <= key < hi (hi may be 2**64)."""
    top = np.iinfo(keys.dtype).max
    start = int(np.searchsorted(keys, keys.dtype.type(lo), "left")) if lo <= top else len(keys)
    end = int(np.searchsorted(keys, keys.dtype.type(hi), "left")) if hi <= top else len(keys)
    return start, end


def sorted_slice(array: np.ndarray, lo: int, hi: int, field: str | None = None) -> np.ndarray:
    """The rows of ``array`` (sorted by ``field``, or by value) with lo <= key < hi."""
    start, end = bounds(np.asarray(array if field is None else array[field]), lo, hi)
    return array[start:end]


def chunks(path: Path, pick, size: int = CHUNK):
    """``pick(array in path)`` (a view) in copied chunks; the file is reopened per chunk so that
    a merge over thousands of shards keeps no file open (mmap holds a descriptor)."""
    start = 0
    while True:
        chunk = np.array(pick(load_array(path))[start:start + size])
        if not len(chunk):
            return
        yield chunk
        start += size


# --- the common shape of a task ----------------------------------------------------------

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


class CorpusStep(PipelineStep):
    """One task of a stage: ``process(rank, counts, timer)``, then its counts, seconds, start
    and end time and peak RSS in ``counts/<stage>/<rank>.json`` (read by ``finish``)."""

    type = "coder_align corpus"
    stage = ""

    def __init__(self, work: str | os.PathLike):
        super().__init__()
        self.work = str(work)
        self.name = self.stage

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        work = Path(self.work)
        reset_peak_rss()
        started, counts, timer = time.time(), Counter(), StageTimer()
        extra = self.process(work, rank, counts, timer) or {}
        record = {"counts": dict(counts), "seconds": timer.seconds, "started": started, "ended": time.time(),
                  "peak_rss_mb": peak_rss_mb(), **extra}
        with atomic(work / "counts" / self.stage / f"{rank:05d}.json") as f:
            json.dump(record, f)

    def process(self, work: Path, rank: int, counts: Counter, timer: StageTimer) -> dict | None:
        """Does the task's work; may return more fields for its record."""
        raise NotImplementedError


# --- scan: one shard of repositories -> spill, signatures, band keys, digests ----------------

class Scan(CorpusStep):
    stage = "scan"

    def process(self, work, rank, counts, timer):
        plan = load_plan(work)
        s = plan["settings"]
        bands, rows = plan["bands"], plan["rows"]
        repos = shard_repos(work, rank)
        first = plan["shard_starts"][rank]
        sigs = np.zeros((len(repos), s["num_perm"]), dtype=np.uint32)  # row = repo - first
        sig_ids, digests = [], []
        with atomic(work / "scan" / f"{rank:05d}.files.jsonl") as spill:
            for repo, path, _name in repos:
                counts["repos_in"] += 1
                with timer("walk"):
                    files = walk_repo(path, counts, s["max_file_bytes"])
                counts["bytes_in"] += sum(f.size for f in files)
                with timer("filter"):
                    kept = []
                    for f in files:
                        reason = filters.rejecting_filter(f)
                        counts[f"filter_{reason}" if reason else "filter_kept"] += 1
                        if not reason:
                            kept.append(f)
                if not kept:  # its signature row stays zero; it has no band keys
                    continue
                with timer("neardup"):
                    sig_ids.append(repo)
                    sigs[repo - first] = signature("\n".join(f.text for f in kept), s["num_perm"])
                with timer("exact"):
                    for k, f in enumerate(kept):
                        d = hashlib.blake2b(f.text.encode("utf-8"), digest_size=16).digest()
                        digests.append((int.from_bytes(d[:8], "big"), int.from_bytes(d[8:], "big"), repo, k))
                with timer("spill"):
                    for f in kept:
                        spill.write(json.dumps([repo, f.path, f.language, f.text], ensure_ascii=False) + "\n")
        with timer("neardup"):
            signed = sigs[np.array(sig_ids, dtype=np.int64) - first]
            keys = np.empty((bands, len(sig_ids)), dtype=band_dtype(rows))
            for b in range(bands):
                keys[b]["key"] = [row.astype(">u4").tobytes() for row in signed[:, b * rows:(b + 1) * rows]]
                keys[b]["repo"] = sig_ids
                keys[b].sort(order=["key", "repo"])
            save_array(work / "scan" / f"{rank:05d}.sigs.npy", sigs)
            save_array(work / "scan" / f"{rank:05d}.bands.npy", keys)
        with timer("exact"):
            records = np.array(digests, dtype=DIGEST)
            records.sort(order=["hi", "lo", "repo", "file"])
            save_array(work / "scan" / f"{rank:05d}.digests.npy", records)


# --- buckets: one LSH band over all shards -> verified near-duplicate pairs ------------------

class Signatures:
    """Any repository's signature: row (repo - first repo of its shard) of the shard's file."""

    def __init__(self, work: Path, shard_starts: list[int]):
        self.work, self.starts = work, np.asarray(shard_starts)

    def __call__(self, repos: list[int]) -> np.ndarray:
        rows = []
        for repo in repos:
            shard = int(np.searchsorted(self.starts, repo, "right")) - 1
            rows.append(np.array(load_array(self.work / "scan" / f"{shard:05d}.sigs.npy")[repo - self.starts[shard]]))
        return np.array(rows)


def _band_records(path: Path, band: int):
    for chunk in chunks(path, lambda keys: keys[band]):
        yield from zip(chunk["key"].tolist(), chunk["repo"].tolist())


class Buckets(CorpusStep):
    stage = "buckets"

    def process(self, work, band, counts, timer):
        plan = load_plan(work)
        signatures = Signatures(work, plan["shard_starts"])
        edges = []
        with timer("neardup"):
            merged = heapq.merge(*(_band_records(work / "scan" / f"{r:05d}.bands.npy", band)
                                   for r in range(plan["shards"])))
            for _, group in itertools.groupby(merged, key=lambda rec: rec[0]):
                repos = [repo for _, repo in group]
                if len(repos) > 1:
                    counts["neardup_candidate_groups"] += 1
                    edges += band_edges(repos, signatures(repos), plan["settings"]["dedup_threshold"])
            save_array(work / "neardup" / f"b{band:03d}.edges.npy", np.array(edges, dtype=np.int64).reshape(-1, 2))


class Clusters(CorpusStep):
    stage = "clusters"

    def process(self, work, rank, counts, timer):
        plan = load_plan(work)
        with timer("neardup"):
            edges = [np.asarray(load_array(work / "neardup" / f"b{b:03d}.edges.npy")) for b in range(plan["bands"])]
            removed = greedy_removals(np.concatenate(edges) if edges else np.zeros((0, 2), dtype=np.int64))
            save_array(work / "neardup" / "removed.npy", removed)


# --- exact: one digest range over all shards -> files that repeat an earlier kept file ------

def _digest_records(path: Path, lo: int, hi: int, removed: np.ndarray):
    start, end = bounds(np.asarray(load_array(path)["hi"]), lo, hi)
    for chunk in chunks(path, lambda array: array[start:end]):
        chunk = chunk[~np.isin(chunk["repo"].astype(np.int64), removed)]  # near-duplicate repos are gone
        yield from zip(chunk["hi"].tolist(), chunk["lo"].tolist(), chunk["repo"].tolist(), chunk["file"].tolist())


class Exact(CorpusStep):
    stage = "exact"

    def process(self, work, part, counts, timer):
        plan = load_plan(work)
        with timer("exact"):
            removed = np.asarray(load_array(work / "neardup" / "removed.npy"))
            lo, hi = digest_range(part, plan["parts"])
            merged = heapq.merge(*(_digest_records(work / "scan" / f"{r:05d}.digests.npy", lo, hi, removed)
                                   for r in range(plan["shards"])))
            copies = []
            for _, group in itertools.groupby(merged, key=lambda rec: rec[:2]):
                next(group)  # the first in corpus order is kept
                copies += [(repo, file) for _, _, repo, file in group]
            out = np.array(copies, dtype=PAIR)
            out.sort(order=["repo", "file"])
            save_array(work / "exact" / f"p{part:03d}.npy", out)


# --- write: one shard -> samples ------------------------------------------------------------

_INDEX: dict = {}


def benchmark_index(settings: dict) -> tuple:
    """(index, {benchmark: strings or why absent}) for decontamination, loaded once per process."""
    key = json.dumps([settings["mbpp"], settings["decontam_files"]])
    if key not in _INDEX:
        from coder_align.corpus.decontam import load_index

        _INDEX.clear()
        _INDEX[key] = load_index(mbpp=settings["mbpp"], extra=list(settings["decontam_files"]))
    return _INDEX[key]


def _spilled(work: Path, rank: int):
    """(repo, [(path, language, text), ...]) for each repository with kept files, in order."""
    with open(work / "scan" / f"{rank:05d}.files.jsonl", encoding="utf-8") as f:
        rows = (json.loads(line) for line in f)
        for repo, group in itertools.groupby(rows, key=lambda row: row[0]):
            yield repo, [tuple(row[1:]) for row in group]


class ShardWriter:
    """Samples of one shard to ``path`` (JSONL, or parquet in row groups)."""

    def __init__(self, path: Path, fmt: str, row_group: int = 1000):
        self.path, self.fmt, self.row_group = path, fmt, row_group
        self.rows, self.parquet = [], None

    def __enter__(self):
        self.context = atomic(self.path, "wb")
        self.file = self.context.__enter__()
        return self

    def write(self, row: dict) -> None:
        if self.fmt == "jsonl":
            self.file.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
            return
        self.rows.append(row)
        if len(self.rows) >= self.row_group:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(self.rows, schema=pa.schema(
            [("text", pa.string()), ("repo", pa.string()), ("files", pa.list_(pa.string())), ("language", pa.string())]))
        if self.parquet is None:
            self.parquet = pq.ParquetWriter(self.file, table.schema)
        self.parquet.write_table(table)
        self.rows = []

    def __exit__(self, *exc):
        if exc[0] is None and self.fmt == "parquet":
            if self.rows or self.parquet is None:
                self._flush()
            self.parquet.close()
        return self.context.__exit__(*exc)


def shard_name(rank: int, fmt: str) -> str:
    return f"shard-{rank:05d}.{fmt}"


class Write(CorpusStep):
    stage = "write"

    def process(self, work, rank, counts, timer):
        plan = load_plan(work)
        s = plan["settings"]
        repos = shard_repos(work, rank)
        if not repos:
            return
        first, last = repos[0][0], repos[-1][0] + 1
        with timer("neardup"):
            near = set(sorted_slice(load_array(work / "neardup" / "removed.npy"), first, last).tolist())
        with timer("exact"):
            copies = set()
            for p in range(plan["parts"]):
                pairs = sorted_slice(load_array(work / "exact" / f"p{p:03d}.npy"), first, last, "repo")
                copies.update(zip(pairs["repo"].tolist(), pairs["file"].tolist()))
        index = benchmark_index(s)[0] if s["decontaminate"] else None
        out = Path(plan["shard_dir"]) / shard_name(rank, s["format"])
        languages: Counter = Counter()
        spilled = _spilled(work, rank)
        with ShardWriter(out, s["format"]) as sink:
            with timer("spill"):
                pending = next(spilled, None)
            for repo, _path, name in repos:
                if pending is None or pending[0] != repo:  # nothing survived the filters
                    counts["repos_empty_after_filtering"] += 1
                    continue
                kept = pending[1]
                with timer("spill"):
                    pending = next(spilled, None)
                if repo in near:
                    counts["neardup_repos_removed"] += 1
                    counts["neardup_files_removed"] += len(kept)
                    continue
                unique = [f for k, f in enumerate(kept) if (repo, k) not in copies]
                counts["exact_duplicate_files_removed"] += len(kept) - len(unique)
                with timer("decontam"):
                    clean = unique
                    if index is not None:
                        clean = [f for f in unique if index.match(f[2]) is None]
                        counts["decontam_files_removed"] += len(unique) - len(clean)
                if not clean:
                    counts["repos_empty_after_filtering"] += 1
                    continue
                with timer("order"):
                    texts = {path: text for path, _, text in clean}
                    deps = dependencies(texts, counts)
                    counts["dependency_edges"] += sum(map(len, deps.values()))
                    components = order_graph(deps, s["seed"])
                with timer("write"):
                    for comp in components:
                        text, language = render_sample(comp, texts)
                        sink.write({"text": text, "repo": name, "files": comp, "language": language})
                        languages[language] += 1
                        counts["samples"] += 1
                        counts["bytes_out"] += len(text.encode("utf-8"))
                counts["repos_out"] += 1
                counts["files_out"] += len(clean)
        for language, n in languages.items():
            counts[f"language:{language}"] += n
        with timer("write"):  # for the manifest: here, in parallel, rather than over the corpus in `finish`
            sha256 = None if plan["single_file"] else _sha256(out)  # one .jsonl output has no manifest
            return {"shard": {"bytes": out.stat().st_size, "sha256": sha256}}


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


# --- finish: manifest, stats, report --------------------------------------------------------

def task_records(work: Path, stage: str) -> list[dict]:
    """The records of a stage's tasks (``counts/<stage>/<rank>.json``), in rank order."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((work / "counts" / stage).glob("*.json"))]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
                                          "sha256": _sha256(path) if path.exists() else None}
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


HEADLINE_COUNTS = ("repos_in", "repos_out", "files_walked", "files_out", "samples", "bytes_in", "bytes_out",
                   "neardup_repos_removed", "neardup_files_removed", "exact_duplicate_files_removed",
                   "decontam_files_removed", "repos_empty_after_filtering", "dependency_edges")


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


class Finish(CorpusStep):
    stage = "finish"

    def process(self, work, rank, counts, timer):
        plan = load_plan(work)
        out, shard_dir = Path(plan["out"]), Path(plan["shard_dir"])
        stats_path, report_path = Path(plan["stats_path"]), Path(plan["report_path"])
        build_id = plan.get("build_id")  # None in the work directory of an older version: its rule
        written = json.loads(stats_path.read_text(encoding="utf-8")) if stats_path.is_file() else {}
        done = written.get("build_id") == build_id if build_id else written.get("plan_id") == plan["id"]
        if not done:  # a rerun after the outputs were written (and the shards perhaps merged) skips this
            stats = summarize(work, plan)
            stats["plan_id"], stats["build_id"] = plan["id"], build_id
            manifest = {"plan_id": plan["id"], "build_id": build_id, "format": plan["settings"]["format"],
                        "shards": stats.pop("manifest"), "samples": stats["counts"]["samples"]}
            if plan["single_file"]:  # the shards, in order, are the one file
                with timer("write"), atomic(out, "wb") as sink:
                    for shard in manifest["shards"]:
                        with open(shard_dir / shard["path"], "rb") as f:
                            shutil.copyfileobj(f, sink, 1 << 20)
            else:
                with atomic(Path(plan["manifest_path"])) as f:
                    json.dump(manifest, f, indent=2)
            report_path.parent.mkdir(parents=True, exist_ok=True)
            with atomic(report_path) as f:
                f.write(format_report(stats))
            with atomic(stats_path) as f:  # last: its build_id says the outputs are complete
                f.write(json.dumps(stats, indent=2) + "\n")
        # the intermediate files are as large as the input; logs/, counts/ and plan.json stay (small)
        for name in ("scan", "neardup", "exact", "shards"):
            shutil.rmtree(work / name, ignore_errors=True)
        if plan["single_file"]:
            shutil.rmtree(shard_dir, ignore_errors=True)
        else:  # what tasks killed mid-write left behind
            for stray in shard_dir.glob(f".*{TMP_MARK}*"):
                stray.unlink(missing_ok=True)
