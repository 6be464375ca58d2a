"""`eval run ... resume=true`: a run stopped after its first task keeps that task and generates
only the rest, ending with what a run from scratch writes; other settings or other weights in
the same folder are refused by name."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from coder_align import evaluate
from coder_align.config import ConfigError, load_config
from coder_align.evaluation.config import EvalConfig
from coder_align.sandbox import find_bwrap

pytestmark = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap not installed")
GENERATE_AND_JUDGE = evaluate.evaluate_task


def custom_tasks(tmp_path) -> list[str]:
    paths = []
    for name, value in (("ones", 1), ("twos", 2)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"prompt": f"def f{i}():\n", "tests": [f"assert f{i}() == {value}"]}) + "\n"
                                for i in range(3)))
        paths.append(str(path))
    return paths


def config_for(model, tasks, out, *extra) -> EvalConfig:
    return load_config(EvalConfig, None, [f"model.path={model}", f"data.tasks=[{','.join(tasks)}]", f"output_dir={out}",
                                          "generation.max_new_tokens=8", "generation.threads=1",
                                          "generation.processes=1", *extra])


class Stopped(Exception):
    """The run was stopped (killed, a lost machine) in the middle of a task."""


def counting_generation(monkeypatch, stop_at: str | None = None) -> list[str]:
    """Record which tasks get generated; raise (a stopped run) when `stop_at` comes up."""
    generated = []

    def wrapped(task, *args, **kwargs):
        if task.name == stop_at:
            raise Stopped
        generated.append(task.name)
        return GENERATE_AND_JUDGE(task, *args, **kwargs)

    monkeypatch.setattr(evaluate, "evaluate_task", wrapped)
    return generated


def test_a_stopped_run_resumes_after_its_finished_task(tiny_model_dir, tmp_path, monkeypatch):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    tasks = custom_tasks(tmp_path)
    names = ["ones", "twos"]
    stopped = tmp_path / "stopped"

    generated = counting_generation(monkeypatch, stop_at="twos")
    with pytest.raises(Stopped):
        evaluate.main(config_for(model, tasks, stopped, "resume=true"))
    assert generated == ["ones"]
    assert not (stopped / "summary.json").exists()
    partial = json.loads((stopped / "partial_summary.json").read_text())
    assert list(partial["tasks"]) == ["ones"]
    first_samples = (stopped / "samples_ones.jsonl").read_text()

    generated = counting_generation(monkeypatch)
    resumed = evaluate.main(config_for(model, tasks, stopped, "resume=true"))
    assert generated == ["twos"]  # the finished task was kept, not generated again
    assert list(resumed["tasks"]) == names and not (stopped / "partial_summary.json").exists()
    assert resumed["tasks"]["ones"] == partial["tasks"]["ones"]
    assert (stopped / "samples_ones.jsonl").read_text() == first_samples

    # the same as one run from scratch: samples and verdicts
    fresh_out = tmp_path / "fresh"
    generated = counting_generation(monkeypatch)
    fresh = evaluate.main(config_for(model, tasks, fresh_out))
    assert generated == names
    for name in names:
        assert (stopped / f"samples_{name}.jsonl").read_text() == (fresh_out / f"samples_{name}.jsonl").read_text()
        assert resumed["tasks"][name]["per_problem"] == fresh["tasks"][name]["per_problem"]

    # resuming a finished run generates nothing
    generated = counting_generation(monkeypatch)
    assert evaluate.main(config_for(model, tasks, stopped, "resume=true"))["tasks"] == resumed["tasks"]
    assert generated == []


def test_resume_refuses_other_settings_or_other_weights(tiny_model_dir, tmp_path, monkeypatch):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    tasks = custom_tasks(tmp_path)[:1]
    out = tmp_path / "run"
    evaluate.main(config_for(model, tasks, out))
    generated = counting_generation(monkeypatch)

    with pytest.raises(ConfigError, match=r"summary.json: cannot resume.*generation.max_new_tokens: 8 -> 9"):
        evaluate.main(config_for(model, tasks, out, "resume=true", "generation.max_new_tokens=9"))
    weights = model / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # retrained in place
    with pytest.raises(ConfigError, match=r"cannot resume.*the model's files"):
        evaluate.main(config_for(model, tasks, out, "resume=true"))
    assert generated == []

    # another task may join a finished run: the finished one is kept
    both = custom_tasks(tmp_path)
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns - 10**9))
    summary = evaluate.main(config_for(model, both, out, "resume=true"))
    assert generated == ["twos"] and list(summary["tasks"]) == ["ones", "twos"]


def test_an_unreadable_earlier_summary_is_a_named_error(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text('{"tasks": {"ones"')  # cut mid-write
    with pytest.raises(ConfigError, match=r"summary.json: cannot resume, not a summary"):
        evaluate.main(config_for("embedded", custom_tasks(tmp_path), out, "resume=true"))
