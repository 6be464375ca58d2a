"""coder_align.benchmarks: one prompt, one test program and one set of paths for every stage.

The central check: for the same MBPP (and HumanEval) task, the prompt GRPO trains on and
the prompt evaluation measures with in instruct mode are the same bytes and token ids,
each built by its own stage's code (GRPO rows rendered the way TRL renders them).
"""

from __future__ import annotations

import doctest
import json

import pytest

from coder_align import benchmarks
from coder_align.benchmarks import extract, prompts, sources
from coder_align.data.grpo_rows import parse_task_ids, read_tasks
from coder_align.evaluate import flat_config
from coder_align.evaluation.prompts import prompts_for
from coder_align.evaluation.tasks import instruct_messages, load_humaneval, load_mbpp

MBPP_ROWS = [
    {"task_id": 12, "text": "Write a function to add two numbers.", "code": "def add(a, b):\n    return a + b",
     "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"], "test_setup_code": ""},
    {"task_id": 600, "text": "  Write a function for the area of a circle.  ",
     "code": "import math\ndef area(r):\n    return math.pi * r * r",
     "test_list": ["assert math.isclose(area(1), math.pi)"], "test_setup_code": "x = 1",
     "test_imports": ["import math"]},
]
HUMANEVAL_ROW = {"task_id": "HumanEval/0", "prompt": "def inc(x):\n    \"\"\"Add one.\"\"\"\n",
                 "canonical_solution": "    return x + 1\n", "test": "def check(c):\n    assert c(1) == 2\n",
                 "entry_point": "inc"}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_doctests():
    for module in (prompts, extract):
        assert doctest.testmod(module).failed == 0


def _grpo_and_eval_prompts(grpo_path, eval_task, fmt, system_prompt):
    from coder_align.models import load_tokenizer

    tok = load_tokenizer("embedded", "deepseek", system_prompt)
    grpo_tasks, _ = read_tasks(grpo_path, fmt=fmt)
    # TRL renders conversational prompts with the tokenizer's chat template (GRPOTrainer._tokenize_prompts)
    grpo_text = [tok.apply_chat_template(t["prompt"], tokenize=False, add_generation_prompt=True) for t in grpo_tasks]
    grpo_ids = [tok.apply_chat_template(t["prompt"], tokenize=True, add_generation_prompt=True, return_dict=True)
                ["input_ids"] for t in grpo_tasks]
    config = flat_config(mode="instruct", template="deepseek", system_prompt=system_prompt)
    eval_text, add_special = prompts_for(eval_task, "instruct", config, tok)
    eval_ids = [tok(t, add_special_tokens=add_special)["input_ids"] for t in eval_text]
    return grpo_tasks, grpo_text, grpo_ids, eval_text, eval_ids


@pytest.mark.parametrize("system_prompt", [None, "", "Answer in Python."])
def test_grpo_prompt_is_the_eval_instruct_prompt_for_mbpp(tmp_path, system_prompt):
    path = write_jsonl(tmp_path / "mbpp.jsonl", MBPP_ROWS)
    task = load_mbpp(path, split="all")
    grpo_tasks, grpo_text, grpo_ids, eval_text, eval_ids = _grpo_and_eval_prompts(
        path, task, "mbpp", system_prompt)
    assert [t["prompt"] for t in grpo_tasks] == [instruct_messages(p) for p in task.problems]
    assert grpo_text == eval_text
    assert grpo_ids == eval_ids
    assert "Your code should pass this test:\nassert add(1, 2) == 3\n" in eval_text[0]
    assert "assert add(0, 0) == 0" not in eval_text[0]  # only the first test is shown
    # and the same program is judged: setup first, then every assert
    assert [t["tests"] for t in grpo_tasks] == [p.tests for p in task.problems]
    assert grpo_tasks[1]["tests"] == ["import math", "x = 1", "assert math.isclose(area(1), math.pi)"]


def test_grpo_prompt_is_the_eval_instruct_prompt_for_humaneval(tmp_path):
    path = write_jsonl(tmp_path / "he.jsonl", [HUMANEVAL_ROW])
    task = load_humaneval(path)
    grpo_tasks, grpo_text, grpo_ids, eval_text, eval_ids = _grpo_and_eval_prompts(
        path, task, "humaneval", None)
    assert grpo_text == eval_text and grpo_ids == eval_ids
    assert grpo_tasks[0]["tests"] == task.problems[0].tests == "def check(c):\n    assert c(1) == 2\n\ncheck(inc)\n"


@pytest.mark.skipif(benchmarks.find_data(benchmarks.MBPP_FILE) is None, reason="no local MBPP file")
def test_real_mbpp_prompts_agree_and_splits_count():
    path = str(benchmarks.find_data(benchmarks.MBPP_FILE))
    grpo_tasks, _ = read_tasks(path, task_ids="validation,train")
    train = load_mbpp(path, split="train").problems + load_mbpp(path, split="validation").problems
    by_id = {p.task_id: instruct_messages(p)[0]["content"] for p in train}
    assert len(grpo_tasks) == len(by_id) == 163
    assert all(t["prompt"][0]["content"] == by_id[f"Mbpp/{t['task_id']}"] for t in grpo_tasks)
    assert len(load_mbpp(path, split="test").problems) == 257


def test_split_names_are_the_task_id_ranges():
    assert parse_task_ids("validation,train") == parse_task_ids("511-974") == set(range(511, 975))
    assert parse_task_ids("test") == set(range(11, 511))
    with pytest.raises(benchmarks.BenchmarkError, match="split must be one of"):
        benchmarks.split_ids("dev")


def test_mbpp_setup_puts_math_first_once():
    assert benchmarks.mbpp_setup({"test_imports": ["import math", "import re"], "test_setup_code": "y = 2"}) == [
        "import math", "import re", "y = 2"]
    assert benchmarks.mbpp_setup({}) == ["import math"]


def test_missing_default_data_says_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "data_dirs", lambda: [tmp_path / "nowhere"])
    with pytest.raises(benchmarks.BenchmarkDataMissing) as e:
        benchmarks.infilling_path()
    assert "nowhere" in str(e.value) and "human-eval-infilling" in str(e.value) and benchmarks.DATA_ENV in str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    assert benchmarks.mbpp_source() == benchmarks.MBPP_HUB  # no file: the hub copy


def test_data_env_is_searched_first(tmp_path, monkeypatch):
    write_jsonl(tmp_path / benchmarks.MBPP_FILE, MBPP_ROWS)
    monkeypatch.setenv(benchmarks.DATA_ENV, str(tmp_path))
    assert benchmarks.data_dirs()[0] == tmp_path
    assert benchmarks.mbpp_source() == str(tmp_path / benchmarks.MBPP_FILE)
    assert [p.task_id for p in load_mbpp(split="all").problems] == ["Mbpp/12", "Mbpp/600"]


def test_code_blocks_and_extract_code_share_one_fence():
    answer = "```python\ndef inc(x):\n    return x + 1\n```\nthen\n```  py  extra\nother()\n```\nnot ```python here"
    assert extract.code_blocks(answer) == [("python", "def inc(x):\n    return x + 1\n"), ("py", "other()\n")]
    assert benchmarks.extract_code(answer, "python") == "other()\n"
    assert extract.code_blocks("text ```python\nx\n```") == []  # a fence starts a line
