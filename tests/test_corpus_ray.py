"""`corpus build --executor ray` on a real (local, loopback-only) Ray: datatrove's
RayPipelineExecutor runs every stage, and the corpus is byte for byte the local executor's.
Skipped where Ray is not installed (`make test-slow` installs it)."""

import importlib.util
import json

import pytest

from test_corpus_pipeline import build, corpus_repos  # noqa: F401  (a fixture, used by name)

pytestmark = [pytest.mark.slow,  # 40-160 s on 2 busy cores (load 9-12): Ray starts, a worker per task
              pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                 reason="ray is not installed (pip install 'ray>=2.9'; `make test-slow` does)"),
              pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def local_ray():
    import ray

    # a cluster of this machine only: loopback, no dashboard, 2 CPUs, a small object store
    ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=2,
             object_store_memory=128 << 20, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_executor_builds_the_local_executors_corpus(corpus_repos, tmp_path, local_ray, capfd):  # noqa: F811
    repos, bench = corpus_repos
    # 3 shards on 2 CPUs: tasks wait for a slot; small memory so the 2 GB/CPU default never blocks a task
    options = {"cpus_per_task": 1, "mem_per_cpu_gb": 0.25}
    on_ray = build(repos, bench, tmp_path / "ray.jsonl", executor="ray", workers=2, shards=3, ray=options)
    err = capfd.readouterr().err
    for stage in ("scan", "buckets", "clusters", "exact", "write", "finish"):
        assert f"corpus build: {stage}: " in err and "(ray)" in err
    assert "Logging directory points to a local filesystem" not in err  # datatrove's lines only if verbose
    local = build(repos, bench, tmp_path / "local.jsonl", workers=1, shards=1)
    ray_bytes = (tmp_path / "ray.jsonl").read_bytes()
    assert ray_bytes and ray_bytes == (tmp_path / "local.jsonl").read_bytes()
    assert on_ray["counts"] == local["counts"] and on_ray["build"]["shards"] == 3
    assert on_ray["counts"]["decontam_files_removed"] == 1  # the decontamination index reached the Ray tasks
    # every task ran through datatrove's Ray executor: its saved settings and completion marks
    write_logs = tmp_path / "ray.work" / "logs" / "write"
    assert len(list((write_logs / "completions").iterdir())) == 3
    saved = json.loads((write_logs / "executor.json").read_text())
    assert saved["_launched"] is True and saved["nodes_per_task"] == 1  # RayPipelineExecutor's own fields

    # a finished build's rerun starts over; on Ray again it writes the same bytes
    build(repos, bench, tmp_path / "ray.jsonl", executor="ray", workers=2, shards=3, ray=options)
    assert (tmp_path / "ray.jsonl").read_bytes() == ray_bytes
