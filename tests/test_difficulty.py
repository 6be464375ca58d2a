"""`coder-align data difficulty`: tasks a model sometimes solves are kept, unchanged; the rest
counted. Generation is a stub (deterministic), judging the real sandbox."""

from __future__ import annotations

import json

import pytest

from coder_align.datagen import self_sampling
from coder_align.datagen.cli import cli
from coder_align.datagen.difficulty import frontier
from coder_align.datagen.verdicts import read_judged
from coder_align.sandbox import find_bwrap

from conftest import DATA_TEMPLATES

MBPP_TRAIN = DATA_TEMPLATES / "mbpp_train.jsonl"
IDS = [554, 555, 556, 557]


def rows_by_id() -> dict[int, dict]:
    rows = [json.loads(line) for line in MBPP_TRAIN.read_text().splitlines()]
    return {r["task_id"]: r for r in rows if r["task_id"] in IDS}


class StubGenerator:
    """Per task, in order: 4 right answers, 2 right + 2 wrong, 4 wrong, 1 right + 3 wrong."""

    backend = "stub"
    tokenizer = None

    def generate(self, prompts, settings, stops, add_special_tokens=True):
        rows = rows_by_id()
        right = [f"```python\n{rows[i]['code']}\n```" for i in IDS]
        wrong = "```python\ndef nothing():\n    return None\n```"
        plan = [[right[0]] * 4, [right[1], wrong, right[1], wrong], [wrong] * 4, [right[3], wrong, wrong, wrong]]
        assert len(prompts) == len(plan) and settings.n == 4
        return plan


@pytest.fixture
def stub(monkeypatch):
    monkeypatch.setattr(self_sampling, "load_generator", lambda spec: (StubGenerator(), None))


def test_frontier_classes_and_counts():
    classes, summary = frontier([0, 1, 4, 3, 0, 2], [4, 4, 4, 3, 0, 2], 4)
    assert classes == ["never", "kept", "always", "undecided", "unavailable", "undecided"]
    assert (summary["kept"], summary["never_solved"], summary["always_solved"], summary["undecided"],
            summary["unavailable"]) == (1, 1, 1, 2, 1)
    assert summary["passes_histogram"] == {"0": 2, "1": 1, "2": 1, "3": 1, "4": 1}
    assert frontier([0, 1], [4, 4], 4, keep_never=True)[0] == ["kept", "kept"]


@pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap not installed")
def test_difficulty_keeps_the_frontier_rows_unchanged(stub, tmp_path, capsys):
    out = tmp_path / "frontier.jsonl"
    code = cli(["difficulty", "--model", "stub-model", "--tasks", str(MBPP_TRAIN), "--task-ids", "554-557",
                "--k", "4", "--out", str(out), "judging.timeout=10"])
    assert code == 0
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    original = rows_by_id()
    assert kept == [original[555], original[557]]  # the input rows, field for field
    summary = json.loads((tmp_path / "frontier.jsonl.summary.json").read_text())
    assert (summary["tasks_tried"], summary["kept"], summary["never_solved"], summary["always_solved"]) == (4, 2, 1, 1)
    assert summary["passes_histogram"] == {"0": 1, "1": 1, "2": 1, "3": 0, "4": 1}
    assert summary["sample_statuses"]["ok"] == 7 and summary["unavailable"] == 0
    judged = read_judged(tmp_path / "frontier.jsonl.judged.jsonl")
    assert len(judged) == 16 and sum(s.passed for s in judged) == 7
    assert "kept 2 of 4 tasks" in capsys.readouterr().out

    again = tmp_path / "with-never.jsonl"
    assert cli(["difficulty", "--model", "stub-model", "--tasks", str(MBPP_TRAIN), "--task-ids", "554-557",
                "--k", "4", "--out", str(again), "--keep-never"]) == 0
    assert [json.loads(line)["task_id"] for line in again.read_text().splitlines()] == [555, 556, 557]


@pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap not installed")
def test_difficulty_classifies_on_samples_an_earlier_run_judged(stub, tmp_path, monkeypatch, capsys):
    first = tmp_path / "first.jsonl"
    assert cli(["difficulty", "--model", "stub-model", "--tasks", str(MBPP_TRAIN), "--task-ids", "554-557",
                "--k", "4", "--out", str(first)]) == 0

    def no_model(*args, **kwargs):
        raise AssertionError("reusing judged samples must not load a model")

    monkeypatch.setattr(self_sampling, "load_generator", no_model)
    again = tmp_path / "again.jsonl"
    assert cli(["difficulty", "--tasks", str(MBPP_TRAIN), "--task-ids", "554-556", "--k", "4",
                "--judged", str(tmp_path / "first.jsonl.judged.jsonl"), "--out", str(again)]) == 0
    assert [json.loads(line)["task_id"] for line in again.read_text().splitlines()] == [555]
    summary = json.loads((tmp_path / "again.jsonl.summary.json").read_text())
    assert summary["reused"]["samples_read"] == 16 and summary["reused"]["samples_used"] == 12
    assert summary["reused"]["samples_of_other_tasks"] == 4 and summary["reused"]["other_tasks"] == 1
    assert (summary["never_solved"], summary["always_solved"], summary["sampling_seconds"]) == (1, 1, 0.0)

    # a k above what was sampled: tasks whose samples all agree are undecided, not never/always
    assert cli(["difficulty", "--tasks", str(MBPP_TRAIN), "--task-ids", "554-557", "--k", "8",
                "--judged", str(tmp_path / "first.jsonl.judged.jsonl"), "--out", str(again)]) == 0
    summary = json.loads((tmp_path / "again.jsonl.summary.json").read_text())
    assert (summary["kept"], summary["undecided"]) == (2, 2)


def test_difficulty_refuses_test_split_ids_and_needs_its_paths(stub, tmp_path, capsys):
    from coder_align.cli import main

    assert main(["data", "difficulty", "--model", "m", "--tasks", str(MBPP_TRAIN), "--task-ids", "11-600",
                 "--out", str(tmp_path / "f.jsonl")]) == 2
    assert "includes MBPP test-split ids (11...510); never train on them" in capsys.readouterr().err
    assert main(["data", "difficulty", "--model", "m", "--out", str(tmp_path / "f.jsonl")]) == 2
    assert "data.path (--tasks) is required" in capsys.readouterr().err
    assert main(["data", "difficulty", "--tasks", str(MBPP_TRAIN), "sampling.k=0"]) == 2
    assert "'sampling.k' = 0 is out of range" in capsys.readouterr().err
