"""`coder-align data mbpp-sft`: the eval's prompt, never the test split, decontaminated."""

import json

import pytest

from coder_align.benchmarks import mbpp_instruct_prompt

ROWS = [  # (task id, text, code, tests)
    (2, "Write a function to find the shared elements of two lists.",
     "def shared(a, b):\n    return set(a) & set(b)", ["assert shared([1], [1]) == {1}"]),
    (11, "Write a python function to remove first and last occurrence of a given character from the string.",
     "def remove_Occ(s, ch):\n    for i in range(len(s)):\n        if s[i] == ch:\n            s = s[0:i] + s[i + 1:]\n"
     "            break\n    return s", ["assert remove_Occ('hello','l') == 'helo'"]),
    (610, "Write a python function to check whether the given number is even or not using bitwise operator.",
     "def is_Even(n):\r\n    return n & 1 == 0", ["assert is_Even(1) == False", "assert is_Even(2) == True"]),
    # a training row whose solution copies the test row 11's code: the 10-gram rule removes it
    (700, "Write a function that drops one character from a string.",
     "def drop(s, ch):\n    for i in range(len(s)):\n        if s[i] == ch:\n            s = s[0:i] + s[i + 1:]\n"
     "            break\n    return s", ["assert drop('ab', 'a') == 'b'"]),
]


@pytest.fixture()
def mbpp(tmp_path):
    path = tmp_path / "mbpp.jsonl"
    path.write_text("".join(json.dumps({"task_id": i, "text": t, "code": c, "test_list": tests, "test_setup_code": ""})
                            + "\n" for i, t, c, tests in ROWS))
    return path


def run(capsys, *args):
    from coder_align.cli import main

    code = main(["data", "mbpp-sft", *map(str, args)])
    return code, capsys.readouterr()


def test_rows_use_the_eval_prompt_and_skip_the_test_split(mbpp, tmp_path, capsys):
    from coder_align.evaluation.tasks import instruct_messages, load_mbpp

    out = tmp_path / "sft.jsonl"
    code, printed = run(capsys, "--splits", "prompt,train", "--mbpp", mbpp, "--out", out)
    assert code == 0, printed.err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["task_id"] for r in rows] == ["Mbpp/2", "Mbpp/610"]
    evaluated = {p.task_id: instruct_messages(p)[0]["content"] for p in load_mbpp(str(mbpp), split="all").problems}
    assert all(r["instruction"] == evaluated[r["task_id"]] for r in rows)  # the bytes eval sends
    assert rows[1]["instruction"] == mbpp_instruct_prompt(ROWS[2][1], ROWS[2][3][:1])
    assert rows[1]["output"] == "```python\ndef is_Even(n):\n    return n & 1 == 0\n```"
    summary = json.loads((tmp_path / "sft.summary.json").read_text())
    assert summary["kept"] == 2 and summary["rows_outside_selection"] == 1
    assert summary["decontamination"]["removed"] == 1
    assert summary["decontamination"]["examples"] == ["Mbpp/700 overlaps MBPP/11"]
    assert "1 removed by decontamination" in printed.out


@pytest.mark.parametrize("splits", ["test", "validation,test", "500-520", "11"])
def test_refuses_test_split_ids(mbpp, tmp_path, capsys, splits):
    code, printed = run(capsys, "--splits", splits, "--mbpp", mbpp, "--out", tmp_path / "x.jsonl")
    assert code == 2 and "MBPP test-split ids" in printed.err and "never train on them" in printed.err
    assert not (tmp_path / "x.jsonl").exists()


@pytest.mark.parametrize("splits", ["validation", "prompt,validation,train", "511-974", "600"])
def test_refuses_the_validation_split(mbpp, tmp_path, capsys, splits):
    # issue 26: mbpp-sft held reference solutions for 36 of the 43 validation tasks the
    # reward-model study called unseen; no stage trains on the split choices are made on
    code, printed = run(capsys, "--splits", splits, "--mbpp", mbpp, "--out", tmp_path / "x.jsonl")
    assert code == 2 and "validation ids" in printed.err and "held out of all training" in printed.err
    assert not (tmp_path / "x.jsonl").exists()


def test_default_splits_leave_validation_out(mbpp, tmp_path):
    from coder_align.datagen.mbpp_sft import MbppSftConfig, mbpp_rows

    path = tmp_path / "with_validation.jsonl"
    path.write_text(mbpp.read_text() + json.dumps({"task_id": 555, "text": "Write a function to add two numbers.",
                                                   "code": "def add(a, b):\n    return a + b",
                                                   "test_list": ["assert add(1, 2) == 3"]}) + "\n")
    rows, summary = mbpp_rows(MbppSftConfig(mbpp=str(path), decontam_mbpp=str(mbpp)))
    assert [r["task_id"] for r in rows] == ["Mbpp/2", "Mbpp/610"]
    assert summary["rows_outside_selection"] == 2  # 11 (test) and 555 (validation); 700 is removed as contaminated
