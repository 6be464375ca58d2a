"""`coder-align rm data`: every label is the sandbox's verdict (samples, earlier runs' files,
reference solutions and their mutants); rows without a verdict, repeats and bad task rows are
counted, never silent; benchmark test tasks are refused."""

import json
import subprocess

import pytest

from coder_align.benchmarks import MBPP_FILE, find_data
from coder_align.benchmarks.extract import extract_code
from coder_align.config import ConfigError
from coder_align.datagen.rm_data import RMDataOptions, build_rows
from coder_align.sandbox import check, find_bwrap
from coder_align.sandbox.results import TestReport as Report  # not "Test*": pytest would collect it

from conftest import DATA_TEMPLATES, REPO_ROOT, cli_command, cli_env

pytestmark = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap not installed")
MBPP_TRAIN = str(DATA_TEMPLATES / "mbpp_train.jsonl")


def fenced(code):
    return f"Sure:\n```python\n{code}\n```"


RIGHT_554 = fenced("def Split(xs):\n    return [x for x in xs if x % 2]")
WRONG_554 = fenced("def Split(xs):\n    return xs")
RIGHT_555 = fenced("def difference(n):\n    s = n * (n + 1) // 2\n    return s * (s - 1)")
WRONG_555 = fenced("def difference(n):\n    return n")
WRONG_556 = fenced("def swap_List(xs):\n    return xs")


class Stub:
    """Eval's generator interface, answering from a table (no model)."""

    backend, tokenizer = "stub", None

    def __init__(self, answers):
        self.answers = answers

    def generate(self, prompts, settings, stops, add_special_tokens=True):
        return [list(a[:settings.n]) for a in self.answers]


def rows_of(summary):
    return [json.loads(line) for line in open(summary["out"])]


def mbpp_tests(task_id):
    row = next(json.loads(line) for line in open(MBPP_TRAIN) if json.loads(line)["task_id"] == int(task_id))
    return ["import math", *row["test_list"]]


def test_sampled_rows_carry_the_sandbox_verdict_and_repeats_and_one_sided_tasks_are_counted(tmp_path):
    stub = Stub([[RIGHT_554, WRONG_554], [RIGHT_555, RIGHT_555], [WRONG_556, WRONG_556 + "\n"]])
    summary = build_rows(RMDataOptions(tasks=MBPP_TRAIN, task_ids="554-556", model=stub, k=2,
                                       out=str(tmp_path / "rows.jsonl")))
    rows = rows_of(summary)
    assert [(r["task_id"], r["passed"]) for r in rows] == [("554", True), ("554", False), ("555", True),
                                                          ("556", False), ("556", False)]
    for r in rows:  # the label is what the sandbox says of the code in the completion, against all tests
        report = check(extract_code(r["completion"], "python"), mbpp_tests(r["task_id"]))
        assert r["passed"] == report.passed and r["status"] == report.status
        assert r["tests_passed_fraction"] == pytest.approx(report.fraction) and r["source"] == "sample"
        assert r["prompt"][-1]["role"] == "user" and "Your code should pass" in r["prompt"][-1]["content"]
    assert summary["skipped_rows"] == {"duplicate": 1}
    assert summary["by_source"] == {"sample": {"rows": 5, "passed": 2, "pass_share": 0.4}}
    assert summary["pairs"]["pairs"] == 1 and summary["pairs"]["one_sided_tasks"] == {"all_fail": 1, "all_pass": 1}
    assert json.loads((tmp_path / "rows.summary.json").read_text())["rows"] == 5


def test_reference_and_mutants_are_judged_not_assumed(tmp_path):
    summary = build_rows(RMDataOptions(tasks=MBPP_TRAIN, task_ids="554-560", k=0, mutants=6, seed=3,
                                       out=str(tmp_path / "rows.jsonl")))
    rows = rows_of(summary)
    references = [r for r in rows if r["source"] == "reference"]
    mutants = [r for r in rows if r["source"] == "mutant"]
    # 558 shares a 10-gram with MBPP's test split: the pool's decontamination leaves it out (issue 26)
    if find_data(MBPP_FILE) is None:  # without the MBPP file the pool is used unchecked, and says so
        assert len(references) == 7 and summary["tasks"]["decontamination"]["removed"] is None
    else:
        assert len(references) == 6 and "558" not in {r["task_id"] for r in rows}
        assert summary["tasks"]["decontamination"]["removed_tasks"] == ["558 overlaps MBPP/476"]
    assert all(r["passed"] for r in references)
    assert len(mutants) >= 20 and {r["operator"] for r in mutants} >= {"off_by_one", "comparison_flip"}
    for r in mutants:
        assert r["passed"] == check(extract_code(r["completion"], "python"), mbpp_tests(r["task_id"])).passed
    assert any(not r["passed"] for r in mutants)
    assert summary["by_source"]["mutant"]["rows"] == len(mutants)
    assert summary["pairs"]["pairs_by_sources"].get("reference > mutant", 0) > 0
    # reference and mutants share one style, so style cannot tell a pass from a failure
    assert all(r["completion"].startswith("```python\n") for r in references + mutants)


def test_rows_the_sandbox_could_not_judge_are_left_out_and_counted(tmp_path, monkeypatch):
    import coder_align.sandbox as sandbox

    real = sandbox.check_many

    def flaky(jobs, **kwargs):  # the second job of every batch: the sandbox failed
        reports = real(jobs, **kwargs)
        return [Report(False, 0, 0, "unavailable", error="no sandbox") if i == 1 else r for i, r in enumerate(reports)]

    monkeypatch.setattr(sandbox, "check_many", flaky)
    stub = Stub([[RIGHT_554, WRONG_554]])
    summary = build_rows(RMDataOptions(tasks=MBPP_TRAIN, task_ids="554", model=stub, k=2,
                                       out=str(tmp_path / "rows.jsonl")))
    assert [r["passed"] for r in rows_of(summary)] == [True]
    assert summary["skipped_rows"] == {"unjudged": 1} and summary["statuses"] == {"ok": 1}


def test_earlier_runs_files_are_read_with_their_verdicts(tmp_path):
    grpo = tmp_path / "completions.jsonl"
    grpo.write_text("".join(json.dumps(r) + "\n" for r in [
        {"step": 1, "task_id": "554", "completion": RIGHT_554, "rewards": {"unit_test_reward": 1.0}},
        {"step": 1, "task_id": "554", "completion": WRONG_554, "rewards": {"unit_test_reward": 0.0}},
        {"step": 2, "task_id": "555", "completion": WRONG_555, "rewards": {"unit_test_reward": None}},
    ]))
    summary = build_rows(RMDataOptions(tasks=MBPP_TRAIN, task_ids="554-555", k=0, from_judged=[str(grpo)],
                                       out=str(tmp_path / "rows.jsonl")))
    rows = rows_of(summary)
    assert [(r["task_id"], r["passed"], r["source"]) for r in rows] == [
        ("554", True, "judged:completions.jsonl"), ("554", False, "judged:completions.jsonl")]
    assert rows[0]["prompt"][-1]["role"] == "user"  # GRPO records no prompt: the task supplies it
    assert summary["skipped_rows"] == {"unjudged": 1}
    # judged rows of a task outside --tasks (say, MBPP's test split) are refused, not taken
    ours = tmp_path / "judged.jsonl"
    ours.write_text(json.dumps({"task_id": "Mbpp/11", "prompt": [{"role": "user", "content": "Write f."}],
                                "completion": "x", "code": "x", "passed": False, "status": "wrong_answer"}) + "\n")
    from coder_align.data.records import DataError

    with pytest.raises(DataError, match="task Mbpp/11 is not among the --tasks given"):
        build_rows(RMDataOptions(tasks=MBPP_TRAIN, task_ids="554-555", k=0, from_judged=[str(ours)],
                                 out=str(tmp_path / "rows2.jsonl")))
    # a task of the file that --task-ids leaves out (held-out tasks of an RFT run's samples): counted, left out
    ours.write_text("".join(json.dumps({"task_id": tid, "prompt": [{"role": "user", "content": "Write f."}],
                                        "completion": "x", "code": "x", "passed": False, "status": "wrong_answer"})
                            + "\n" for tid in ("554", "556")))
    summary = build_rows(RMDataOptions(tasks=MBPP_TRAIN, task_ids="554-555", k=0, from_judged=[str(ours)],
                                       out=str(tmp_path / "rows3.jsonl")))
    assert [r["task_id"] for r in rows_of(summary)] == ["554"]
    assert summary["judged_samples_outside_task_ids"] == 1


def test_benchmark_test_tasks_are_refused_and_bad_task_rows_counted(tmp_path):
    with pytest.raises(ConfigError, match="includes MBPP test-split ids"):
        build_rows(RMDataOptions(tasks=MBPP_TRAIN, task_ids="11-20", k=0, mutants=2, out=str(tmp_path / "x.jsonl")))
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(r) + "\n" for r in [
        {"task_id": 601, "text": "Write one().", "code": "def one():\n    return 1", "test_list": ["assert one() == 1"]},
        {"task_id": 602, "text": "Write two()."},  # no tests
    ]))
    summary = build_rows(RMDataOptions(tasks=str(tasks), k=0, mutants=2, on_invalid="skip",
                                       out=str(tmp_path / "rows.jsonl")))
    assert summary["tasks"]["invalid"] == {"missing_tests": 1} and summary["tasks"]["rows_used"] == 1
    assert summary["by_source"]["reference"]["rows"] == 1
    with pytest.raises(ConfigError, match="nothing to build"):
        build_rows(RMDataOptions(tasks=str(tasks), k=0, out=str(tmp_path / "rows.jsonl")))


def test_cli(tmp_path):
    out = tmp_path / "rows.jsonl"
    result = subprocess.run(cli_command("rm", "data", "--tasks", MBPP_TRAIN, "--task-ids", "554-556", "--k", "0",
                                        "--mutants", "2", "--out", str(out)),
                            capture_output=True, text=True, env=cli_env(), cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "reference: 3 rows, 100.0% passed" in result.stdout and out.is_file()
    result = subprocess.run(cli_command("rm", "data", "--tasks", MBPP_TRAIN, "--task-ids", "11-20", "--k", "0",
                                        "--mutants", "2", "--out", str(out)),
                            capture_output=True, text=True, env=cli_env(), cwd=REPO_ROOT)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "test-split" in result.stderr
