"""Pure pieces of the evaluation stage: pass@k, sample files, completions, prompts."""

from __future__ import annotations

import json
import math

import pytest

from coder_align.evaluate import pass_at_k
from coder_align.evaluation.report import compare_runs
from coder_align.evaluation.scoring import read_samples, summarise
from coder_align.evaluation.tasks import (
    Problem, Task, TaskError, base_prompt, cut_at_stops, drop_unfinished_tail, fim_prompt, first_line,
    instruct_completion, load_custom,
)


@pytest.mark.parametrize("n,c,k,expected", [
    (5, 2, 1, 2 / 5),            # pass@1 = c/n
    (5, 2, 2, 1 - 3 / 10),       # 1 - C(3,2)/C(5,2)
    (5, 2, 3, 1 - 1 / 10),       # 1 - C(3,3)/C(5,3)
    (5, 2, 4, 1.0),              # n - c < k: some draw of 4 always holds a correct one
    (10, 0, 5, 0.0),
    (10, 10, 1, 1.0),
    (200, 1, 100, 0.5),          # 1 - C(199,100)/C(200,100) = 1 - 100/200
    (20, 3, 10, 1 - math.comb(17, 10) / math.comb(20, 10)),
])
def test_pass_at_k_matches_hand_computed_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_pass_at_k_is_stable_where_binomials_overflow_floats():
    # C(2000, 1000) ~ 1e600 overflows a float; the product form does not need it.
    assert pass_at_k(2000, 3, 1000) == pytest.approx(1 - (1000 * 999 * 998) / (2000 * 1999 * 1998))


@pytest.mark.parametrize("n,c,k", [(5, 6, 1), (5, -1, 1), (5, 2, 0), (3, 1, 10)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_read_samples_names_line_and_field(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"task_id": "HumanEval/0", "completion": "x"}\n\n{"task_id": "HumanEval/1"}\n')
    with pytest.raises(TaskError, match=r"s\.jsonl:3: missing field 'completion'"):
        read_samples(path)
    path.write_text('{"task_id": "A", "completion": 3}\n')
    with pytest.raises(TaskError, match=r":1: field 'completion' must be str, got int"):
        read_samples(path)
    path.write_text('{"task_id": "A", "completion": ""}\n{oops\n')
    with pytest.raises(TaskError, match=r":2: not valid JSON"):
        read_samples(path)


def _task():
    return Task("toy", [Problem("t/0", "continue", "def f():\n", "assert f() == 1"),
                        Problem("t/1", "continue", "def g():\n", "assert g() == 2")])


def test_summary_counts_unknown_ids_and_pass_at_k_only_where_n_allows():
    from collections import Counter

    results = [{"task_id": "t/0", "passed": p} for p in (True, False, True)] + \
              [{"task_id": "t/1", "passed": p} for p in (False, False)]
    summary = summarise(_task(), results, Counter({"t/9": 2}), Counter(), ks=(1, 2, 10))
    assert summary["pass@1"] == pytest.approx((2 / 3 + 0) / 2)
    assert summary["pass@2"] == pytest.approx((1.0 + 0.0) / 2)  # t/0: any 2 of 3 hold a pass; t/1: none
    assert "pass@10" not in summary
    assert summary["unknown_task_ids"] == 2 and summary["unknown_task_id_examples"] == ["t/9"]


def test_unjudged_samples_make_pass_at_k_null_unless_allowed():
    from collections import Counter

    results = [{"task_id": "t/0", "passed": True, "status": "ok"},
               {"task_id": "t/1", "passed": False, "status": "unavailable", "error": "x\nbwrap: setting up uid map"}]
    summary = summarise(_task(), results, Counter(), Counter({"ok": 1, "unavailable": 1}), ks=(1,))
    assert summary["pass@1"] is None  # not 0.5: t/1 was neither passed nor failed
    assert summary["unavailable"] == 1 and summary["unavailable_reason"] == "bwrap: setting up uid map"
    allowed = summarise(_task(), results, Counter(), Counter(), ks=(1,), allow_unavailable=True)
    assert allowed["pass@1"] == 1.0 and allowed["problems_unjudged"] == 1


def test_eval_score_without_a_sandbox_fails_with_null_pass_at_k(tmp_path):
    import json
    import subprocess

    from conftest import cli_command, cli_env

    task = tmp_path / "toy.jsonl"
    task.write_text(json.dumps({"task_id": "a", "instruction": "Write one().", "tests": ["assert one() == 1"]}) + "\n")
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": "a", "completion": "def one():\n    return 1\n"}) + "\n")
    env = {**cli_env(), "PATH": str(tmp_path / "no-bin")}  # no bwrap on PATH, as on a fresh machine
    command = cli_command("eval", "score", "--task", str(task), "--samples", str(samples))
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 3
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["pass@1"] is None and summary["status_counts"] == {"unavailable": 1}
    [line] = proc.stderr.strip().splitlines()
    assert "could not be judged" in line and "bubblewrap" in line and "--allow-unavailable" in line
    proc = subprocess.run(command + ["--allow-unavailable"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and json.loads(proc.stdout.strip().splitlines()[-1])["pass@1"] is None


def test_eval_run_without_a_sandbox_stops_before_loading_the_model(tmp_path):
    import json
    import subprocess

    from conftest import cli_command, cli_env

    task = tmp_path / "toy.jsonl"
    task.write_text(json.dumps({"task_id": "a", "instruction": "Write one().", "tests": ["assert one() == 1"]}) + "\n")
    env = {**cli_env(), "PATH": str(tmp_path / "no-bin")}
    # a model path that does not exist: the sandbox check must fail first
    proc = subprocess.run(cli_command("eval", "run", "--tasks", str(task), "--model", str(tmp_path / "no-model"),
                                      "--mode", "instruct", "--out", str(tmp_path / "out")),
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    assert "cannot score here: bubblewrap" in proc.stderr and "--allow-unavailable" in proc.stderr


def test_eval_score_with_only_unknown_ids_is_an_error(tmp_path):
    import json
    import subprocess

    from conftest import cli_command, cli_env

    task = tmp_path / "toy.jsonl"
    task.write_text(json.dumps({"task_id": "a", "instruction": "Write one().", "tests": ["assert one() == 1"]}) + "\n")
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": "HumanEval/0", "completion": "x"}) + "\n")
    proc = subprocess.run(cli_command("eval", "score", "--task", str(task), "--samples", str(samples)),
                          capture_output=True, text=True, env=cli_env(), timeout=120)
    assert proc.returncode == 2
    assert json.loads(proc.stdout.strip().splitlines()[-1])["pass@1"] is None
    assert proc.stderr.strip() == ("coder-align eval: error: none of the 1 samples has a task id of toy "
                                   "(e.g. HumanEval/0); is --task right?")


def test_markdown_and_chart_show_null_as_null_not_zero(tmp_path):
    from coder_align.evaluation.report import bar_chart, markdown_report

    summary = {"tasks": {"toy": {"problems_scored": 1, "problems": 1, "samples": 1, "pass@1": None}}}
    report = markdown_report(summary)
    assert "| toy | 1/1 | 1 | null |" in report
    assert "| pass@1 % |" in report and "in percent of problems, 0-100 (summary.json holds them as fractions" in report
    fig = bar_chart({"run": {"toy pass@1": None}}, tmp_path / "p.png", "t")
    assert (tmp_path / "p.png").exists()
    assert [t.get_text() for t in fig.axes[0].texts] == ["null (unjudged)"]


def test_pass_rate_chart_shows_zeros_counts_and_a_fixed_axis(tmp_path):
    from coder_align.evaluation.report import bar_chart

    fig = bar_chart({"run": {"toy pass@1": 0.0, "toy pass@10": 0.25}}, tmp_path / "p.png", "t",
                    {"toy pass@1": 3, "toy pass@10": 3})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["0.0", "25.0"]  # a zero bar is still labelled
    assert ax.get_ylim() == (0, 115) and max(ax.get_yticks()) == 100 and ax.get_ylabel() == "% of problems"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["toy pass@1\n(3 problems)", "toy pass@10\n(3 problems)"]


def test_compare_chart_marks_missing_tasks_and_shows_wins_and_losses(tmp_path):
    import json

    from coder_align.evaluation.report import compare_runs

    def run(name, tasks):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({"model": name, "tasks": tasks}))
        return tmp_path / name

    a = run("a", {"toy": {"pass@1": 0.0, "problems_scored": 2, "per_problem": {"1": {"n": 1, "passed": 0},
                                                                               "2": {"n": 1, "passed": 1}}},
                  "extra": {"pass@1": 0.5, "problems_scored": 2, "per_problem": {}}})
    b = run("b", {"toy": {"pass@1": 0.5, "problems_scored": 2, "per_problem": {"1": {"n": 1, "passed": 1},
                                                                               "2": {"n": 1, "passed": 1}}}})
    result = compare_runs(a, b, tmp_path / "cmp")
    assert result["only_in_a"] == ["extra"] and result["only_in_b"] == []
    from coder_align.evaluation.report import compare_chart, headline

    fig = compare_chart(result, {"A": headline(json.loads((a / "summary.json").read_text())),
                                 "B": headline(json.loads((b / "summary.json").read_text()))}, tmp_path / "c.png")
    bars, wins = fig.axes
    assert "missing" in [t.get_text() for t in bars.texts]  # B has no 'extra' task: not a bar at 0
    assert sorted(t.get_text() for t in wins.texts) == ["1", "1"]  # toy: B better on 1, tie on 1
    assert wins.get_xlabel() == "problems (in both runs)"


def test_non_utf8_samples_and_directories_are_named_errors(tmp_path):
    from coder_align.evaluation.scoring import read_samples
    from coder_align.evaluation.tasks import TaskError

    bad = tmp_path / "s.jsonl"
    bad.write_bytes(b'{"task_id": "a", "completion": "ok"}\n{"task_id": "a", "completion": "\xff"}\n')
    with pytest.raises(TaskError, match=r"s.jsonl:2: not UTF-8 \(byte 0xff at column 33\); save the file as UTF-8"):
        read_samples(bad)
    with pytest.raises(TaskError, match="is a directory"):
        read_samples(tmp_path)


def test_cut_at_stops_takes_the_earliest_stop():
    text = "    return 1\n\n# test\ndef other():\n"
    assert cut_at_stops(text, ["\ndef ", "\n#"]) == "    return 1\n"
    assert cut_at_stops("    return 1", ["\ndef "]) == "    return 1"


def test_drop_unfinished_tail_keeps_the_complete_functions():
    code = "def f(x):\n    return x\n\ndef f(x"
    assert drop_unfinished_tail(code) == "def f(x):\n    return x\n\n"
    whole = "def f(x):\n    return (1,\n2)\n"
    assert drop_unfinished_tail(whole) == whole


def test_first_line_for_single_line_infilling():
    assert first_line("        return x\n    y = 2\n") == "        return x\n"
    assert first_line("x = 1") == "x = 1\n"


def test_instruct_completion_redefines_or_completes_the_function():
    problem = Problem("t", "continue", 'def add(a, b):\n    """Add."""\n', "", entry_point="add")
    whole = "Sure:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    completion = instruct_completion(problem, whole)
    assert completion == "\ndef add(a, b):\n    return a + b\n"
    ns = {}
    exec(problem.program(completion), ns)
    assert ns["add"](2, 3) == 5
    # a small model that goes on inventing instructions: the block defining `add` counts
    rambling = whole + "\n### Instruction:\nWrite mul.\n### Response:\n```python\ndef mul(a, b):\n    return a * b\n```"
    assert instruct_completion(problem, rambling) == completion
    body = "```python\n    return a + b\n```"
    assert problem.program(instruct_completion(problem, body)).endswith('"""Add."""\n    return a + b\n')


def test_prompts_per_mode():
    from coder_align.fim import FIM_BEGIN, FIM_END, FIM_HOLE

    mbpp = Problem("Mbpp/11", "program", "Remove a char.", ["assert f(1) == 1"], first_test="assert f(1) == 1")
    assert base_prompt(mbpp) == '"""\nRemove a char.\nassert f(1) == 1\n"""\n'
    infill = Problem("i", "infill", "def f():\n", "", suffix="    return y\n")
    assert fim_prompt(infill) == f"{FIM_BEGIN}def f():\n{FIM_HOLE}    return y\n{FIM_END}"
    assert "\uff5c" in FIM_BEGIN  # FULLWIDTH bars, as DeepSeek-Coder's tokenizer spells them
    with pytest.raises(TaskError, match="instruct"):
        base_prompt(Problem("c", "program", "Write f.", ["assert f()"]))


def test_custom_rows_and_their_errors(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [{"prompt": "def f():\n", "tests": ["assert f() == 1"]},
            {"instruction": "Write g returning 2.", "tests": "assert g() == 2", "task_id": "g"},
            {"messages": [{"role": "user", "content": "cat"}], "tests": [{"stdin": "a", "stdout": "a"}],
             "language": "python"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    task = load_custom(str(path))
    assert task.name == "mine"
    assert [p.kind for p in task.problems] == ["continue", "program", "program"]
    assert [p.task_id for p in task.problems] == ["mine/1", "g", "mine/3"]
    path.write_text(json.dumps({"instruction": "x"}) + "\n")
    with pytest.raises(TaskError, match=r"mine\.jsonl:1: missing field 'tests'"):
        load_custom(str(path))
    path.write_text(json.dumps({"tests": ["assert 1"]}) + "\n")
    with pytest.raises(TaskError, match=r":1: needs a 'prompt', 'instruction' or 'messages'"):
        load_custom(str(path))


def test_compare_counts_wins_and_losses(tmp_path):
    def run(name, passed):
        d = tmp_path / name
        d.mkdir()
        task = {"problems": 3, "problems_scored": 3, "samples": 3, "pass@1": sum(passed) / 3,
                "per_problem": {f"t/{i}": {"n": 1, "passed": int(p)} for i, p in enumerate(passed)}}
        (d / "summary.json").write_text(json.dumps({"model": name, "tasks": {"toy": task}}))
        return d

    a, b = run("a", [1, 0, 0]), run("b", [0, 1, 1])
    result = compare_runs(a, b, tmp_path / "cmp")
    assert result["tasks"]["toy"] == {"common_problems": 3, "b_wins": 2, "b_losses": 1, "ties": 0,
                                      "pass@1 a": 1 / 3, "pass@1 b": 2 / 3}
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 1000


def test_eval_settings_come_from_yaml_overrides_and_the_old_flags(tmp_path):
    import warnings

    from coder_align.config import ConfigError
    from coder_align.evaluation.config import eval_config, flat_config

    path = tmp_path / "eval.yaml"
    path.write_text("model:\n  path: outputs/sft\ndata:\n  tasks: [humaneval]\n  mode: instruct\ngeneration:\n  n: 4\n")
    config = eval_config(str(path), ["generation.temperature=0.8", "data.tasks=humaneval,mbpp"],
                         {"limit": "3", "out": "o", "threads": "1"})
    assert config.model.path == "outputs/sft" and config.data.tasks == ["humaneval", "mbpp"]
    assert (config.data.mode, config.generation.n, config.generation.temperature) == ("instruct", 4, 0.8)
    assert (config.data.max_rows, config.output_dir, config.generation.threads) == (3, "o", 1)
    assert flat_config(model="m", tasks=["mbpp"], n=2, out="x") == eval_config(
        None, ["model.path=m", "data.tasks=[mbpp]", "generation.n=2", "output_dir=x"])
    with pytest.raises(ConfigError, match="--model and model.path= both given"):
        eval_config(None, ["model.path=a"], {"model": "b"})
    with pytest.raises(ConfigError, match="unknown key 'generation.tempreature'; did you mean 'generation.temperature'"):
        eval_config(None, ["generation.tempreature=1"])
    with pytest.raises(ConfigError, match="'data.mode' must be one of"):
        eval_config(None, [], {"mode": "chat"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert eval_config(None, ["data.limit=5"]).data.max_rows == 5
    assert any("use 'data.max_rows'" in str(w.message) for w in caught)
