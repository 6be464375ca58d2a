"""Turning the three test formats into jobs, and judging their results on the host.

- MBPP-style asserts: `assert <expr> == <literal>` (either side) becomes a *value test*:
  only `<expr>` enters the sandbox, the literal stays here and the comparison runs here on
  plain decoded values. Any other assert is a *statement test*, run in the sandboxed test
  process against proxies of the candidate's functions.
- A HumanEval-style program (`def check(candidate): ...` + a call) is one statement test.
- Direct calls: when all the tests need from the candidate is calls with literal arguments
  (`f(1) == 2`, `abs(f(1) - 0.5) < 1e-6`, HumanEval programs made of such asserts), no test
  code runs in the sandbox at all: the candidate process makes the calls itself and sends
  back the values, and the asserts are decided here (`hostcheck.py`), as the test process
  would decide them. No test process, no proxy round trips, no expected value in the sandbox.
- stdin/stdout cases: one run per case, stdout compared here (`outputs_match`).
"""

from __future__ import annotations

import ast
import builtins
import functools
import math
import reprlib
import sys
from dataclasses import dataclass

from coder_align.sandbox import codec
from coder_align.sandbox.hostcheck import Call, HostExpr, Missing, evaluate, host_expr, truth

__all__ = ["Call", "ValueTest", "StatementTest", "PythonTests", "parse_python_tests", "encoded_calls",
           "results_of_calls", "values_equal", "is_io_cases", "outputs_match"]


@dataclass
class ValueTest:
    source: str  # the assert as written, for reports
    expr: str  # evaluated in the sandbox
    expected: object  # never leaves the host
    host: HostExpr | None = None  # `expr`, if it can be evaluated here from direct calls


@dataclass
class StatementTest:
    source: str
    # its asserts' expressions, if each can be decided here from direct calls: the same
    # verdict as running it (in order; the first that fails or raises decides)
    host: tuple[HostExpr, ...] | None = None


@dataclass
class PythonTests:
    setup: str
    tests: list
    entry_points: list[str]

    def direct_calls(self) -> list[Call] | None:
        """Every candidate call the tests make, in order, if the host can decide every test
        from their values (and the setup only imports); else None."""
        if not _only_stdlib_imports(self.setup):
            return None
        calls = []
        for test in self.tests:
            exprs = (test.host,) if isinstance(test, ValueTest) else test.host
            if exprs is None or None in exprs:
                return None
            for expr in exprs:
                if expr.functions & set(self.entry_points):
                    return None  # the test process would call the candidate's `len`, not ours
                calls += expr.calls
        return calls


def _literal(node: ast.expr):
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _called_name(node: ast.expr) -> str | None:
    return node.func.id if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) else None


def _stdlib_modules(node: ast.stmt) -> dict[str, str] | None:
    """{bound name: module} for an import of stdlib modules only, else None."""
    if isinstance(node, ast.Import) and all(a.name.split(".")[0] in sys.stdlib_module_names for a in node.names):
        return {(a.asname or a.name.split(".")[0]): (a.name if a.asname else a.name.split(".")[0]) for a in node.names}
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
            and node.module.split(".")[0] in sys.stdlib_module_names:
        return {(a.asname or a.name): f"{node.module}.{a.name}" for a in node.names}
    return None


@functools.lru_cache(maxsize=256)
def _setup_modules(setup: str) -> dict[str, str] | None:
    """The names a setup of stdlib imports binds, or None if it does anything else (a
    stdlib import cannot fail, and binds nothing a literal-only call could use)."""
    try:
        found = [_stdlib_modules(node) for node in ast.parse(setup).body]
    except SyntaxError:
        return None
    return None if None in found else {k: v for d in found for k, v in d.items()}


def _only_stdlib_imports(setup: str) -> bool:
    return _setup_modules(setup) is not None


def _program_host(tree: ast.Module) -> tuple[HostExpr, ...] | None:
    """A HumanEval program's asserts as HostExprs, if it is only `def check(c):` with asserts
    the host can decide (about `c(<literals>)` calls), then `check(<name>)`, plus docstrings,
    literal assignments (METADATA) and stdlib imports; else None."""
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
    modules = {}
    for node in tree.body:  # nothing else may run, or rebind the names the program uses
        if node is fn or node is calls_of_check[0] or _is_docstring(node):
            continue
        bound = _stdlib_modules(node)
        if bound is None and isinstance(node, ast.Assign) and _literal(node.value)[0] \
                and all(isinstance(t, ast.Name) for t in node.targets):
            bound = {t.id: None for t in node.targets}  # HumanEval's METADATA = {...}
        if bound is None or {entry, "check", param} & set(bound):
            return None
        modules.update({k: v for k, v in bound.items() if v})
    exprs = []
    for node in fn.body:
        if _is_docstring(node) or isinstance(node, ast.Pass):
            continue
        if not isinstance(node, ast.Assert) or not _plain_message(node):
            return None
        # the candidate's function, by the parameter's name or its own (HumanEval 33)
        expr = host_expr(node.test, {param: entry, entry: entry}, modules)
        if expr is None:
            return None
        exprs.append(expr)
    return tuple(exprs) or None


def _plain_message(node: ast.Assert) -> bool:
    # A failing assert evaluates its message, which may call the candidate again (HumanEval
    # 77: `"error: " + str(candidate(1))`): only the test process makes exactly those calls.
    return node.msg is None or isinstance(node.msg, ast.Constant)


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
        return PythonTests(setup="", tests=[StatementTest(tests, _program_host(tree))], entry_points=entry)
    setup, parsed, asserted, entry = [], [], [], []
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
        single = body[0].test if len(body) == 1 and isinstance(body[0], ast.Assert) else None
        plain = single is not None and _plain_message(body[0])
        if isinstance(single, ast.Compare) and _is_eq(single):
            left, right = single.left, single.comparators[0]
            for expr, other in ((left, right), (right, left)):
                ok, value = _literal(other)
                if ok and not _literal(expr)[0]:
                    parsed.append(ValueTest(text, ast.unparse(expr), value))
                    asserted.append(expr)
                    break
            else:
                parsed.append(StatementTest(text))
                asserted.append(single if plain else None)
        else:
            parsed.append(StatementTest(text))
            asserted.append(single if plain else None)
        # The function under test may share a builtin's name (MBPP 126: `assert sum(10,15) == 6`),
        # but a candidate's `set` must not stand in for the builtin in `set(f(x)) == set(y)`:
        # builtins count as entry points only in a test that calls no other function.
        called = [n for node in ast.walk(ast.Module(body=body, type_ignores=[]))
                  for n in [_called_name(node)] if n]
        own = [n for n in called if not hasattr(builtins, n)]
        entry += own or called
    if not parsed:
        raise ValueError("no assert statements among the tests")
    setup_text, entry = "\n".join(setup), sorted(set(entry))
    # the candidate's names are the entry points (as in the test process); the setup's
    # imports name the modules an assert may use (`math.isclose`)
    modules = _setup_modules(setup_text) or {}
    for test, node in zip(parsed, asserted):
        found = None if node is None else host_expr(node, {name: name for name in entry}, modules)
        if isinstance(test, ValueTest):
            test.host = found
        else:
            test.host = None if found is None else (found,)
    return PythonTests(setup=setup_text, tests=parsed, entry_points=entry)


def encoded_calls(spec: PythonTests) -> list | None:
    """The job's `calls` ([name, args, kwargs] in the codec) when the tests allow direct
    calls, else None (the tests then run in a test process). Kept on the (cached) spec:
    GRPO groups and pass@k samples send the same calls many times."""
    if "_encoded_calls" not in spec.__dict__:
        calls = spec.direct_calls()
        try:
            encoded = None if calls is None else [[c.name, codec.encode(list(c.args)), codec.encode(c.kwargs)]
                                                  for c in calls]
        except codec.Unserialisable:
            encoded = None
        spec.__dict__["_encoded_calls"] = encoded
    return spec.__dict__["_encoded_calls"]


def results_of_calls(tests: list, replies, strict: bool = True) -> list:
    """Per-test results, as the test process would have reported them, from the candidate's
    replies to direct calls (checked by the worker; missing ones are None)."""
    replies = list(replies) if isinstance(replies, list) else []
    results, i = [], 0
    for test in tests:
        exprs = (test.host,) if isinstance(test, ValueTest) else test.host
        n = sum(len(e.calls) for e in exprs)
        mine, i = replies[i:i + n] + [None] * max(0, i + n - len(replies)), i + n
        results.append(_value_result(test.host, mine, strict) if isinstance(test, ValueTest)
                       else _statement_result(exprs, mine, strict))
    return results


def _value_result(expr: HostExpr, replies: list, strict: bool) -> dict | None:
    try:
        return {"value": codec.encode(evaluate(expr, replies, strict))}
    except Missing:
        return None
    except Exception as e:  # as the test process records an assert that raised
        return {"error": f"{type(e).__name__}: {e}"[:2000]}


def _statement_result(exprs: tuple, replies: list, strict: bool) -> dict | None:
    # in order, as the asserts run: the first that fails or raises decides
    for expr in exprs:
        mine, replies = replies[:len(expr.calls)], replies[len(expr.calls):]
        try:
            if not truth(evaluate(expr, mine, strict), strict):
                got = ", ".join(_short(codec.decode(r["ok"])) for r in mine if r and "ok" in r)
                return {"error": f"AssertionError: got {got}" if got else "AssertionError: "}
        except Missing:
            return None
        except Exception as e:
            return {"error": f"{type(e).__name__}: {e}"[:2000]}
    return {"ok": True}


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 200
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = _REPR.maxdict = 30


def short_repr(value) -> str:
    """At most ~200 characters of `value`'s repr, computed from that much of it (a million
    items or a 5,000-digit int from the candidate cost no more than a small value)."""
    try:
        text = _REPR.repr(value)
    except ValueError:  # an int past sys.get_int_max_str_digits
        text = f"<int of {value.bit_length()} bits>" if isinstance(value, int) else f"<{type(value).__name__}>"
    return text if len(text) <= 200 else text[:200] + "..."


_short = short_repr


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
