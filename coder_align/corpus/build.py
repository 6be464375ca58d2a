"""The corpus build: repositories in, JSONL (or parquet) samples + stats + report out.

Per repository, in this order (each removal counted):

1. walk     -- read source files (walk.py: .gitignore, vendored, binary, ...)
2. filter   -- StarCoder quality rules (filters.py)
3. neardup  -- the whole repository vs. those kept before it (MinHash LSH)
4. exact    -- files identical to a file kept earlier in the corpus
5. decontam -- files sharing a 10-gram with HumanEval / MBPP
6. order    -- dependency graph, components, one sample per component (repo.py)
7. write    -- one row per sample: text, repo, files, language

Near-dedup runs before exact dedup so that a fork is counted as one near-duplicate
repository rather than as hundreds of duplicate files.

How it runs: a plan (repositories split into shards of consecutive repositories, the
settings) goes to ``<work_dir>/plan.json``; the stages of ``pipeline.py`` then run through
datatrove's task runner -- ``local`` (one pool of ``workers`` processes on this machine,
forked once for all stages; 1 runs everything in this process), ``slurm`` (one job array per stage, chained by dependencies; this
function returns once they are submitted) or ``ray``. The output is the same for any
number of workers or shards: shards hold consecutive repositories, in order. Rerunning an
interrupted build with the same settings skips the tasks that completed; a finished
build's rerun starts over.

Outputs: ``out`` ending in ``.jsonl`` is one file (the shards concatenated), stats and report
beside it (``corpus.stats.json``, ``corpus.report.txt``); any other ``out`` is a directory of
shards (``shard-00000.jsonl`` or ``.parquet``) with ``manifest.json``, ``stats.json`` and
``report.txt``.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import multiprocessing
import os
import secrets
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from loguru import logger

from coder_align.benchmarks.decontam import DEFAULT_MBPP
from coder_align.corpus import pipeline
from coder_align.corpus.dedup import lsh_bands
from coder_align.corpus.records import longest_first
from coder_align.corpus.walk import DEFAULT_MAX_FILE_BYTES
from coder_align.corpus.workfiles import atomic

EXECUTORS = ("local", "slurm", "ray")
MAX_REPOS_PER_SHARD = 2000  # auto sharding: at least 64 shards, at most this many repositories each
SHARDS_PER_EXACT_PART = 16  # each exact task merges every shard's slice: parts x shards file reads
MAX_EXACT_PARTS = 256
LISTED_REPOS = 10_000  # stats.json lists the repositories up to this many


def _repo_names(repos: list[Path]) -> list[str]:
    """Directory names, made unique with the parent's name when two repos share one."""
    names = [p.name or str(p) for p in repos]
    dupes = {n for n in names if names.count(n) > 1}
    named = [f"{p.parent.name}/{p.name}" if n in dupes else n for p, n in zip(repos, names)]
    seen: dict[str, Path] = {}
    for path, name in zip(repos, named):
        if name in seen:  # near-dedup and the output rows key repositories by name
            raise ValueError(f"{seen[name]} and {path} are both named {name!r}: give one repository once, "
                             "or rename one of them")
        seen[name] = path
    return named


def default_workers() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def auto_shards(n_repos: int) -> int:
    return min(n_repos, max(64, math.ceil(n_repos / MAX_REPOS_PER_SHARD)))


def output_paths(out: Path, work_dir, stats_path, report_path, fmt: str) -> dict:
    """Where everything goes: one .jsonl file (shards merged into it) or a directory of shards."""
    single = out.suffix == ".jsonl"
    if single and fmt != "jsonl":
        raise ValueError(f"{out}: a .jsonl output is one JSONL file; give a directory for {fmt} shards")
    base = out.with_suffix("") if single else out
    work = Path(work_dir) if work_dir else (Path(f"{base}.work") if single else out / ".work")
    return {
        "out": str(out), "single_file": single, "work": str(work),
        "shard_dir": str(work / "out") if single else str(out),
        "manifest_path": str(out / "manifest.json") if not single else None,
        "stats_path": str(stats_path or (f"{base}.stats.json" if single else out / "stats.json")),
        "report_path": str(report_path or (f"{base}.report.txt" if single else out / "report.txt")),
    }


def make_plan(repos: list[Path], names: list[str], settings: dict, paths: dict, shards: int,
              benchmarks: dict) -> tuple[dict, list[list]]:
    """The plan (what every task reads) and the shards' repositories ([index, path, name])."""
    n = len(repos)
    shards = min(shards or auto_shards(n), n)
    bands, rows = lsh_bands(settings["dedup_threshold"], settings["num_perm"])
    starts = [i * n // shards for i in range(shards)]
    # absolute: Slurm and Ray tasks may start in another directory
    entries = [[i, str(p.resolve()), name] for i, (p, name) in enumerate(zip(repos, names))]
    plan = {
        "version": 1, "settings": settings, "repo_count": n,
        "repo_paths": [str(p) for p in repos] if n <= LISTED_REPOS else None,
        "shards": shards, "shard_starts": starts, "bands": bands, "rows": rows,
        "parts": max(1, min(shards // SHARDS_PER_EXACT_PART, MAX_EXACT_PARTS)), "benchmarks": benchmarks, **paths,
    }
    # the id covers everything that shapes the output, the repository list included
    digest = hashlib.sha256(json.dumps(plan, sort_keys=True).encode())
    for entry in entries:
        digest.update(json.dumps(entry).encode())
    plan["id"] = digest.hexdigest()[:16]
    bounds = starts + [n]
    return plan, [entries[bounds[k]:bounds[k + 1]] for k in range(shards)]


def prepare_work_dir(plan: dict, shard_lists: list[list], resume: bool) -> str:
    """Write the plan, or check it against the one an interrupted build left; the state."""
    work = Path(plan["work"])
    old = work / "plan.json"
    if old.is_file():
        previous = json.loads(old.read_text(encoding="utf-8"))
        finished = (work / "logs" / "finish" / "completions" / "00000").is_file()
        if finished or not resume:
            shutil.rmtree(work)
        elif previous.get("id") != plan["id"]:
            raise ValueError(f"{work} holds an unfinished build with other repositories or settings: rerun that "
                             "build to finish it, or start over with build.resume=false (deletes it)")
        else:
            return "resumed"
    # One per build, not per settings: `finish` of a rebuild with the same plan (the files in the
    # repositories may have changed) must not take the last build's outputs for its own.
    plan["build_id"] = secrets.token_hex(8)
    for rank, entries in enumerate(shard_lists):
        with atomic(work / "shards" / f"{rank:05d}.json") as f:
            json.dump(entries, f)
    with atomic(old) as f:  # last: a plan.json means the shard lists are complete
        json.dump(plan, f, indent=1)
    return "new"


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
    workers: int = 0,
    executor: str = "local",
    shards: int = 0,
    output_format: str = "jsonl",
    work_dir: str | os.PathLike | None = None,
    resume: bool = True,
    verbose: bool = False,
    slurm: dict | None = None,
    ray: dict | None = None,
) -> dict:
    """Build the corpus; returns the stats dict that is also written as JSON.

    ``workers``: processes (local; 0 = all cores) or array tasks running at once (slurm,
    ray; 0 = no limit). ``shards``: 0 picks min(repos, max(64, repos / 2000)). ``slurm`` /
    ``ray``: keyword arguments of datatrove's executors (partition, time, ...). With slurm the
    jobs are only submitted: the returned dict says where the outputs will be. ``verbose``:
    datatrove's per-task log lines on stderr too (they are always in ``<work_dir>/logs``).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    repos = [Path(r) for r in repos]
    if not repos:
        raise ValueError("no repositories to build a corpus from")
    for r in repos:
        if not r.is_dir():
            raise NotADirectoryError(f"{r}: --repos entry is not a directory")
    names = _repo_names(repos)
    if decontam_files:
        for path in decontam_files:
            if not Path(path).is_file():
                raise FileNotFoundError(f"{path}: decontamination file not found")
    settings = {"dedup_threshold": dedup_threshold, "num_perm": num_perm, "decontaminate": decontaminate,
                "mbpp": str(mbpp) if mbpp is not None else None,
                "decontam_files": [str(p) for p in decontam_files], "max_file_bytes": max_file_bytes,
                "seed": seed, "format": output_format}
    benchmarks = {}
    if decontaminate:  # here once, so that a bad benchmark file fails before any work
        benchmarks = pipeline.benchmark_index(settings)[1]
    paths = output_paths(Path(out).absolute(), work_dir and Path(work_dir).absolute(),
                         stats_path and Path(stats_path).absolute(), report_path and Path(report_path).absolute(),
                         output_format)
    plan, shard_lists = make_plan(repos, names, settings, paths, shards, benchmarks)
    state = prepare_work_dir(plan, shard_lists, resume)

    stages = _stages(plan)
    if executor == "slurm":
        _run_slurm(plan, stages, workers, slurm or {})
        return {"submitted": True, "executor": "slurm", "state": state, **{k: plan[k] for k in (
            "out", "work", "stats_path", "report_path")}}
    if executor == "ray":
        _run_ray(plan, stages, workers, ray or {}, verbose)
    else:
        _run_local(plan, stages, workers or default_workers(), verbose)
    stats = json.loads(Path(plan["stats_path"]).read_text(encoding="utf-8"))
    stats["resumed"] = state == "resumed"
    stats["stats_path"], stats["report_path"] = plan["stats_path"], plan["report_path"]
    return stats


def _stages(plan: dict) -> list[tuple[str, object, int]]:
    """(name, step, tasks) in the order they run."""
    work = plan["work"]
    return [("scan", pipeline.Scan(work), plan["shards"]), ("buckets", pipeline.Buckets(work), plan["bands"]),
            ("clusters", pipeline.Clusters(work), 1), ("exact", pipeline.Exact(work), plan["parts"]),
            ("write", pipeline.Write(work), plan["shards"]), ("finish", pipeline.Finish(work), 1)]


def _logs(plan: dict, name: str) -> str:
    return str(Path(plan["work"]) / "logs" / name)


def _run_local(plan: dict, stages: list, workers: int, verbose: bool) -> None:
    """Every stage through datatrove's task runner (per-task log, stats, completion marker), on
    one pool of ``workers`` processes forked once for all six stages.

    Why not ``LocalPipelineExecutor.run()`` per stage: it starts a Manager process and forks a
    new pool for every stage, and pickles the executor (dill) with three Manager proxies for
    every task; measured on 64-shard stages, ~22 ms between a worker's tasks against ~9 ms in
    one process, which cost the 2-worker build ~10% of its wall time. Here a task is two ints.
    The executors are still datatrove's: they write the logs, stats and completion marks.
    """
    from datatrove.executor import LocalPipelineExecutor

    # fork: the workers start with the modules (and the decontamination index) already loaded
    start = "fork" if sys.platform.startswith("linux") else "forkserver"
    executors = [LocalPipelineExecutor([step], tasks=tasks, workers=min(workers, tasks), start_method=start,
                                       logging_dir=_logs(plan, name)) for name, step, tasks in stages]
    if not verbose:  # a few lines per task; errors still reach us as exceptions
        logger.disable("datatrove")
    # Collections then skip what is loaded now (modules, the decontamination index): less work
    # in every task, and forked workers no longer write to (copy) the parent's pages to collect it.
    # No gc.collect() first: here it finds ~20 objects among ~200k and takes 0.12 s, which both
    # builds would pay before any work runs in parallel; unfreeze() below makes them collectable.
    gc.freeze()
    pool = None
    try:
        if workers > 1 and max(tasks for _, _, tasks in stages) > 1:
            # concurrent.futures, not multiprocessing.Pool: a worker killed (by the OOM killer, say)
            # breaks the pool with an error, where Pool would replace it and wait for its task forever
            ctx = multiprocessing.get_context(start)
            pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_adopt_executors,
                                       initargs=(executors, ctx.Value("i", 0), verbose))
        for index, ((name, _, tasks), executor) in enumerate(zip(stages, executors)):
            began = time.perf_counter()
            ranks = executor.get_incomplete_ranks(range(tasks))
            before = tasks - len(ranks)
            if ranks:
                executor.save_executor_as_json()
            if pool is not None and len(ranks) > 1:
                ranks = longest_first(plan["work"], name, ranks)
                try:  # handed out in this order, one task at a time
                    stats = list(pool.map(_run_task, [(index, rank) for rank in ranks]))
                except BrokenProcessPool as e:
                    raise RuntimeError(
                        f"corpus build: a worker process died during '{name}' (killed? out of memory?); the "
                        f"tasks it ran are not complete (logs in {_logs(plan, name)}): rerun to resume") from e
            else:
                stats = [executor._run_for_rank(rank, local_rank=0) for rank in ranks]
            _save_stats(executor, stats)
            _check_complete(plan, name, tasks)
            print(f"corpus build: {name}: {tasks} task(s) done in {time.perf_counter() - began:.1f}s"
                  + (f" ({before} completed before)" if before else ""), file=sys.stderr)
    finally:
        if pool is not None:  # after an error: the other workers finish their task, then stop
            pool.shutdown(wait=True, cancel_futures=True)
        logger.enable("datatrove")
        gc.unfreeze()


_WORKER_EXECUTORS: list = []  # a pool worker's copy of the stages' executors (set once, at its start)
_WORKER_RANK = 0


def _adopt_executors(executors: list, counter, verbose: bool) -> None:
    global _WORKER_EXECUTORS, _WORKER_RANK
    _WORKER_EXECUTORS = executors
    with counter.get_lock():  # datatrove's local rank: only rank 0 logs to the console
        _WORKER_RANK, counter.value = counter.value, counter.value + 1
    if not verbose:  # a forkserver worker does not inherit the parent's logger.disable()
        logger.disable("datatrove")


def _run_task(task: tuple[int, int]):
    stage, rank = task
    return _WORKER_EXECUTORS[stage]._run_for_rank(rank, local_rank=_WORKER_RANK)


def _save_stats(executor, stats: list) -> None:
    """The stage's merged datatrove stats (``logs/<stage>/stats.json``), as its executor writes them."""
    from datatrove.utils.stats import PipelineStats

    if stats:
        with executor.logging_dir.open("stats.json", "wt") as f:
            sum(stats, start=PipelineStats()).save_to_disk(f)


def _check_complete(plan: dict, name: str, tasks: int) -> None:
    done = Path(_logs(plan, name)) / "completions"
    missing = [r for r in range(tasks) if not (done / f"{r:05d}").is_file()]
    if missing:  # a task failed; its error is in the log
        raise RuntimeError(f"corpus build: {len(missing)} of {tasks} '{name}' tasks did not complete "
                           f"(see {_logs(plan, name)}/logs/task_{missing[0]:05d}.log); rerun to resume")


def _run_ray(plan: dict, stages: list, workers: int, options: dict, verbose: bool) -> None:
    """Each stage as one datatrove RayPipelineExecutor run, on the Ray this process is connected
    to (`ray.init` before the build), else as `ray.init()` finds one: $RAY_ADDRESS, the cluster
    `ray start` began on this machine, or a new local one."""
    try:
        import ray  # noqa: F401
    except ImportError as e:
        raise ImportError("executor 'ray' needs Ray: pip install 'ray[default]'") from e
    from datatrove.executor import RayPipelineExecutor

    if not verbose:  # as with local: a few lines per stage (and a warning per stage that logs are local)
        logger.disable("datatrove")
    try:
        for name, step, tasks in stages:
            began = time.perf_counter()
            RayPipelineExecutor([step], tasks=tasks, workers=workers or -1, logging_dir=_logs(plan, name),
                                **options).run()
            _check_complete(plan, name, tasks)  # a failed task is only a warning of datatrove's
            print(f"corpus build: {name}: {tasks} task(s) done in {time.perf_counter() - began:.1f}s (ray)",
                  file=sys.stderr)
    finally:
        logger.enable("datatrove")


def _run_slurm(plan: dict, stages: list, workers: int, options: dict) -> None:
    from datatrove.executor import SlurmPipelineExecutor

    if not options.get("partition"):
        raise ValueError("executor 'slurm' needs build.slurm.partition (the partition to submit to)")
    options = {"time": "24:00:00", "qos": None, "venv_path": _venv_activate(), **options}
    previous = None
    for name, step, tasks in stages:
        previous = SlurmPipelineExecutor([step], tasks=tasks, workers=workers or -1, logging_dir=_logs(plan, name),
                                         job_name=f"corpus-{name}", depends=previous, **options)
    previous.run()  # submits the chain: each stage's array waits for the one before it


def _venv_activate() -> str | None:
    """The activate script of the virtualenv this runs in, for the jobs to run in it too."""
    script = Path(sys.prefix) / "bin" / "activate"
    return str(script) if sys.prefix != sys.base_prefix and script.is_file() else None
