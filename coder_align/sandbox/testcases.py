"""Turning the three test formats into jobs, and judging their results on the host.

- MBPP-style asserts: `assert <expr> == <literal>` (either side) becomes a *value test*:
  only `<expr>` enters the sandbox, the literal stays here and the comparison runs here on
  plain decoded values. Any other assert is a *statement test*, run in the sandboxed test
  process against proxies of the candidate's functions.
- A HumanEval-style program (`def check(candidate): ...` + a call) is one statement test.
- stdin/stdout cases: one run per case, stdout compared here (`outputs_match`).
"""

from __future__ import annotations

import ast
import builtins
import functools
import math
from dataclasses import dataclass


@dataclass
class ValueTest:
    source: str  # the assert as written, for reports
    expr: str  # evaluated in the sandbox
    expected: object  # never leaves the host


@dataclass
class StatementTest:
    source: str


@dataclass
class PythonTests:
    setup: str
    tests: list
    entry_points: list[str]


def _literal(node: ast.expr):
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _called_name(node: ast.expr) -> str | None:
    return node.func.id if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) else None


def parse_python_tests(tests) -> PythonTests:
    """A list of assert strings or one test program -> value and statement tests.

    Cached by the tests' text: GRPO groups and pass@k samples share their problem's tests,
    and a server validates a job before running it. Callers must not mutate the result."""
    if isinstance(tests, str):
        return _parse_cached(tests)
    if isinstance(tests, (list, tuple)) and all(isinstance(t, str) for t in tests):
        return _parse_cached(tuple(tests))
    return _parse(tests)


@functools.lru_cache(maxsize=4096)
def _parse_cached(tests) -> PythonTests:
    return _parse(tests if isinstance(tests, str) else list(tests))


def _parse(tests) -> PythonTests:
    if isinstance(tests, str):
        tree = ast.parse(tests)
        entry = [a.id for node in ast.walk(tree) if _called_name(node) == "check"
                 for a in node.args if isinstance(a, ast.Name)]
        return PythonTests(setup="", tests=[StatementTest(tests)], entry_points=entry)
    setup, parsed, entry = [], [], []
    for i, text in enumerate(tests):
        if not isinstance(text, str):
            raise TypeError(f"tests[{i}] must be a string, got {type(text).__name__}")
        try:
            body = ast.parse(text).body
        except SyntaxError as e:
            raise ValueError(f"tests[{i}] is not valid Python: {e}") from None
        if not any(isinstance(stmt, ast.Assert) for stmt in body):
            setup.append(text)  # e.g. "import math": preparation, not a test that can pass
            continue
        if len(body) == 1 and isinstance(body[0].test, ast.Compare) and _is_eq(body[0].test):
            cmp = body[0].test
            left, right = cmp.left, cmp.comparators[0]
            for expr, other in ((left, right), (right, left)):
                ok, value = _literal(other)
                if ok and not _literal(expr)[0]:
                    parsed.append(ValueTest(text, ast.unparse(expr), value))
                    break
            else:
                parsed.append(StatementTest(text))
        else:
            parsed.append(StatementTest(text))
        # The function under test may share a builtin's name (MBPP 126: `assert sum(10,15) == 6`),
        # but a candidate's `set` must not stand in for the builtin in `set(f(x)) == set(y)`:
        # builtins count as entry points only in a test that calls no other function.
        called = [n for node in ast.walk(ast.Module(body=body, type_ignores=[]))
                  for n in [_called_name(node)] if n]
        own = [n for n in called if not hasattr(builtins, n)]
        entry += own or called
    if not parsed:
        raise ValueError("no assert statements among the tests")
    return PythonTests(setup="\n".join(setup), tests=parsed, entry_points=sorted(set(entry)))


def _is_eq(cmp: ast.Compare) -> bool:
    return len(cmp.ops) == 1 and isinstance(cmp.ops[0], ast.Eq)


def values_equal(actual, expected) -> bool:
    """`==` on plain decoded values (both sides came from the codec or literal_eval)."""
    try:
        return bool(actual == expected)
    except Exception:
        return False


# ---- stdin/stdout ------------------------------------------------------------------------


def is_io_cases(tests) -> bool:
    return isinstance(tests, list) and bool(tests) and all(isinstance(t, dict) for t in tests)


def _lines(text: str) -> list[list[str]]:
    lines = [line.split() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _token_equal(a: str, b: str, tol: float | None) -> bool:
    if a == b:
        return True
    if tol is None:
        return False
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    if math.isnan(x) or math.isnan(y):
        return False
    return abs(x - y) <= tol * max(1.0, abs(y))


def outputs_match(actual: str, expected: str, float_tolerance: float | None = None) -> bool:
    """Per line, whitespace-insensitive; trailing blank lines ignored; extra or missing lines
    fail. With `float_tolerance`, numeric tokens match within that relative/absolute error.

    >>> outputs_match("1 2\\n3  \\n\\n", "1 2\\n3")
    True
    >>> outputs_match("1 2\\n3\\n4", "1 2\\n3")
    False
    >>> outputs_match("0.3333", "0.333333", float_tolerance=1e-3)
    True
    """
    got, want = _lines(actual), _lines(expected)
    if len(got) != len(want):
        return False
    return all(
        len(g) == len(w) and all(_token_equal(a, b, float_tolerance) for a, b in zip(g, w))
        for g, w in zip(got, want)
    )
