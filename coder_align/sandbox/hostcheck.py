"""Asserts the host can decide by itself once it has the values of the candidate's calls in them.

An assert qualifies when all it needs from the candidate are calls with literal arguments
(`f(1, "a")`). The candidate process answers those calls, handed to it one at a time,
and sends back their values (`harness._answer_calls`, "direct calls"); the rest of the
assert is evaluated here, on the plain decoded values, with the same Python operations the
sandboxed test process would use,
so the verdict is the same, without a test process and without the expected values ever
entering the sandbox:

    f(1) == 2          abs(f(1) - 0.5) < 1e-6          math.isclose(f(1), 2.5, rel_tol=1e-3)
    f(1)    not f(1)   f(1) is True    set(f(1)) == {1, 2}    len(f(1)) == 3    f(3 * 19) == 57

What may run here: comparisons, `not`, unary minus, `+`, `-`, `/`, `//` and the functions in
FUNCTIONS (in the shapes `_shape_ok` allows), on values that are builtin literals (or
`codec.Opaque` for anything else the candidate returned): none can run the candidate's
code, and none can be made to do work whose size the candidate picks: no `*`, `%`, `**` or
shifts on a value from the candidate, no `sum(x, [])`, no `round(x, n)` with an n of its
own; values are bounded by the codec (items, depth, no range longer than a list could be)
and sets are built only from members that do not share hashes (`codec.check_hashes`).
Arithmetic on constants in the test itself (`3 * 19`, `2.0 / 3.0`) is folded when the
parse happens, within small bounds. Anything else (loops, helper functions, `random`) runs
in the test process as before.
"""

from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass, field

from coder_align.sandbox import codec, harness


@dataclass(frozen=True)
class Call:
    """`name(*args, **kwargs)` with literal arguments, as a test wrote it."""
    name: str
    args: tuple
    kwargs: dict


@dataclass(frozen=True)
class HostExpr:
    """An expression of a test, ready to evaluate here given its calls' values."""
    form: tuple  # see `_form`
    calls: tuple  # the candidate calls in it, in the order Python evaluates them
    functions: frozenset = field(default_factory=frozenset)  # names of FUNCTIONS it uses


# Pure, and bounded by the size of their arguments (which the codec bounds) in the shapes
# `_shape_ok` lets through: no `sum(x, [])` (quadratic in a list of lists), no `round(x, n)`
# with a large or non-constant n (10 ** n), no key functions.
def _bounded_set(kind):
    def build(values=()):
        items = list(values)
        codec.check_hashes(items)  # members chosen to share a hash would take quadratic time
        return kind(items)

    build.__name__ = kind.__name__
    return build


FUNCTIONS = {f.__name__: f for f in (abs, len, _bounded_set(set), _bounded_set(frozenset), tuple, list, sorted,
                                     sum, min, max, round)}
MODULE_FUNCTIONS = {("math", "isclose"): math.isclose}
COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
           ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
           ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}
ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Div: operator.truediv,
              ast.FloorDiv: operator.floordiv}
FOLDABLE = {**ARITHMETIC, ast.Mult: operator.mul, ast.Mod: operator.mod, ast.Pow: operator.pow}
MAX_FOLDED_BITS = 4096
MAX_FOLDED_LEN = 10_000


class Missing(Exception):
    """A call whose value never came back (the candidate died or ran out of time)."""


def host_expr(node: ast.expr, callees: dict[str, str], modules: dict[str, str]) -> HostExpr | None:
    """`node` as a HostExpr if everything in it but calls of `callees` (with literal
    arguments) can be evaluated here; else None. `callees`: the names in the test of the
    candidate's functions -> their names in the candidate (HumanEval's `candidate` -> the
    entry point); `modules`: names bound to stdlib modules."""
    calls, functions = [], set()
    form = _form(node, callees, modules, calls, functions)
    return None if form is None else HostExpr(form, tuple(calls), frozenset(functions))


def _form(node, callees, modules, calls, functions):
    """Nested tuples: ("const", v), ("call", i), ("fn", f, args, kwargs), ("cmp", op, a, b),
    ("bin", op, a, b), ("not", a), ("neg", a); None if `node` is not of these."""
    ok, value = fold(node)
    if ok:
        return ("const", value)
    recurse = lambda n: _form(n, callees, modules, calls, functions)  # noqa: E731
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Name) and node.func.id in callees:
            call = literal_call(node)
            if call is None:
                return None
            calls.append(Call(callees[node.func.id], call.args, call.kwargs))
            return ("call", len(calls) - 1)
        fn = _function(node.func, modules)
        if fn is None or any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            return None
        if isinstance(node.func, ast.Name):
            functions.add(node.func.id)
        args = [recurse(a) for a in node.args]
        kwargs = [(k.arg, recurse(k.value)) for k in node.keywords]
        if None in args or any(v is None for _, v in kwargs) or not _shape_ok(fn, args, dict(kwargs)):
            return None
        return ("fn", fn, tuple(args), tuple(kwargs))
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in COMPARE:
        if isinstance(node.ops[0], (ast.Is, ast.IsNot)) and not any(
                isinstance(n, ast.Constant) and n.value in (None, True, False) for n in (node.left, *node.comparators)):
            return None  # identity only against the singletons, which decoding preserves
        left, right = recurse(node.left), recurse(node.comparators[0])
        return None if left is None or right is None else ("cmp", COMPARE[type(node.ops[0])], left, right)
    if isinstance(node, ast.BinOp) and type(node.op) in ARITHMETIC:
        left, right = recurse(node.left), recurse(node.right)
        return None if left is None or right is None else ("bin", ARITHMETIC[type(node.op)], left, right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        operand = recurse(node.operand)
        return None if operand is None else ("not" if isinstance(node.op, ast.Not) else "neg", operand)
    return None


def _shape_ok(fn, args: list, kwargs: dict) -> bool:
    """Whether `fn(*args, **kwargs)` (forms) is a call whose cost the values bound."""
    const = lambda form: form[0] == "const"  # noqa: E731
    if fn in (min, max):
        return bool(args) and not kwargs
    if fn is math.isclose:
        return len(args) == 2 and set(kwargs) <= {"rel_tol", "abs_tol"} and all(map(const, kwargs.values()))
    if fn is round:
        digits = args[1:] + list(kwargs.values())
        return len(args) in (1, 2) and set(kwargs) <= {"ndigits"} and len(digits) <= 1 and all(
            const(d) and type(d[1]) is int and abs(d[1]) <= 100 for d in digits)
    if fn is sorted:
        return len(args) == 1 and set(kwargs) <= {"reverse"} and all(map(const, kwargs.values()))
    return len(args) <= 1 and not kwargs  # abs, len, set, frozenset, tuple, list, sum


def _function(func: ast.expr, modules: dict[str, str]):
    if isinstance(func, ast.Name):
        return FUNCTIONS.get(func.id)
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in modules:
        return MODULE_FUNCTIONS.get((modules[func.value.id], func.attr))
    return None


def literal_call(node: ast.expr) -> Call | None:
    """`node` as a Call if it is `name(<constant>, ..., key=<constant>)`, else None."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        return None
    args, kwargs = [], {}
    for arg in node.args:
        ok, value = (False, None) if isinstance(arg, ast.Starred) else fold(arg)
        if not ok:
            return None
        args.append(value)
    for kw in node.keywords:
        ok, value = (False, None) if kw.arg is None else fold(kw.value)
        if not ok:
            return None
        kwargs[kw.arg] = value
    return Call(node.func.id, tuple(args), kwargs)


def fold(node: ast.expr):
    """(True, value) if `node` is a literal, or arithmetic on literals with a small result
    (`3 * 19`, `'ab' + 'c'`, `(2.0 / 3.0, -1)`), computed as Python would; else (False, None)."""
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        items = [fold(e) for e in node.elts]
        if not all(ok for ok, _ in items):
            return False, None
        values = [v for _, v in items]
        try:
            return True, {ast.Tuple: tuple, ast.List: list, ast.Set: set}[type(node)](values)
        except TypeError:  # an unhashable set member: let the test process raise it
            return False, None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        ok, value = fold(node.operand)
        if ok and isinstance(value, (int, float, complex)):
            return True, -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp) and type(node.op) in FOLDABLE:
        (ok_l, left), (ok_r, right) = fold(node.left), fold(node.right)
        if ok_l and ok_r and _small_enough(node.op, left, right):
            try:
                value = FOLDABLE[type(node.op)](left, right)
            except (ArithmeticError, TypeError, ValueError):
                return False, None  # the test process would raise: let it
            if not (isinstance(value, int) and value.bit_length() > MAX_FOLDED_BITS):
                return True, value
    return False, None


def _small_enough(op: ast.operator, left, right) -> bool:
    numbers = (int, float, complex)
    if isinstance(left, numbers) and isinstance(right, numbers):
        if isinstance(op, ast.Pow):
            return isinstance(right, int) and abs(right) <= 256 and not (
                isinstance(left, int) and left.bit_length() * abs(right) > MAX_FOLDED_BITS)
        return True
    if isinstance(op, ast.Add) and type(left) is type(right) and isinstance(left, (str, bytes, tuple, list)):
        return len(left) + len(right) <= MAX_FOLDED_LEN
    if isinstance(op, ast.Mult) and isinstance(left, (str, bytes, tuple, list)) and type(right) is int:
        return len(left) * right <= MAX_FOLDED_LEN
    return False


# ---- evaluation -------------------------------------------------------------------------


def evaluate(expr: HostExpr, replies: list, strict: bool):
    """The value of `expr` given the replies to its calls (None for one that never came),
    as the test process would compute it: a call that raised raises the same exception
    here; Missing for a missing reply."""
    return _value(expr.form, replies, strict)


def _value(form: tuple, replies: list, strict: bool):
    kind = form[0]
    if kind == "const":
        return form[1]
    if kind == "call":
        reply = replies[form[1]]
        if reply is None:
            raise Missing()
        if "exc" in reply:
            raise harness.passable_exception(*reply["exc"])
        return codec.decode(reply["ok"])
    if kind == "fn":
        return form[1](*[_value(a, replies, strict) for a in form[2]],
                       **{k: _value(v, replies, strict) for k, v in form[3]})
    if kind in ("cmp", "bin"):
        left = _value(form[2], replies, strict)  # left first, as Python evaluates
        return form[1](left, _value(form[3], replies, strict))
    if kind == "not":
        return not truth(_value(form[1], replies, strict), strict)
    return -_value(form[1], replies, strict)  # "neg"


def truth(value, strict: bool) -> bool:
    """`bool(value)` as the test process takes it: the candidate's word for an Opaque
    object only with `strict` off (see `codec.Opaque`)."""
    if type(value) is not codec.Opaque:
        return bool(value)
    if not strict:
        return value.truthy
    if value.type_name in codec.Opaque.FIXED_TRUTH:
        return codec.Opaque.FIXED_TRUTH[value.type_name]
    raise TypeError(f"strict mode: a {value.type_name} object from the candidate reached a "
                    "truth test; only builtin values (bool, int, str, ...) can")
