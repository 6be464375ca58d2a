"""datagen.self_sampling and datagen.verdicts: tasks, sampling through eval's generator and
prompts, judging in the sandbox, and reading verdicts back from the files other stages write."""

from __future__ import annotations

import json

import pytest

from coder_align.data.records import DataError
from coder_align.datagen import verdicts
from coder_align.datagen.self_sampling import SamplingConfig, judge, load_tasks, sample
from coder_align.datagen.verdicts import JudgedSample, read_judged
from coder_align.evaluation.generation import GeneratorSpec
from coder_align.run_dir import read_run
from coder_align.sandbox import SandboxUnavailable, check, find_bwrap
from coder_align.sandbox.results import TestReport as Report  # not "Test*": pytest would collect it

from conftest import DATA_TEMPLATES

MBPP_TRAIN = str(DATA_TEMPLATES / "mbpp_train.jsonl")
needs_sandbox = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap not installed")


def fenced(code: str) -> str:
    return f"Here it is:\n```python\n{code}\n```"


@pytest.fixture
def tasks():
    tasks, stats = load_tasks(MBPP_TRAIN, task_ids="554-556")
    assert [t["task_id"] for t in tasks] == ["554", "555", "556"] and stats["rows_used"] == 3
    return tasks


class StubGenerator:
    """Eval's generator interface, answering from a table; records the prompts it was given."""

    backend = "stub"
    tokenizer = None

    def __init__(self, answers: list[list[str]]):
        self.answers, self.prompts = answers, None

    def generate(self, prompts, settings, stops, add_special_tokens=True):
        self.prompts, self.settings, self.stops = prompts, settings, stops
        return [list(a[:settings.n]) for a in self.answers]


def test_tasks_keep_their_input_row_and_refuse_held_out_tasks(tmp_path, tasks):
    assert tasks[0]["row"]["task_id"] == 554 and tasks[0]["where"].endswith("mbpp_train.jsonl:1")
    assert len(tasks[0]["tests"]) == 1 + len(tasks[0]["row"]["test_list"])  # import math + every assert
    with pytest.raises(ValueError, match="task_ids=11-20 includes MBPP test-split ids"):
        load_tasks(MBPP_TRAIN, task_ids="11-20")
    held_out = tmp_path / "mixed.jsonl"
    rows = [{"task_id": 601, "text": "Write f.", "test_list": ["assert f() == 1"]},
            {"task_id": 12, "text": "Write g.", "test_list": ["assert g() == 1"]}]
    held_out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"mixed.jsonl:2: MBPP task 12 is in MBPP's test split"):
        load_tasks(str(held_out), on_invalid="skip")  # a refusal is never a counted skip
    humaneval = tmp_path / "he.jsonl"
    humaneval.write_text(json.dumps({"task_id": "HumanEval/0", "prompt": "def f():\n", "test": "def check(c): pass",
                                     "entry_point": "f"}) + "\n")
    with pytest.raises(DataError, match="HumanEval/0 is a HumanEval task"):
        load_tasks(str(humaneval))
    assert len(load_tasks(str(held_out), training=False)[0]) == 2  # measuring, not training: allowed


@needs_sandbox
def test_verdicts_are_the_sandboxs_on_all_tests(tasks):
    reference = [fenced(t["row"]["code"]) for t in tasks]
    shown_only = "def Split(xs):\n    return [1, 3, 5]"  # passes the shown test, fails the hidden ones
    completions = [[reference[0], fenced(shown_only), "no code at all"], [reference[1]], [fenced("def x(:")]]
    judged = judge(tasks, completions, timeout=10)
    assert [[s.passed for s in per] for per in judged] == [[True, False, False], [True], [False]]
    for task, per in zip(tasks, judged):
        for s in per:
            report = check(s.code, task["tests"], timeout=10)
            assert (s.passed, s.status, s.tests_passed_fraction) == (report.passed, report.status, report.fraction)
            assert s.task_id == task["task_id"] and s.prompt == task["prompt"]
    fooled = judged[0][1]
    assert fooled.status == "wrong_answer" and 0 < fooled.tests_passed_fraction < 1
    assert judged[2][0].status in ("compile_error", "runtime_error")
    assert set(judged[0][0].to_dict()) == {"task_id", "prompt", "completion", "code", "passed", "status",
                                           "tests_passed_fraction", "clipped"}


def test_unavailable_is_neither_pass_nor_fail_and_all_unavailable_raises(monkeypatch, tasks):
    def flaky(jobs, workers=None, return_exceptions=False):
        return [Report(True, 1, 1, "ok") if i % 2 == 0 else
                Report(False, 0, 0, "unavailable", error="SandboxUnavailable: bwrap died") for i in range(len(jobs))]

    monkeypatch.setattr("coder_align.sandbox.check_many", flaky)
    judged = judge(tasks[:1], [["a", "b", "c"]])
    assert [(s.passed, s.status, s.tests_passed_fraction) for s in judged[0]] == [
        (True, "ok", 1.0), (False, "unavailable", None), (True, "ok", 1.0)]
    assert verdicts.status_counts(judged) == {"ok": 2, "unavailable": 1}

    monkeypatch.setattr("coder_align.sandbox.check_many", lambda jobs, **kw: [
        Report(True, 1, 1, "unavailable", error="no bwrap") for _ in jobs])  # even a 'passed' flag is no pass
    with pytest.raises(SandboxUnavailable, match="judged none of 2 samples.*no bwrap"):
        judge(tasks[:1], [["a", "b"]])


def test_sample_prompts_as_eval_does_and_cuts_at_its_stops(tasks):
    from coder_align.templates import render

    stub = StubGenerator([["A\n### Instruction:\nmore", "B"], ["C", "D"], ["E", "F"]])
    completions, _ = sample(stub, tasks, SamplingConfig(k=2, temperature=0.7, max_new_tokens=33, seed=3))
    assert completions == [["A", "B"], ["C", "D"], ["E", "F"]]
    assert stub.prompts == [render(t["prompt"], add_generation_prompt=True) for t in tasks]
    assert (stub.settings.n, stub.settings.temperature, stub.settings.max_new_tokens, stub.settings.seed) == (2, 0.7, 33, 3)
    _, clipped = sample(stub, tasks, SamplingConfig(k=2))
    assert clipped == [[False, False]] * 3  # a generator that cannot tell: nothing known clipped


def test_sample_a_model_directory_k_per_task(tiny_model_dir, tasks):
    completions, clipped = sample(GeneratorSpec(read_run(str(tiny_model_dir)), processes=1), tasks[:2],
                                  SamplingConfig(k=3, max_new_tokens=6, batch_size=2))
    assert [len(c) for c in completions] == [3, 3] and all(isinstance(t, str) for c in completions for t in c)
    # a random model rarely stops within 6 tokens: those are reported clipped
    assert [len(c) for c in clipped] == [3, 3] and any(x for c in clipped for x in c)


def test_read_judged_reads_our_rows_grpo_completions_and_eval_samples(tmp_path, tasks):
    ours = tmp_path / "judged.jsonl"
    written = [[JudgedSample("554", tasks[0]["prompt"], "ans", "code", True, "ok", 1.0, clipped=True)]]
    verdicts.write_judged(ours, written)
    assert read_judged(ours) == written[0]

    grpo = tmp_path / "completions.jsonl"
    rows = [{"step": 1, "task_id": "554", "completion": fenced("x = 1"), "rewards": {"unit_test_reward": 1.0}},
            {"step": 1, "task_id": "555", "completion": "y", "rewards": {"unit_test_reward": 0.0}},
            {"step": 1, "task_id": "556", "completion": "z", "rewards": {"unit_test_reward": None}}]
    grpo.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = read_judged(grpo, tasks)
    assert [(s.passed, s.status, s.code) for s in got] == [(True, "ok", "x = 1\n"), (False, "failed", "y"),
                                                           (False, "unavailable", "z")]
    assert got[1].prompt == tasks[1]["prompt"] and got[1].tests_passed_fraction is None
    with pytest.raises(DataError, match=r"completions.jsonl:1: missing field 'prompt' \(pass the tasks file"):
        read_judged(grpo)

    evaluated = tmp_path / "samples_mine.jsonl"
    evaluated.write_text(json.dumps({"task_id": "Mbpp/554", "completion": "def f(): pass\n", "response": "R",
                                     "status": "wrong_answer", "passed": False}) + "\n")
    (s,) = read_judged(evaluated, tasks)
    assert (s.completion, s.code, s.status, s.prompt) == ("R", "def f(): pass\n", "wrong_answer", tasks[0]["prompt"])

    unscored = tmp_path / "samples_raw.jsonl"
    unscored.write_text(json.dumps({"task_id": "554", "completion": "x"}) + "\n")
    with pytest.raises(DataError, match="samples_raw.jsonl:1: missing field 'passed' .*eval score"):
        read_judged(unscored, tasks)
    no_verdict = tmp_path / "fmt.jsonl"
    no_verdict.write_text(json.dumps({"step": 1, "task_id": "554", "completion": "x",
                                      "rewards": {"format_reward": 1.0}}) + "\n")
    with pytest.raises(DataError, match="no unit_test_reward verdict"):
        read_judged(no_verdict, tasks)
