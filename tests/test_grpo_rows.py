"""GRPO task rows: formats, MBPP prompt and split filter, errors with file:line:field."""

import json

import pytest

from coder_align.data.grpo_rows import decode_tests, parse_task_ids, read_tasks, to_dataset
from coder_align.data.records import DataError

from conftest import SHARED_DATA

MBPP = SHARED_DATA / "mbpp_sanitized.jsonl"


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


@pytest.mark.skipif(not MBPP.exists(), reason="../shared/data absent")
def test_mbpp_training_split_shows_first_test_and_imports_math():
    tasks, stats = read_tasks(str(MBPP), task_ids="511-974")
    assert stats.rows_used == 163 and stats.filtered_by_task_id == 264  # 43 validation + 120 training
    assert all(511 <= int(t["task_id"]) <= 974 for t in tasks)
    task = tasks[0]
    first, *rest = task["tests"][1:]
    assert task["tests"][0] == "import math"
    assert first in task["prompt"][0]["content"] and not any(r in task["prompt"][0]["content"] for r in rest)


def test_generic_formats_and_dataset_round_trip(tmp_path):
    rows = [
        {"prompt": "add", "tests": ["assert add(1, 2) == 3"]},
        {"instruction": "echo", "stdin_stdout": [{"stdin": "a", "stdout": "a"}], "language": "cpp"},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], "tests": "assert f()"},
        {"task_id": "HumanEval/0", "prompt": "def f():\n    pass", "test": "def check(c): assert c() is None",
         "entry_point": "f"},
    ]
    tasks, stats = read_tasks(write(tmp_path / "r.jsonl", rows))
    assert stats.formats == {"rows": 3, "humaneval": 1}
    assert tasks[1]["language"] == "cpp" and tasks[2]["prompt"][0]["role"] == "system"
    assert tasks[3]["tests"].endswith("check(f)\n")
    ds = to_dataset(tasks)
    assert decode_tests(ds["tests"]) == [t["tests"] for t in tasks]


@pytest.mark.parametrize("row, field", [
    ({"prompt": "p"}, "tests"),
    ({"prompt": "p", "tests": []}, "tests"),
    ({"prompt": "p", "tests": [1]}, "tests"),
    ({"tests": ["assert 1"]}, "prompt"),
    ({"prompt": "p", "stdin_stdout": [{"stdin": "1"}]}, "stdin_stdout"),
    ({"prompt": "p", "tests": ["assert f()"], "language": "rust"}, "stdin_stdout"),
    ({"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}], "tests": ["assert 1"]},
     "messages"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, row, field):
    path = write(tmp_path / "bad.jsonl", [{"prompt": "ok", "tests": ["assert 1"]}, row])
    with pytest.raises(DataError, match=rf"bad.jsonl:2: .*'{field}'"):
        read_tasks(path)


def test_bad_rows_are_skipped_and_counted(tmp_path):
    path = write(tmp_path / "bad.jsonl", [{"prompt": "ok", "tests": ["assert 1"]}, "{not json", {"prompt": "p"}])
    tasks, stats = read_tasks(path, on_invalid="skip")
    assert len(tasks) == 1 and stats.as_dict()["invalid"] == {"bad_json": 1, "missing_tests": 1}


def test_tests_that_are_not_python_stop_the_run_with_file_and_line(tmp_path):
    rows = [{"prompt": "ok", "tests": ["assert f(1) == 1"]},
            {"prompt": "p", "tests": ["assert f(1) == "]},
            {"text": "mbpp style", "test_list": ["assert g(2) == 4", "assert g(3) = 9"], "task_id": 3},
            {"prompt": "program", "tests": "def check(f):\n    assert f( == 1\n"},
            {"prompt": "io rows are not compiled", "stdin_stdout": [{"stdin": "", "stdout": "x"}], "language": "c"}]
    path = write(tmp_path / "t.jsonl", rows)
    with pytest.raises(DataError, match=r"t.jsonl:2: test 'assert f\(1\) ==' is not valid Python"):
        read_tasks(path)
    tasks, stats = read_tasks(path, on_invalid="skip")
    assert [t["task_id"] for t in tasks] == [f"{path}:1", f"{path}:5"]
    summary = stats.as_dict()
    assert summary["invalid"] == {"tests_syntax": 3} and summary["rows_invalid"] == 3
    assert [e.split(": ")[0] for e in summary["invalid_examples"]] == [f"{path}:{n}" for n in (2, 3, 4)]
    assert "'assert g(3) = 9'" in summary["invalid_examples"][1]
    assert "the test program is not valid Python" in summary["invalid_examples"][2]


def test_eval_custom_tasks_compile_their_tests_too(tmp_path):
    from coder_align.evaluation.tasks import TaskError, load_custom

    path = write(tmp_path / "mine.jsonl", [{"instruction": "x", "tests": ["assert f() == 1"]},
                                           {"instruction": "y", "tests": ["assert f( == 1"]}])
    with pytest.raises(TaskError, match=r"mine.jsonl:2: test 'assert f\( == 1' is not valid Python"):
        load_custom(path)


def test_task_id_ranges():
    assert parse_task_ids("1-3,7") == {1, 2, 3, 7} and parse_task_ids(None) is None
    with pytest.raises(ValueError, match="task_ids"):
        parse_task_ids("a-b")


def test_training_reads_refuse_held_out_benchmark_tasks(tmp_path):
    from coder_align.config import ConfigError, load_config
    from coder_align.data.grpo_rows import refuse_test_ids
    from coder_align.grpo import GRPOConfig, main

    rows = [{"task_id": 601, "text": "Write f.", "test_list": ["assert f() == 1"]},
            {"task_id": "Mbpp/510", "prompt": "Write g.", "tests": ["assert g() == 1"]},
            {"task_id": "HumanEval/3", "prompt": "Write h.", "tests": ["assert h() == 1"]},
            {"task_id": 12, "prompt": "my own task 12", "tests": ["assert k() == 1"]}]
    path = write(tmp_path / "rows.jsonl", rows)
    assert len(read_tasks(path)[0]) == 4  # reading to measure is allowed
    with pytest.raises(DataError, match=r"rows.jsonl:2: MBPP task 510 is in MBPP's test split"):
        read_tasks(path, training=True, on_invalid="skip")
    with pytest.raises(DataError, match=r"he.jsonl:1: HumanEval/3 is a HumanEval task"):
        read_tasks(write(tmp_path / "he.jsonl", rows[2:]), training=True)
    tasks, _ = read_tasks(write(tmp_path / "ok.jsonl", [rows[0], rows[3]]), training=True, keep_rows=True)
    assert [t["row"] for t in tasks] == [rows[0], rows[3]]  # a generic row's own id 12 is not MBPP's
    refuse_test_ids("511-974")
    with pytest.raises(ConfigError, match="includes MBPP test-split ids"):
        refuse_test_ids("test")
    with pytest.raises(ConfigError, match=r"data.task_ids=1-20 includes MBPP test-split ids \(11...20\)"):
        main(load_config(GRPOConfig, None, [f"data.path={path}", "data.task_ids=1-20"]))
