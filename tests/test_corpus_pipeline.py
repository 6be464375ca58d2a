"""The corpus build through datatrove (coder_align/corpus/pipeline.py, build.py): the same
output from 1 and N workers and from the in-memory single-process algorithm, resuming, shards,
manifest, parquet, and the Slurm executor against a stand-in sbatch."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from coder_align.corpus import build_corpus, filters, records
from coder_align.corpus import pipeline as stages
from coder_align.benchmarks.decontam import BenchmarkIndex, jsonl_strings
from coder_align.corpus.dedup import ExactDedup, NearDedup, band_edges, greedy_removals, minhash, signature
from coder_align.corpus.deps import dependencies
from coder_align.corpus.repo import order_graph, render_sample
from coder_align.corpus.walk import walk_repo

ROOT = Path(__file__).resolve().parents[1]
BENCH_ROW = {"task_id": 1, "text": "def secret_benchmark_solution(values): return sorted(values)[::-1] + [len(values)] * 2"}


def write_tree(root, files):
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return root


def module(rng, n=10):
    words = ["".join(rng.choice("abcdefghijklmnop") for _ in range(6)) for _ in range(50)]
    return "\n".join(f"def {'_'.join(rng.sample(words, 3))}({', '.join(rng.sample(words, 2))}):\n"
                     f"    return {rng.choice(words)} * {rng.randint(0, 99)}\n" for _ in range(n))


def word_repo(root, start, n=1000):
    """One file of words w<start>..w<start+n>: repositories whose Jaccard we control."""
    return write_tree(root, {"doc.py": "\n".join(f"value_{i} = w{i} + w{i + 1}" for i in range(start, start + n)) + "\n"})


@pytest.fixture(scope="module")
def corpus_repos(tmp_path_factory):
    """Repositories covering every decision: a near-duplicate fork, an unchanged clone, a chain
    A~B~C with A !~ C (B goes, so C stays), a copied file, a file shared only with a removed
    fork (it stays), an empty repository, a contaminated file, Java + Python dependencies."""
    base = tmp_path_factory.mktemp("repos")
    rng = random.Random(7)
    alpha = {f"pkg/mod{i}.py": module(rng) for i in range(6)} | {"pkg/__init__.py": "from .mod0 import *\n"}
    repos = [write_tree(base / "alpha", alpha)]
    fork = dict(alpha, **{"pkg/mod3.py": alpha["pkg/mod3.py"].replace("return", "return -", 3),
                          "pkg/extra.py": module(random.Random(99), 3)})
    repos.append(write_tree(base / "fork", fork))
    repos.append(write_tree(base / "clone", alpha))
    repos += [word_repo(base / "chain1", 0), word_repo(base / "chain2", 100), word_repo(base / "chain3", 200)]
    other = {f"src/m{i}.py": module(rng) for i in range(4)}
    other |= {"src/copied.py": alpha["pkg/mod5.py"], "src/extra.py": fork["pkg/extra.py"],
              "src/leak.py": "# helpers\n" + BENCH_ROW["text"] + "\n",
              "java/com/x/Item.java": "package com.x;\npublic class Item { int price; }\n",
              "java/com/x/Cart.java": "package com.x;\nimport java.util.List;\npublic class Cart { List<Item> items; }\n"}
    repos.append(write_tree(base / "other", other))
    repos.append(write_tree(base / "empty", {"data.bin": b"\0\1\2", "notes.xyz": "no language\n"}))
    repos.append(write_tree(base / "last", {f"lib/l{i}.py": module(rng) for i in range(3)} | {"lib/dup.py": alpha["pkg/mod5.py"]}))
    bench = write_tree(base / "bench", {"bench.jsonl": json.dumps(BENCH_ROW) + "\n"}) / "bench.jsonl"
    return repos, bench


def reference_build(repos, bench, threshold=0.7, seed=0):
    """The single-process build as it was before the pipeline (one repository at a time,
    NearDedup/ExactDedup in memory): (JSONL text, counts of the decisions)."""
    near, exact = NearDedup(threshold), ExactDedup()
    index = BenchmarkIndex(jsonl_strings(bench, "bench"))
    lines, counts = [], Counter()
    for path in repos:
        files = [f for f in walk_repo(path, Counter()) if not filters.rejecting_filter(f)]
        if not files:
            counts["repos_empty_after_filtering"] += 1
            continue
        if near.duplicate_of(path.name, "\n".join(f.text for f in files)) is not None:
            counts["neardup_repos_removed"] += 1
            continue
        unique = [f for f in files if not exact.is_duplicate(f.text)]
        counts["exact_duplicate_files_removed"] += len(files) - len(unique)
        clean = [f for f in unique if index.match(f.text) is None]
        counts["decontam_files_removed"] += len(unique) - len(clean)
        if not clean:
            counts["repos_empty_after_filtering"] += 1
            continue
        texts = {f.path: f.text for f in clean}
        for comp in order_graph(dependencies(texts), seed):
            text, language = render_sample(comp, texts)
            lines.append(json.dumps({"text": text, "repo": path.name, "files": comp, "language": language},
                                    ensure_ascii=False) + "\n")
    return "".join(lines), counts


def build(repos, bench, out, **kwargs):
    return build_corpus(repos, out, mbpp=None, decontam_files=[bench], **kwargs)


def test_n_workers_match_one_worker_and_the_in_memory_build(corpus_repos, tmp_path):
    repos, bench = corpus_repos
    one = build(repos, bench, tmp_path / "one.jsonl", workers=1, shards=1)
    many = build(repos, bench, tmp_path / "many.jsonl", workers=3, shards=4)
    text = (tmp_path / "one.jsonl").read_text()
    assert (tmp_path / "many.jsonl").read_text() == text
    assert one["counts"] == many["counts"] and one["samples_by_language"] == many["samples_by_language"]
    assert one["build"]["shards"] == 1 and many["build"]["shards"] == 4

    expected, decisions = reference_build(repos, bench)
    assert text == expected
    c = one["counts"]
    for key, value in decisions.items():
        assert c[key] == value, key
    # the decisions the fixture is made for
    kept = {json.loads(line)["repo"] for line in text.splitlines()}
    assert kept == {"alpha", "chain1", "chain3", "other", "last"}  # fork, clone and chain2 are near-duplicates
    assert c["neardup_repos_removed"] == 3 and c["repos_empty_after_filtering"] == 1
    assert c["exact_duplicate_files_removed"] == 2  # other/src/copied.py, last/lib/dup.py; not src/extra.py
    assert c["decontam_files_removed"] == 1
    files = {f for line in text.splitlines() for f in json.loads(line)["files"]}
    assert "src/extra.py" in files and "src/copied.py" not in files and "src/leak.py" not in files


def test_pipeline_pieces_replay_near_dedup_on_random_repositories():
    """band_edges + greedy_removals (disk-backed form) == NearDedup (in memory), with chains,
    clones and low thresholds where LSH candidates often fail the Jaccard check."""
    rng = random.Random(3)
    base = [" ".join(f"t{rng.randint(0, 3000)}" for _ in range(400)) for _ in range(6)]
    texts = []
    for _ in range(60):
        words = rng.choice(base).split()
        for _ in range(rng.choice([0, 5, 20, 60, 150])):
            words[rng.randrange(len(words))] = f"x{rng.randint(0, 99)}"
        texts.append(" ".join(words))
    for threshold in (0.5, 0.7, 0.9):
        near = NearDedup(threshold)
        expected = [i for i, t in enumerate(texts) if near.duplicate_of(str(i), t) is not None]
        sigs = np.array([signature(t) for t in texts])
        assert all((sigs[i] == minhash(t).hashvalues).all() for i, t in enumerate(texts[:3]))
        bands, rows = near.lsh.b, near.lsh.r
        edges = []
        for b in range(bands):
            groups = {}
            for i, sig in enumerate(sigs):
                groups.setdefault(sig[b * rows:(b + 1) * rows].tobytes(), []).append(i)
            for ids in groups.values():
                if len(ids) > 1:
                    edges += band_edges(ids, sigs[ids], threshold)
        assert greedy_removals(np.array(edges)).tolist() == expected
        assert 0 < len(expected) < len(texts)


def test_a_failed_task_leaves_no_complete_shard_and_a_rerun_resumes(corpus_repos, tmp_path, monkeypatch):
    repos, bench = corpus_repos
    out = tmp_path / "corpus"
    real_render, calls = stages.render_sample, Counter()

    def render_then_die(paths, files):
        calls[paths[0]] += 1
        if calls["doc.py"] == 2:  # shard 1 (chain1..3): chain1's row written, chain3's fails
            raise OSError("disk full (simulated)")
        return real_render(paths, files)

    monkeypatch.setattr(stages, "render_sample", render_then_die)
    with pytest.raises(OSError, match="simulated"):
        build(repos, bench, out, workers=1, shards=3)
    work = out / ".work"
    assert (out / "shard-00000.jsonl").is_file() and not (out / "shard-00001.jsonl").exists()
    assert not list(out.glob(".shard-*"))  # the half-written temporary file was removed
    done = sorted(p.name for p in (work / "logs" / "write" / "completions").iterdir())
    assert done == ["00000"]
    assert not (out / "manifest.json").exists()

    monkeypatch.setattr(stages, "render_sample", real_render)
    scans = Counter()
    real_scan = stages.Scan.process
    monkeypatch.setattr(stages.Scan, "process", lambda self, *a: (scans.update(["scan"]), real_scan(self, *a))[1])
    stats = build(repos, bench, out, workers=1, shards=3)
    assert stats["resumed"] is True and scans["scan"] == 0  # scan, buckets, ... were complete
    clean = build(repos, bench, tmp_path / "clean.jsonl", workers=1, shards=1)
    merged = "".join((out / f"shard-{r:05d}.jsonl").read_text() for r in range(3))
    assert merged == (tmp_path / "clean.jsonl").read_text()
    assert stats["counts"] == clean["counts"]
    assert not (work / "scan").exists()  # intermediate files go once the build is finished


def test_a_task_failing_in_a_pool_worker_stops_the_build_and_a_rerun_resumes(corpus_repos, tmp_path, monkeypatch):
    repos, bench = corpus_repos
    out, real_write = tmp_path / "pool", stages.Write.process

    def write_but_shard_1(self, work, rank, counts, timer):
        if rank == 1:
            raise OSError("disk full in a worker (simulated)")
        return real_write(self, work, rank, counts, timer)

    monkeypatch.setattr(stages.Write, "process", write_but_shard_1)  # the pool forks after this
    with pytest.raises(OSError, match="in a worker") as raised:
        build(repos, bench, out, workers=2, shards=3)
    assert "Traceback" in str(raised.value.__cause__)  # the worker's, sent back by the pool
    logs = out / ".work" / "logs"
    assert "00001" not in {p.name for p in (logs / "write" / "completions").iterdir()}
    assert not (out / "shard-00001.jsonl").exists()
    assert (logs / "scan" / "stats.json").is_file()  # each finished stage's datatrove stats
    monkeypatch.undo()
    stats = build(repos, bench, out, workers=2, shards=3)
    clean = build(repos, bench, tmp_path / "clean.jsonl", workers=1, shards=1)
    assert stats["resumed"] is True and stats["counts"] == clean["counts"]
    merged = "".join((out / f"shard-{r:05d}.jsonl").read_text() for r in range(3))
    assert merged == (tmp_path / "clean.jsonl").read_text()


def test_write_tasks_go_to_the_pool_longest_scan_first(tmp_path):
    scans = tmp_path / "counts" / "scan"
    scans.mkdir(parents=True)
    for rank, seconds in {0: 0.5, 1: 2.0, 2: 0.1, 3: 2.0}.items():
        (scans / f"{rank:05d}.json").write_text(json.dumps({"started": 10.0, "ended": 10.0 + seconds}))
    assert records.longest_first(tmp_path, "write", [0, 1, 2, 3, 4]) == [1, 3, 0, 2, 4]  # 4: no record
    assert records.longest_first(tmp_path, "scan", [0, 1, 2, 3]) == [0, 1, 2, 3]


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux only")
def test_a_task_reports_its_own_peak_rss_not_its_workers_lifetime_peak():
    """A pool worker runs tasks of every stage: a scan's peak must not show up as the write's."""
    block = bytearray(256 << 20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page
    lifetime_peak = records.peak_rss_mb()
    del block
    records.reset_peak_rss()
    assert records.peak_rss_mb() < lifetime_peak - 200
    assert records.lifetime_peak_rss_mb() > records.peak_rss_mb() + 200


@pytest.mark.timeout(120)  # a regression hangs: multiprocessing.Pool waits for the lost task forever
def test_a_worker_killed_mid_task_stops_the_build_with_an_error_not_a_hang(corpus_repos, tmp_path, monkeypatch):
    repos, bench = corpus_repos
    out, real_write = tmp_path / "oom", stages.Write.process

    def killed_on_shard_1(self, work, rank, counts, timer):
        if rank == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would
        return real_write(self, work, rank, counts, timer)

    monkeypatch.setattr(stages.Write, "process", killed_on_shard_1)
    with pytest.raises(RuntimeError, match="worker process died during 'write'.*rerun to resume"):
        build(repos, bench, out, workers=2, shards=3)
    monkeypatch.undo()
    stats = build(repos, bench, out, workers=2, shards=3)
    clean = build(repos, bench, tmp_path / "clean.jsonl", workers=1, shards=1)
    assert stats["resumed"] is True
    assert "".join((out / f"shard-{r:05d}.jsonl").read_text() for r in range(3)) == (tmp_path / "clean.jsonl").read_text()


@pytest.mark.slow  # ~12 s: three builds in subprocesses
def test_killed_build_resumes_from_finished_shards(corpus_repos, tmp_path):
    """SIGKILL the CLI (2 workers) once a write task completed, rerun the same command."""
    repos, bench = corpus_repos
    out = tmp_path / "k.jsonl"
    args = [sys.executable, "-m", "coder_align.cli", "corpus", "build", "--repos", *map(str, repos), "--out", str(out),
            "--workers", "2", "--no-decontaminate", "build.shards=8"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    completions = tmp_path / "k.work" / "logs" / "write" / "completions"
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline and not (completions.is_dir() and any(completions.iterdir())):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_during_write = not out.exists()
    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    reference = tmp_path / "ref.jsonl"
    build_corpus(repos, reference, decontaminate=False, workers=1, shards=1)
    assert out.read_text() == reference.read_text()
    if killed_during_write:
        assert "resumed an interrupted build" in rerun.stdout and "completed before" in rerun.stderr


def test_directory_output_has_shards_manifest_and_parquet(corpus_repos, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    repos, bench = corpus_repos
    jsonl = build(repos, bench, tmp_path / "j", workers=2, shards=3)
    manifest = json.loads((tmp_path / "j" / "manifest.json").read_text())
    assert [s["path"] for s in manifest["shards"]] == [f"shard-{r:05d}.jsonl" for r in range(3)]
    rows = []
    for shard in manifest["shards"]:
        data = (tmp_path / "j" / shard["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard["sha256"] and len(data) == shard["bytes"]
        assert len(data.splitlines()) == shard["samples"]
        rows += [json.loads(line) for line in data.splitlines()]
    assert manifest["samples"] == jsonl["counts"]["samples"] == len(rows)
    assert (tmp_path / "j" / "stats.json").is_file() and (tmp_path / "j" / "report.txt").is_file()

    build(repos, bench, tmp_path / "p", workers=1, shards=2, output_format="parquet")
    table = [row for r in range(2) for row in pq.read_table(tmp_path / "p" / f"shard-{r:05d}.parquet").to_pylist()]
    assert table == rows
    with pytest.raises(ValueError, match="directory for parquet"):
        build(repos, bench, tmp_path / "x.jsonl", output_format="parquet")


def test_an_unfinished_build_with_other_settings_is_not_mixed_in(corpus_repos, tmp_path, monkeypatch):
    repos, bench = corpus_repos
    out = tmp_path / "c.jsonl"
    monkeypatch.setattr(stages.Clusters, "process", lambda *a: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError):
        build(repos, bench, out, workers=1)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="unfinished build with other repositories or settings"):
        build(repos, bench, out, workers=1, dedup_threshold=0.8)
    stats = build(repos, bench, out, workers=1, dedup_threshold=0.8, resume=False)
    assert stats["resumed"] is False and stats["settings"]["dedup_threshold"] == 0.8
    again = build(repos, bench, out, workers=1, dedup_threshold=0.8)  # a finished build's rerun starts over
    assert again["resumed"] is False and again["counts"] == stats["counts"]


def test_a_rebuild_after_the_repositories_changed_writes_the_new_corpus(tmp_path):
    """Same repositories and settings (so the same plan), new files: the finished build's
    outputs must not be taken for the rebuild's."""
    repo = write_tree(tmp_path / "r", {"a.py": "def alpha_function(x):\n    return x * 2 + 1\n"})
    for out in (tmp_path / "one.jsonl", tmp_path / "dir"):
        first = build_corpus([repo], out, decontaminate=False, workers=1)
        (repo / "b.py").write_text("def beta_function(y):\n    return y - 3\n")
        second = build_corpus([repo], out, decontaminate=False, workers=1)
        (repo / "b.py").unlink()
        text = out.read_text() if out.suffix else (out / "shard-00000.jsonl").read_text()
        assert "beta_function" in text
        assert (first["counts"]["files_out"], second["counts"]["files_out"]) == (1, 2)
        if not out.suffix:
            manifest = json.loads((out / "manifest.json").read_text())
            assert manifest["shards"][0]["sha256"] == hashlib.sha256(text.encode()).hexdigest()


def test_an_older_versions_work_dir_killed_after_its_outputs_resumes(corpus_repos, tmp_path):
    """A plan without build_id (older version) killed between writing stats.json and marking
    `finish` complete: the rerun takes the outputs with its plan id as done, as that version did."""
    repos, bench = corpus_repos
    out = tmp_path / "old.jsonl"
    first = build(repos, bench, out, workers=1, shards=2)
    work = tmp_path / "old.work"
    plan = json.loads((work / "plan.json").read_text())
    del plan["build_id"]
    (work / "plan.json").write_text(json.dumps(plan))
    (work / "logs" / "finish" / "completions" / "00000").unlink()
    corpus = out.read_text()
    again = build(repos, bench, out, workers=1, shards=2)
    assert again["resumed"] is True and again["counts"] == first["counts"] and out.read_text() == corpus


def test_two_repositories_with_one_name_are_refused(tmp_path):
    a = write_tree(tmp_path / "a" / "x" / "r", {"m.py": "x = 1\n"})
    b = write_tree(tmp_path / "b" / "x" / "r", {"m.py": "y = 2\n"})
    with pytest.raises(ValueError, match="both named 'x/r'"):
        build_corpus([a, b], tmp_path / "o.jsonl", decontaminate=False)


@pytest.mark.slow  # ~15 s: each array job is a fresh Python process
def test_slurm_executor_submits_a_chain_that_builds_the_same_corpus(corpus_repos, tmp_path):
    """A stand-in sbatch runs each submitted array at once, in order (so dependencies hold):
    the pickled executors, launch scripts and job chain are datatrove's real ones."""
    repos, bench = corpus_repos
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "sbatch.log"
    (bin_dir / "sbatch").write_text(f"""#!/bin/bash
script="${{@: -1}}"
echo "$@" >> {log}
array=$(sed -n 's/^#SBATCH --array=0-\\([0-9]*\\).*/\\1/p' "$script")
for i in $(seq 0 ${{array:-0}}); do
  SLURM_ARRAY_TASK_ID=$i SLURM_NODELIST=localhost bash "$script" > /dev/null 2>&1 || exit 1
done
echo "Submitted batch job $RANDOM"
""")
    (bin_dir / "scontrol").write_text("#!/bin/bash\necho localhost\n")
    (bin_dir / "srun").write_text('#!/bin/bash\nwhile [[ "$1" == -* ]]; do [[ "$1" == -n ]] && shift; shift; done\nexec "$@"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    out = tmp_path / "slurm-corpus"
    env = dict(os.environ, PYTHONPATH=str(ROOT),
               PATH=f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}")
    proc = subprocess.run(
        [sys.executable, "-m", "coder_align.cli", "corpus", "build", "--repos", *map(str, repos), "--out", str(out),
         "--executor", "slurm", "build.slurm.partition=cpu", "build.shards=3", "decontam.mbpp=null",
         f"decontam.extra_files=[{bench}]", "build.slurm.sbatch_args={account: demo}", "build.slurm.tasks_per_job=16"],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "submitted" in proc.stdout
    submissions = log.read_text().splitlines()
    assert sum("--dependency=afterok:" in s for s in submissions) == 5  # buckets ... finish wait for the stage before
    script = (out / ".work" / "logs" / "write" / "launch_script.slurm").read_text()
    assert "#SBATCH --partition=cpu" in script and "#SBATCH --account=demo" in script and "--array=0-0" in script
    reference = build(repos, bench, tmp_path / "ref.jsonl", workers=1, shards=1)
    merged = "".join((out / f"shard-{r:05d}.jsonl").read_text() for r in range(3))
    assert merged == (tmp_path / "ref.jsonl").read_text()
    assert json.loads((out / "stats.json").read_text())["counts"] == reference["counts"]


def test_ray_executor_without_ray_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, installed or not
    repo = write_tree(tmp_path / "r", {"a.py": "x = 1\n"})
    with pytest.raises(ImportError, match=r"pip install 'ray\[default\]'"):
        build_corpus([repo], tmp_path / "o.jsonl", executor="ray", decontaminate=False)
