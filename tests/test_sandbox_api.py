"""The sandbox's public API: statuses, benign programs that must pass, the codec, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest

from _sandbox_util import REPO, wait_no_survivors
from coder_align.sandbox import check, check_many, codec, compile_check, find_bwrap, outputs_match, run
from coder_align.sandbox.testcases import StatementTest, ValueTest, parse_python_tests

needs_bwrap = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap not installed")

BENIGN = {
    "chatty_output": "for i in range(100000): print('line', i)\ndef f(x): return x + 1",
    "binary_output": "import sys\nsys.stdout.buffer.write(bytes(range(256)) * 100)\ndef f(x): return x + 1",
    "few_hundred_mb": "def f(x):\n    b = bytearray(300 << 20)\n    b[-1] = 1\n    return x + b[-1]",
    "temp_files": (
        "import tempfile, os\ndef f(x):\n    with tempfile.NamedTemporaryFile('w+', delete=False) as fh:\n"
        "        fh.write(str(x + 1))\n    open('local.txt', 'w').write('y')\n    return int(open(fh.name).read())"),
    "deep_recursion": "def depth(n): return 0 if n == 0 else 1 + depth(n - 1)\ndef f(x): return x + 1 + depth(900) - 900",
    "threads": (
        "import threading\ndef f(x):\n    out = []\n    ts = [threading.Thread(target=out.append, args=(1,)) for _ in range(8)]\n"
        "    [t.start() for t in ts]; [t.join() for t in ts]\n    return x + len(out) - 7"),
    "subprocess": "import subprocess\ndef f(x): return x + int(subprocess.check_output(['echo', '1']))",
    "generator_result": "def g(x): yield x + 1\ndef f(x): return next(g(x))",
    "stdlib_imports": "import collections, heapq, itertools, re, math\ndef f(x): return math.floor(x) + 1",
}


@needs_bwrap
@pytest.mark.parametrize("name", sorted(BENIGN))
def test_benign_programs_pass(name):
    report = check(BENIGN[name], ["assert f(41) == 42", "assert f(1) == 2"], timeout=10)
    assert report.passed, report
    assert report.status == "ok"
    assert wait_no_survivors() == []


@needs_bwrap
def test_run_statuses():
    assert run("print('hi')").stdout == "hi\n"
    assert run("print(input())", stdin="abc\n").stdout == "abc\n"
    assert run("input()").status == "runtime_error"  # stdin is empty by default
    assert run("import sys; sys.exit(3)").exit_code == 3
    assert run("raise ValueError('x')").status == "runtime_error"
    assert run("def f(:").status == "compile_error"
    assert run("while True: pass", timeout=1).status == "timeout"


@needs_bwrap
def test_check_reports_each_assert_and_status():
    src = "def add(a, b): return a + b"
    report = check(src, ["assert add(1, 2) == 3", "assert add(2, 2) == 5", "assert add(0.1, 0.2) == 0.30000000000000004"])
    assert (report.n_passed, report.n_total, report.status) == (2, 3, "wrong_answer")
    assert [d.passed for d in report.details] == [True, False, True]
    assert report.isolation == "host_compare"
    assert check("def add(a, b): raise KeyError(a)", ["assert add(1, 2) == 3"]).status == "runtime_error"
    assert check("def add(a, b:", ["assert add(1, 2) == 3"]).status == "compile_error"


@needs_bwrap
def test_statement_asserts_and_literal_types():
    src = "def f(x): return (x, [x], {x: x}, {x}, b'x', None)"
    report = check(src, [
        "assert f(1) == (1, [1], {1: 1}, {1}, b'x', None)",
        "assert f(1) != [1]",  # a tuple is not a list: types survive the codec
        "assert isinstance(f(1), tuple) and len(f(1)) == 6",
    ])
    assert report.passed, report
    assert report.isolation == "split_process"
    truthy = "import re\ndef m(s): return re.search('a', s)"
    assert check(truthy, ["assert m('cat')", "assert not m('dog')"]).passed  # a match is always true
    # any other object's truthiness is the candidate's word: only non-strict checks take it
    rigged = "class Yes:\n    def __bool__(self): return True\ndef m(s): return Yes()"
    assert check(rigged, ["assert m('cat')"], strict=False).passed
    strict = check(rigged, ["assert m('cat')"])
    assert not strict.passed and "strict mode" in strict.details[0].error, strict


@needs_bwrap
def test_candidate_cannot_shadow_builtins_used_by_tests():
    src = "def abs(v): return 0\ndef f(x): return 999"
    assert not check(src, ["assert abs(f(1) - 2) < 1e-9"]).passed
    # ...but a function under test may share a builtin's name (MBPP 126)
    assert check("def sum(a, b): return a * b", ["assert sum(2, 3) == 6"]).passed


@needs_bwrap
def test_humaneval_style_program():
    tests = "def check(candidate):\n    assert candidate([1, 2]) == 3\n    assert candidate([]) == 0\n\ncheck(total)\n"
    assert check("def total(xs): return sum(xs)", tests).passed
    assert not check("def total(xs): return 3", tests).passed


@needs_bwrap
def test_io_cases():
    src = "a, b = map(float, input().split())\nprint(a / b)\nprint()\n"
    cases = [{"stdin": "1 3", "stdout": "0.3333"}, {"stdin": "4 2", "stdout": "2.0\n"}]
    assert not check(src, cases).passed
    assert check(src, cases, float_tolerance=1e-3).passed
    assert check("print(1)\nprint(2)", [{"stdout": "1\n2"}]).passed
    assert not check("print(1)\nprint(2)\nprint(3)", [{"stdout": "1\n2"}]).passed


@needs_bwrap
def test_check_many_keeps_order_and_is_concurrent():
    jobs = [{"source": f"def f(): return {i}", "tests": [f"assert f() == {i if i % 3 else -1}"]} for i in range(30)]
    reports = check_many(jobs, workers=2)
    assert [r.passed for r in reports] == [bool(i % 3) for i in range(30)]
    bad = check_many([{"source": "x", "tests": "not python ("}], return_exceptions=True)
    assert bad[0].status == "unavailable" and "SyntaxError" in bad[0].error


@needs_bwrap
def test_compile_check_python():
    assert compile_check("def f(): return 1").status == "ok"
    assert compile_check("def f(: return 1").status == "compile_error"
    assert compile_check("import no_such_module_xyz").status == "ok"
    assert compile_check("import no_such_module_xyz", import_check=True).status == "runtime_error"


def test_missing_bwrap_names_the_package(monkeypatch):
    import coder_align.sandbox as sb
    import coder_align.sandbox.bwrap as bw
    import coder_align.sandbox.local as local

    monkeypatch.setattr(sb, "find_bwrap", lambda: None)
    monkeypatch.setattr(bw, "find_bwrap", lambda: None)
    with pytest.raises(sb.SandboxUnavailable, match="bubblewrap"):
        sb.run("print(1)")
    local._warned.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert sb.run("print(1)", allow_unsandboxed=True).stdout == "1\n"
        assert sb.check("def f(): return 1", ["assert f() == 1"], allow_unsandboxed=True).passed
        assert not sb.check("import sys\nsys.exit(0)", ["assert f() == 1"], allow_unsandboxed=True).passed
    assert sum("WITHOUT a sandbox" in str(w.message) for w in caught) == 1  # warned once


def test_parse_python_tests():
    spec = parse_python_tests(["import math", "assert f(1) == [1, 2]", "assert 3 == g(2)", "assert h(1)"])
    assert spec.setup == "import math"
    assert [type(t) for t in spec.tests] == [ValueTest, ValueTest, StatementTest]
    assert spec.tests[0].expr == "f(1)" and spec.tests[0].expected == [1, 2]
    assert spec.tests[1].expr == "g(2)" and spec.tests[1].expected == 3
    assert set(spec.entry_points) == {"f", "g", "h"}
    with pytest.raises(ValueError, match="no assert"):
        parse_python_tests(["import math"])


def test_codec_round_trip_and_refusals():
    value = [1, 2.5, float("inf"), "s", b"b", (1, (2,)), {3}, frozenset({4}), {"k": [None, True]}, 1j]
    out = codec.decode(json.loads(json.dumps(codec.encode(value))))
    assert out == value and type(out[5]) is tuple
    assert codec.decode(codec.encode(float("nan"))) != codec.decode(codec.encode(float("nan")))

    class Rigged(int):
        def __eq__(self, other):
            return True
    assert type(codec.decode(codec.encode(Rigged(5)))) is int
    with pytest.raises(codec.Unserialisable):
        codec.encode(object())
    with pytest.raises(ValueError):
        codec.decode({"$evil": 1})


def test_frames_read_as_json_loads_reads_them():
    # the C scanner the candidate reads its direct calls with: the values json.loads gives;
    # garbage, trailing data and (never written by encode_json) surrounding space refused
    call = ["f", codec.encode([1, 2.5, "é", {"k": None}]), codec.encode({"x": [True]})]
    body = codec.encode_json(call).encode()
    assert codec.decode_json(body) == json.loads(body) == call
    assert codec.decode_json(bytearray(body)) == call
    for bad in (b"", b"[1] [2]", b"[1,", b"nope", b" [1]"):
        with pytest.raises(ValueError):
            codec.decode_json(bad)


def test_outputs_match():
    assert outputs_match("a  b\n\n\n", "a b")
    assert not outputs_match("a b\nc", "a b")
    assert not outputs_match("1.0", "1")
    assert outputs_match("1.0", "1", float_tolerance=1e-9)


@needs_bwrap
def test_cli_prints_json(tmp_path):
    src = tmp_path / "sol.py"
    src.write_text("def f(x): return x * 2\n")
    tests = tmp_path / "tests.json"
    tests.write_text(json.dumps(["assert f(2) == 4", "assert f(3) == 7"]))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "coder_align.cli", "sandbox", "check", str(src), "--tests", str(tests)],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 1, out.stderr  # not all passed
    report = json.loads(out.stdout)
    assert (report["n_passed"], report["n_total"]) == (1, 2)
