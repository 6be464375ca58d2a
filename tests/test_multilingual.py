"""DeepSeek-Coder's own suite: multilingual HumanEval and LeetCode Contest, judged in the sandbox.

The canonical check: the data has reference solutions only in Python, so
tests/fixtures/multilingual/ holds hand-written answers to three problems per language.
Through the same extraction and sandbox as `eval run`, each passes, a stub fails and
mutated answers fail. A language whose toolchain is missing here is skipped with the
reason, and must then be `unavailable` (never a 0): `test_missing_toolchain_*`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coder_align.benchmarks import multilingual
from coder_align.evaluation import multilingual_report
from coder_align.evaluation.config import eval_config
from coder_align.evaluation.prompts import completions_for
from coder_align.evaluation.scoring import score_samples
from coder_align.evaluation.tasks import (
    MULTILINGUAL_TASKS, TaskError, instruct_completion, instruct_messages, load_task, task_names,
)
from coder_align.rewards.execution import compile_reward, unit_test_reward
from coder_align.sandbox import check, check_many, find_bwrap, languages, toolchain_available

FIXTURES = Path(__file__).parent / "fixtures" / "multilingual"
CODES = ("cpp", "java", "js", "ts", "php", "cs", "sh", "go", "rs")
needs_bwrap = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap not installed")


def _need(code: str) -> None:
    language = multilingual.SETTINGS[code].language
    if not toolchain_available(language):
        tool = languages.LANGUAGES[languages.normalise(language)].tool
        pytest.skip(f"{language}: toolchain `{tool}` not installed here (scripts/install_sandbox_deps.sh installs it)")


def _answer(code: str, text: str) -> str:
    return f"Here is the completed function:\n```{multilingual.SETTINGS[code].full_name.lower()}\n{text}```\nDone."


def _job(problem, completion: str) -> dict:
    return {"source": problem.program(completion), "tests": problem.tests, "language": problem.language,
            "timeout": 30.0}


@needs_bwrap
@pytest.mark.parametrize("code", CODES)
def test_reference_answers_pass_and_stubs_and_wrong_programs_fail(code):
    _need(code)
    problems = {p.task_id: p for p in load_task(f"humaneval-{code}").problems}
    cases = []  # (label, problem, answer text, should pass)
    for path in sorted((FIXTURES / code).iterdir()):
        problem = problems[path.name.split(".")[0]]
        text = path.read_text()
        if ".stub." in path.name:
            cases.append((path.name, problem, text, False))
            continue
        cases.append((path.name, problem, text, True))
        for old, new in ((" + ", " - "), (">=", ">")):  # off by a sign, off by one
            if old in text:
                cases.append((f"{path.name} with {old.strip()} -> {new.strip()}", problem, text.replace(old, new, 1), False))
    assert sum(c[3] for c in cases) == 3 and len(cases) >= 7
    reports = check_many([_job(p, p.from_answer(_answer(code, text))) for _, p, text, _ in cases], workers=2)
    for (label, _, _, should_pass), report in zip(cases, reports):
        assert report.status != "unavailable", (label, report.error)
        assert report.passed is should_pass, (label, report.status, report.error)


@needs_bwrap
def test_cpp_function_that_falls_off_its_end_fails():
    """A model's comment-only body: at -O2 GCC treats the call as unreachable and dropped the
    asserts, so 9 of the embedded model's first 20 C++ samples 'passed'."""
    _need("cpp")
    problems = {p.task_id: p for p in load_task("humaneval-cpp").problems}
    for task_id, body in (("HumanEval_89_encrypt", "// TODO: rotate\n// }\n#include<cstdlib>\n"),
                          ("HumanEval_53_add", "    // return x + y;\n")):
        problem = problems[task_id]
        report = check(problem.program(problem.prompt + body), problem.tests, language="cpp", timeout=30)
        assert not report.passed and report.status == "runtime_error", (task_id, report.status)


def test_every_language_loads_from_the_package_without_shared_data(monkeypatch):
    monkeypatch.setattr(multilingual, "find_data", lambda name: None)  # no $CODER_ALIGN_DATA, no ../shared
    sizes = {code: len(load_task(f"humaneval-{code}").problems) for code in CODES + ("python",)}
    assert sizes == {"cpp": 161, "java": 158, "js": 161, "ts": 159, "php": 161, "cs": 158, "sh": 158, "go": 154,
                     "rs": 156, "python": 164}
    assert len(load_task("leetcode").problems) == 180
    assert multilingual.data_file(multilingual.LEETCODE_FILE).parent == multilingual.PACKAGE_DATA


def test_task_names_group_and_unknown():
    assert task_names(["humaneval-multilingual", "mbpp"]) == [
        "humaneval-python", "humaneval-cpp", "humaneval-java", "humaneval-php", "humaneval-ts", "humaneval-cs",
        "humaneval-sh", "humaneval-js", "mbpp"]
    assert set(MULTILINGUAL_TASKS) == {f"humaneval-{c}" for c in CODES + ("python",)}
    with pytest.raises(TaskError, match="humaneval-cpp.*leetcode"):
        load_task("humaneval-cobol")


def test_instruct_prompt_is_deepseeks_and_extraction_follows_it():
    problem = next(p for p in load_task("humaneval-cpp").problems if p.task_id == "HumanEval_53_add")
    content = instruct_messages(problem)[0]["content"]
    assert content.startswith("Please continue to complete the function. You are not allowed to modify the given "
                              "code and do the completion only. Please return all completed function in a codeblock. "
                              "Here is the given code to do completion:\n```cpp\n#include<assert.h>")
    assert content.endswith("long add(long x, long y) {\n```")
    # a main is cut, the function's closing brace is left to the tests, the prompt's includes lead
    answer = "```cpp\nlong add(long x, long y) {\n    return x + y;\n}\nint main() { return 0; }\n```"
    completion = instruct_completion(problem, answer)
    assert completion.startswith("#include<assert.h>\n#include<bits/stdc++.h>")
    assert completion.endswith("long add(long x, long y) {\n    return x + y;\n") and "main" not in completion
    # no block in the language: DeepSeek scores prompt + answer
    assert instruct_completion(problem, "return x + y;") == problem.prompt + "\nreturn x + y;"
    python_only = "```python\ndef add(x, y):\n    return x + y\n```"
    assert instruct_completion(problem, python_only) == problem.prompt + "\n" + python_only
    # cut at max_new_tokens inside the block: what is there is taken
    assert "    return x + y;" in instruct_completion(problem, "```cpp\nlong add(long x, long y) {\n    return x + y;\n")


@needs_bwrap
def test_base_mode_cuts_at_the_languages_stop_and_keeps_the_prompt():
    _need("cpp")
    task = load_task("humaneval-cpp")
    task.problems = [p for p in task.problems if p.task_id == "HumanEval_53_add"]
    assert task.stops == ["\n}"]
    samples = completions_for(task, "base", [["    return x + y;\n}\nint main() { return 1; }\n"]], [])
    assert samples[0]["completion"] == task.problems[0].prompt + "    return x + y;"
    _, summary = score_samples(task, samples, workers=1)
    assert summary["pass@1"] == 1.0


@needs_bwrap
def test_humaneval_python_is_deepseeks_copy_with_its_prompt():
    task = load_task("humaneval-python", limit=3)
    rows = {json.loads(line)["task_id"]: json.loads(line) for line in __import__("gzip").open(
        multilingual.data_file("humaneval-python.jsonl.gz"))}
    assert "```python\nfrom typing import List" in instruct_messages(task.problems[0])[0]["content"]
    samples = [{"task_id": p.task_id, "completion": instruct_completion(
        p, f"```python\n{p.prompt}{rows[p.task_id]['canonical_solution']}```")} for p in task.problems]
    _, summary = score_samples(task, samples, workers=2)
    assert summary["pass@1"] == 1.0
    _, summary = score_samples(task, [dict(s, completion="    return None\n") for s in samples], workers=2)
    assert summary["pass@1"] == 0.0


@needs_bwrap
def test_java_problems_using_javatuples_get_a_pair():
    _need("java")
    problem = next(p for p in load_task("humaneval-java").problems if p.task_id == "HumanEval_155_even_odd_count")
    body = ("    public static Pair<Long, Long> evenOddCount(long num) {\n        long even = 0, odd = 0;\n"
            "        for (char c : Long.toString(Math.abs(num)).toCharArray()) {\n"
            "            if ((c - '0') % 2 == 0) even++; else odd++;\n        }\n"
            "        return Pair.with(even, odd);\n    }\n")
    good = problem.from_answer(f"```java\nclass Problem {{\n{body}}}\n```")
    wrong = problem.from_answer(f"```java\nclass Problem {{\n{body.replace('even, odd', 'odd, even')}}}\n```")
    reports = check_many([_job(problem, good), _job(problem, wrong)], workers=2)
    assert [r.passed for r in reports] == [True, False], reports[0].error


# --- LeetCode Contest -----------------------------------------------------------------------

def test_leetcode_contamination_window():
    rows, older = multilingual.read_leetcode()
    assert len(rows) == 180 and older == 0
    cut = multilingual.parse_since("2023-12-01")
    assert cut == 1701388800
    task = load_task("leetcode", leetcode_since="2023-12-01")
    expected = sum(r["start_time"] >= cut for r in rows)
    assert 0 < expected < 180 and len(task.problems) == expected
    assert task.skipped == {"started_before_2023-12-01": 180 - expected}
    with pytest.raises(TaskError, match="YYYY-MM-DD"):
        load_task("leetcode", leetcode_since="last week")


def test_leetcode_since_is_a_config_key(tmp_path):
    config = eval_config(None, ["data.tasks=leetcode", "data.leetcode_since=2023-10-01"])
    assert config.data.leetcode_since == "2023-10-01"
    yaml = tmp_path / "eval.yaml"
    yaml.write_text("data:\n  tasks: [leetcode]\n  leetcode_since: '2023-10-01'\n")
    assert eval_config(str(yaml)).data.leetcode_since == "2023-10-01"


@needs_bwrap
def test_leetcode_answers_are_judged_on_every_assert():
    task = load_task("leetcode")
    problems = {p.task_id: p for p in task.problems}
    pushes = problems["weekly-contest-381-minimum-number-of-pushes-to-type-word-i"]
    assert "Please complete the code below" in instruct_messages(pushes)[0]["content"]
    assert len(pushes.tests) == 100
    good = ("class Solution:\n    def minimumPushes(self, word: str) -> int:\n"
            "        return sum(i // 8 + 1 for i in range(len(word)))\n")
    answer = f"Some prose.\n```python\nprint('scratch')\n```\n```python\n{good}```\n```python\nprint(1)\n```"
    assert instruct_completion(pushes, answer) == good
    linked = problems["weekly-contest-358-double-a-number-represented-as-a-linked-list"]  # ListNode helpers
    doubled = ("class Solution:\n    def doubleIt(self, head):\n        digits = []\n        while head:\n"
               "            digits.append(head.val)\n            head = head.next\n"
               "        out = None\n        for c in reversed(str(2 * int(''.join(map(str, digits))))):\n"
               "            out = ListNode(int(c), out)\n        return out\n")
    jobs = [_job(pushes, good), _job(pushes, good.replace("+ 1", "")), _job(linked, doubled),
            _job(linked, doubled.replace("2 *", "3 *"))]
    reports = check_many(jobs, workers=2)
    assert [r.passed for r in reports] == [True, False, True, False], [r.error for r in reports]
    assert reports[0].n_passed == reports[0].n_total == 100 and reports[0].isolation == "host_compare"


# --- unavailable, never 0 ---------------------------------------------------------------------

@needs_bwrap
def test_missing_toolchain_is_unavailable_not_zero(monkeypatch, tmp_path):
    monkeypatch.setitem(languages.LANGUAGES, "csharp", languages.Language(
        "csharp", "main.cs", "no-such-mcs-xyz", ["no-such-mcs-xyz"], ["/box/main.exe"]))
    task = load_task("humaneval-cs", limit=2)
    samples = [{"task_id": p.task_id, "completion": p.prompt + "return 0;\n"} for p in task.problems]
    results, summary = score_samples(task, samples, workers=1, allow_unavailable=True)
    assert {r["status"] for r in results} == {"unavailable"}
    assert summary["pass@1"] is None and "no-such-mcs-xyz" in summary["unavailable_reason"]
    run = {"model": "m", "tasks": {"humaneval-cs": summary, "humaneval-cpp": {"pass@1": 0.5, "problems_scored": 161}}}
    table = multilingual_report.markdown(run)
    assert "| C# | 0 | unavailable (toolchain not found: `no-such-mcs-xyz`" in table
    assert "| C++ | 161 | 50.0 | 45.3 |" in table
    assert "| average of the paper's eight | | 50.0 (without Python, Java, PHP, TypeScript, C#, Bash, JavaScript)" in table
    fig = multilingual_report.chart(run, tmp_path / "multilingual.png", "m")
    assert (tmp_path / "multilingual.png").stat().st_size > 0
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert "null (unjudged)" in labels and "50.0" in labels and "0.0" not in labels


# --- the new sandbox languages; rewards by each row's language ------------------------------------

SUM = {  # stdin/stdout programs, as GRPO rows in these languages carry
    "typescript": ('declare var require: any;\nconst l: number[] = require("fs").readFileSync(0, "utf8").trim().split(/\\s+/).map(Number);\n'
                   'console.log(l[0] + l[1]);\n'),
    "php": "<?php\n$l = array_map('intval', preg_split('/\\s+/', trim(stream_get_contents(STDIN))));\necho $l[0] + $l[1], \"\\n\";\n",
    "csharp": ("using System;\nclass P { static void Main() { var l = Console.In.ReadToEnd().Split((char[])null, "
               "StringSplitOptions.RemoveEmptyEntries); Console.WriteLine(long.Parse(l[0]) + long.Parse(l[1])); } }\n"),
}
CASES = [{"stdin": "1 2", "stdout": "3"}, {"stdin": "40 2", "stdout": "42"}]


@needs_bwrap
@pytest.mark.parametrize("language", [  # ten tsc runs: a minute on a loaded 2-core machine
    pytest.param(lang, marks=pytest.mark.slow) if lang == "typescript" else lang for lang in sorted(SUM)])
def test_new_languages_judge_stdin_stdout_and_rewards_take_the_rows_language(language):
    code = {"typescript": "ts", "php": "php", "csharp": "cs"}[language]
    _need(code)
    assert check(SUM[language], CASES, language=language).passed
    wrong = SUM[language].replace("+", "-", 1) if language != "typescript" else SUM[language].replace("] + l", "] - l")
    assert check(wrong, CASES, language=language).status == "wrong_answer"
    broken = "this is not a program {" if language != "php" else "<?php\nfunction ( {\n"
    assert check(broken, CASES, language=language).status == "compile_error"
    # GRPO / RFT rows in this language: untagged fences, so only the `language` column can say
    completions = [f"```\n{SUM[language]}```", f"```\n{wrong}```", f"```\n{broken}\n```"]
    assert unit_test_reward(completions, tests=[CASES] * 3, language=[language] * 3) == [1.0, 0.0, 0.0]
    assert compile_reward(completions, language=[language] * 3) == [1.0, 1.0, 0.0]
    # without the column the untagged code would be taken as Python and never compile
    assert compile_reward(completions[:1]) == [0.0]


@needs_bwrap
def test_grpo_rows_in_other_languages_are_rewarded_in_their_language(tmp_path):
    from coder_align.data.grpo_rows import read_tasks

    codes = [c for c in ("ts", "php", "cs") if toolchain_available(multilingual.SETTINGS[c].language)]
    if not codes:
        pytest.skip("no TypeScript, PHP or C# toolchain here")
    names = {"ts": "typescript", "php": "php", "cs": "csharp"}
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"task_id": f"sum-{c}", "language": names[c], "stdin_stdout": CASES,
                                        "instruction": f"Read two integers, print their sum, in {names[c]}."}) + "\n"
                            for c in codes))
    tasks, _ = read_tasks(str(path), training=True)
    assert [t["language"] for t in tasks] == [names[c] for c in codes]
    right = [f"```{names[c]}\n{SUM[names[c]]}```" for c in codes]
    wrong = ["```\nprint(3)\n```" for _ in codes]  # Python: compiles as Python, not as the row's language
    scores = unit_test_reward(right + wrong, tests=[t["tests"] for t in tasks] * 2,
                              language=[t["language"] for t in tasks] * 2)
    assert scores == [1.0] * len(codes) + [0.0] * len(codes)


@needs_bwrap
def test_csharp_failed_debug_assert_fails_the_program():
    _need("cs")
    source = "using System.Diagnostics;\nclass Problem {\n    public static long F() { return 1; }\n"
    tests = "    public static void Main(string[] args) {\n    Debug.Assert(F() == {x});\n    }\n}\n"
    assert check(source, tests.replace("{x}", "1"), language="csharp").passed
    report = check(source, tests.replace("{x}", "2"), language="csharp")
    assert not report.passed and report.status == "runtime_error" and report.isolation == "exit_status"


# --- installing the toolchains ----------------------------------------------------------------

def _install_script(tmp_path, uid: str, **env):
    """scripts/install_sandbox_deps.sh with fake id/apt-get/bwrap (as tests/test_install.py)."""
    import subprocess

    bin_dir, log = tmp_path / "bin", tmp_path / "apt.log"
    bin_dir.mkdir(exist_ok=True)
    log.unlink(missing_ok=True)
    for name, body in (("id", f"echo {uid}"), ("apt-get", f'echo "$@" >> {log}'), ("bwrap", "exit 0")):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    script = Path(__file__).resolve().parents[1] / "scripts" / "install_sandbox_deps.sh"
    result = subprocess.run(["/bin/sh", str(script)], capture_output=True, text=True, env={"PATH": str(bin_dir), **env})
    return result, (log.read_text() if log.exists() else "")


def test_install_script_names_the_toolchains_and_installs_them_on_request(tmp_path):
    result, apt = _install_script(tmp_path, "0")
    assert result.returncode == 0 and apt == ""  # by default only said, never installed
    assert "apt-get install -y --no-install-recommends node-typescript php-cli mono-mcs" in result.stderr
    result, apt = _install_script(tmp_path, "0", TOOLCHAINS="install")
    assert result.returncode == 0
    assert "install -y -qq --no-install-recommends node-typescript php-cli mono-mcs" in apt
    result, apt = _install_script(tmp_path, "1000", TOOLCHAINS="install")  # not root: the command, no apt
    assert apt == "" and "sudo apt-get install" in result.stderr


def test_sandbox_servers_take_test_programs_in_other_languages():
    """A multilingual job goes to sandbox servers as it runs here: the client and the server
    both accept a test program for a non-Python language, and still refuse asserts for it."""
    from coder_align.sandbox import remote
    from coder_align.sandbox.server.config import ServeConfig
    from coder_align.sandbox.server.jobs import BadRequest, validate_check_job

    job = {"source": "long add(long x, long y) {\n    return x + y;\n", "tests": "}\nint main() {}\n",
           "language": "cpp"}
    assert remote.validate(job)["language"] == "cpp"
    assert validate_check_job(job, ServeConfig())["tests"] == job["tests"]
    asserts = dict(job, tests=["assert add(1, 2) == 3"])
    with pytest.raises(ValueError, match="test program or a list of"):
        remote.validate(asserts)
    with pytest.raises(BadRequest, match="test program or a list of"):
        validate_check_job(asserts, ServeConfig())
