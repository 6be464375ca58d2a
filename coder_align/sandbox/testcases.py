"""Turning the three test formats into jobs, and judging their results on the host.

- MBPP-style asserts: `assert <expr> == <literal>` (either side) becomes a *value test*:
  only `<expr>` enters the sandbox, the literal stays here and the comparison runs here on
  plain decoded values. Any other assert is a *statement test*, run in the sandboxed test
  process against proxies of the candidate's functions.
- A HumanEval-style program (`def check(candidate): ...` + a call) is one statement test.
- Direct calls: when every test is `name(<literals>) == <literal>` (MBPP asserts, and
  HumanEval programs that are only such asserts), no test code has to run in the sandbox at
  all. The candidate process makes the calls itself and sends back the values, which are
  compared here: no test process, no proxy round trips, no expected value in the sandbox.
- stdin/stdout cases: one run per case, stdout compared here (`outputs_match`).
"""

from __future__ import annotations

import ast
import builtins
import functools
import math
import sys
from dataclasses import dataclass

from coder_align.sandbox import harness


@dataclass(frozen=True)
class Call:
    """`name(*args, **kwargs)` with literal arguments, as a test wrote it."""
    name: str
    args: tuple
    kwargs: dict


@dataclass
class ValueTest:
    source: str  # the assert as written, for reports
    expr: str  # evaluated in the sandbox
    expected: object  # never leaves the host
    call: Call | None = None  # when `expr` is a call with literal arguments


@dataclass
class StatementTest:
    source: str
    # a HumanEval program that is nothing but `assert candidate(<literals>) == <literal>`:
    # the same verdict as running it, from these calls and expected values in program order
    calls: list[tuple[Call, object]] | None = None


@dataclass
class PythonTests:
    setup: str
    tests: list
    entry_points: list[str]

    def direct_calls(self) -> list[Call] | None:
        """Every call the tests make, in order, if the tests are nothing but calls with
        literal arguments compared with literals (and imports); else None."""
        if not _only_stdlib_imports(self.setup):
            return None
        calls = []
        for test in self.tests:
            if isinstance(test, ValueTest) and test.call is not None:
                calls.append(test.call)
            elif isinstance(test, StatementTest) and test.calls is not None:
                calls += [call for call, _ in test.calls]
            else:
                return None
        return calls


def _literal(node: ast.expr):
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _called_name(node: ast.expr) -> str | None:
    return node.func.id if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) else None


def _literal_call(node: ast.expr, name: str | None = None) -> Call | None:
    """`node` as a Call if it is `name(<literal>, ..., key=<literal>)`, else None."""
    if _called_name(node) is None or (name is not None and node.func.id != name):
        return None
    args, kwargs = [], {}
    for arg in node.args:
        ok, value = (False, None) if isinstance(arg, ast.Starred) else _literal(arg)
        if not ok:
            return None
        args.append(value)
    for kw in node.keywords:
        ok, value = (False, None) if kw.arg is None else _literal(kw.value)
        if not ok:
            return None
        kwargs[kw.arg] = value
    return Call(node.func.id, tuple(args), kwargs)


def _imports_stdlib_only(node: ast.stmt) -> bool:
    if isinstance(node, ast.Import):
        return all(a.name.split(".")[0] in sys.stdlib_module_names for a in node.names)
    return isinstance(node, ast.ImportFrom) and node.level == 0 and bool(node.module) \
        and node.module.split(".")[0] in sys.stdlib_module_names


@functools.lru_cache(maxsize=256)
def _only_stdlib_imports(setup: str) -> bool:
    # setup no literal-only call can use; a stdlib import cannot fail either
    try:
        return all(_imports_stdlib_only(node) for node in ast.parse(setup).body)
    except SyntaxError:
        return False


def _program_calls(tree: ast.Module) -> list[tuple[Call, object]] | None:
    """A HumanEval program as (call, expected) pairs in order, if it is only `def check(c):`
    with `assert c(<literals>) == <literal>` statements, then `check(<name>)`; else None.

    Running it stops at the first failing assert; comparing the calls' values in order and
    stopping at the first mismatch gives the same verdict."""
    checks = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
    calls_of_check = [n for n in tree.body if isinstance(n, ast.Expr) and _called_name(n.value) == "check"]
    if len(checks) != 1 or len(calls_of_check) != 1 or tree.body.index(checks[0]) > tree.body.index(calls_of_check[0]):
        return None
    fn, call = checks[0], calls_of_check[0].value
    a = fn.args
    if fn.decorator_list or a.posonlyargs or a.vararg or a.kwonlyargs or a.kwarg or a.defaults or len(a.args) != 1:
        return None
    if call.keywords or len(call.args) != 1 or not isinstance(call.args[0], ast.Name):
        return None
    param, entry = a.args[0].arg, call.args[0].id
    for node in tree.body:  # nothing else may run, or rebind the names the program uses
        if node is fn or node is calls_of_check[0] or _is_docstring(node):
            continue
        if isinstance(node, ast.Assign) and _literal(node.value)[0] and all(
                isinstance(t, ast.Name) and t.id not in (entry, "check") for t in node.targets):
            continue  # HumanEval's METADATA = {...}
        return None
    pairs = []
    for node in fn.body:
        if _is_docstring(node) or isinstance(node, ast.Pass):
            continue
        if not isinstance(node, ast.Assert):
            return None
        test = node.test
        if isinstance(test, ast.Constant) and test.value is True:
            continue  # HumanEval's `assert True, "This prints if this assert fails"`
        if not (isinstance(test, ast.Compare) and _is_eq(test)):
            return None
        for expr, other in ((test.left, test.comparators[0]), (test.comparators[0], test.left)):
            found, ok_value = _literal_call(expr, param), _literal(other)
            if found is not None and ok_value[0]:
                pairs.append((Call(entry, found.args, found.kwargs), ok_value[1]))
                break
        else:
            return None
    return pairs or None


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


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
        return PythonTests(setup="", tests=[StatementTest(tests, _program_calls(tree))], entry_points=entry)
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
                    parsed.append(ValueTest(text, ast.unparse(expr), value, _literal_call(expr)))
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


def encoded_calls(spec: PythonTests) -> list | None:
    """The job's `calls` ([name, args, kwargs] in the codec) when the tests allow direct
    calls, else None (the tests then run in a test process)."""
    calls = spec.direct_calls()
    if calls is None:
        return None
    try:
        return [[c.name, harness.encode(list(c.args)), harness.encode(c.kwargs)] for c in calls]
    except harness.Unserialisable:
        return None


def results_of_calls(tests: list, replies) -> list:
    """Per-test results, as the test process would have reported them, from the candidate's
    replies to direct calls (checked by the worker; missing ones are None)."""
    replies = list(replies) if isinstance(replies, list) else []
    results, i = [], 0
    for test in tests:
        n = len(test.calls) if isinstance(test, StatementTest) else 1
        mine, i = replies[i:i + n] + [None] * max(0, i + n - len(replies)), i + n
        if isinstance(test, ValueTest):
            reply = mine[0]
            results.append(None if reply is None else
                           {"value": reply["ok"]} if "ok" in reply else {"error": _exception_text(reply)})
        else:
            results.append(_program_result(test.calls, mine))
    return results


def _program_result(calls: list, replies: list) -> dict | None:
    # like running the program: the first assert that fails (or call that raises) decides
    for (_, expected), reply in zip(calls, replies):
        if reply is None:
            return None
        if "exc" in reply:
            return {"error": _exception_text(reply)}
        try:
            actual = harness.decode(reply["ok"])
        except Exception as e:
            return {"error": f"RuntimeError: malformed value from candidate: {e}"}
        if not values_equal(actual, expected):
            text = repr(actual)
            return {"error": f"AssertionError: wrong value: got {text[:200]}{'...' if len(text) > 200 else ''}"}
    return {"ok": True}


def _exception_text(reply: dict) -> str:
    """What the test process would have recorded for a call that raised in the candidate."""
    try:
        exc = harness.passable_exception(*reply["exc"])
    except Exception as e:  # e.g. UnicodeDecodeError wants five arguments: the proxy fails so too
        exc = e
    return f"{type(exc).__name__}: {exc}"[:2000]


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
