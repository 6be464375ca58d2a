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

Not here: planning, executors, settings (``build.py``); what is kept (walk/filters/dedup/...);
the files' layout (``workfiles.py``); the tasks' records, stats and report (``records.py``).
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
from datatrove.pipeline.base import PipelineStep

from coder_align.benchmarks.decontam import load_index
from coder_align.corpus import filters
from coder_align.corpus.dedup import band_edges, greedy_removals, signature
from coder_align.corpus.deps import dependencies
from coder_align.corpus.records import StageTimer, format_report, peak_rss_mb, reset_peak_rss, summarize
# Write.process looks render_sample up here at call time: tests patch it in this module
from coder_align.corpus.repo import order_graph, render_sample
from coder_align.corpus.walk import walk_repo
from coder_align.corpus.workfiles import (
    DIGEST, PAIR, TMP_MARK, ShardWriter, atomic, band_dtype, bounds, chunks, digest_range, file_sha256, load_array,
    load_plan, save_array, shard_name, shard_repos, sorted_slice,
)


# --- the common shape of a task ----------------------------------------------------------

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
        _INDEX.clear()
        _INDEX[key] = load_index(mbpp=settings["mbpp"], extra=list(settings["decontam_files"]))
    return _INDEX[key]


def _spilled(work: Path, rank: int):
    """(repo, [(path, language, text), ...]) for each repository with kept files, in order."""
    with open(work / "scan" / f"{rank:05d}.files.jsonl", encoding="utf-8") as f:
        rows = (json.loads(line) for line in f)
        for repo, group in itertools.groupby(rows, key=lambda row: row[0]):
            yield repo, [tuple(row[1:]) for row in group]


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
            sha256 = None if plan["single_file"] else file_sha256(out)  # one .jsonl output has no manifest
            return {"shard": {"bytes": out.stat().st_size, "sha256": sha256}}


# --- finish: manifest, stats, report --------------------------------------------------------

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
