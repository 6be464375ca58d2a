"""Small, plausible bugs planted in a correct solution, for reward-model data.

Where the policy rarely passes (the embedded model solves ~5% of MBPP), passing/failing
pairs are scarce; the reference solution and its mutants give both sides for every task.
Each mutant changes one spot, the way real near-misses do:

- `operator_flip`: `+` <-> `-`, `*` <-> `//`, `%` -> `//`, `**` -> `*`, `and` <-> `or`, ...
- `comparison_flip`: `<` <-> `<=`, `>` <-> `>=`, `==` <-> `!=`, `in` <-> `not in`, `is` <-> `is not`
- `off_by_one`: an integer constant +1 / -1, a `range()` bound +1 / -1
- `drop_branch`: an `if` removed (its `else` kept), or its `else` removed
- `swap_return`: two different `return` values of one function swapped, `return True/False` flipped
- `call_swap`: a call to its opposite: `max` <-> `min`, `any` <-> `all`, `.upper()` <-> `.lower()`,
  `.startswith` <-> `.endswith`, `.index` <-> `.rindex`... (one-liners have nothing else to mutate)

A mutant is only a *candidate* bug: it is never labelled failing by assumption. Some mutants
are equivalent to the original (`x * 1`, a dead branch) and pass every test; `rm data` judges
each one in the sandbox and labels it by the verdict. Not here: judging, prompts.

    >>> [m.code for m in mutants("def f(a, b):\\n    return a + b", operators=["operator_flip"])]
    ['def f(a, b):\\n    return a - b']
"""

from __future__ import annotations

import ast
import copy
import random
from dataclasses import dataclass

OPERATORS = ("operator_flip", "comparison_flip", "off_by_one", "drop_branch", "swap_return", "call_swap")

_BINOP_FLIPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult,
                ast.Div: ast.Mult, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.BitAnd: ast.BitOr,
                ast.BitOr: ast.BitAnd, ast.LShift: ast.RShift, ast.RShift: ast.LShift}
_BOOLOP_FLIPS = {ast.And: ast.Or, ast.Or: ast.And}
_COMPARE_FLIPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
                  ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
_CALL_SWAPS = {"max": "min", "min": "max", "any": "all", "all": "any", "upper": "lower", "lower": "upper",
               "startswith": "endswith", "endswith": "startswith", "index": "rindex", "rindex": "index",
               "find": "rfind", "rfind": "find", "lstrip": "rstrip", "rstrip": "lstrip", "isupper": "islower",
               "islower": "isupper", "floor": "ceil", "ceil": "floor"}


@dataclass(frozen=True)
class Mutant:
    code: str
    operator: str  # one of OPERATORS
    line: int  # where the change is, in the original source


@dataclass(frozen=True)
class _Site:
    operator: str
    node: int  # index of the node in ast.walk order (the same in a deep copy)
    variant: int  # which of the node's mutations


def mutants(source: str, limit: int | None = None, seed: int = 0,
            operators: list[str] | tuple[str, ...] = OPERATORS) -> list[Mutant]:
    """Distinct one-change mutants of `source` (none equal to it), at most `limit`, chosen at
    random (`seed`) but spread over the operators. Source that does not parse gives []."""
    unknown = set(operators) - set(OPERATORS)
    if unknown:
        raise ValueError(f"unknown mutation operators {sorted(unknown)}; known: {', '.join(OPERATORS)}")
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    original = ast.unparse(tree)
    nodes = list(ast.walk(tree))
    sites = [s for i, node in enumerate(nodes) for s in _sites(node, i, nodes) if s.operator in operators]
    rng = random.Random(seed)
    rng.shuffle(sites)
    # Round-robin over operators, so a long arithmetic function does not yield only operator flips.
    by_operator: dict[str, list[_Site]] = {}
    for site in sites:
        by_operator.setdefault(site.operator, []).append(site)
    ordered = [queue[i] for i in range(max(map(len, by_operator.values()), default=0))
               for queue in by_operator.values() if i < len(queue)]
    seen, out = {original}, []
    for site in ordered:
        if limit is not None and len(out) >= limit:
            break
        mutated = copy.deepcopy(tree)
        target = list(ast.walk(mutated))[site.node]
        line = getattr(nodes[site.node], "lineno", 0)
        if not _apply(target, site, mutated):
            continue
        try:
            code = ast.unparse(ast.fix_missing_locations(mutated))
            compile(code, "<mutant>", "exec")
        except (SyntaxError, ValueError):
            continue
        if code not in seen:
            seen.add(code)
            out.append(Mutant(code, site.operator, line))
    return out


def _is_int(node) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int


def _sites(node, index: int, nodes: list) -> list[_Site]:
    """Every mutation this node allows."""
    if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in _BINOP_FLIPS:
        return [_Site("operator_flip", index, 0)]
    if isinstance(node, ast.BoolOp):
        return [_Site("operator_flip", index, 0)]
    if isinstance(node, ast.Compare):
        return [_Site("comparison_flip", index, k) for k, op in enumerate(node.ops) if type(op) in _COMPARE_FLIPS]
    if _is_int(node):
        return [_Site("off_by_one", index, 0), _Site("off_by_one", index, 1)]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range" and node.args:
        # a bound that is not a plain constant (constants are covered above): range(len(x)) -> range(len(x) - 1)
        stop = node.args[1] if len(node.args) > 1 else node.args[0]
        return [] if _is_int(stop) else [_Site("off_by_one", index, 2), _Site("off_by_one", index, 3)]
    if isinstance(node, ast.Call) and _call_name(node) in _CALL_SWAPS:
        return [_Site("call_swap", index, 0)]
    if isinstance(node, ast.If):
        return [_Site("drop_branch", index, 0)] + ([_Site("drop_branch", index, 1)] if node.orelse else [])
    if isinstance(node, ast.Return) and node.value is not None:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, bool):
            return [_Site("swap_return", index, 0)]
        return [_Site("swap_return", index, 1)]
    return []


def _apply(node, site: _Site, tree) -> bool:
    """Mutate `node` (inside `tree`) in place; False when this site has nothing to change."""
    if site.operator == "operator_flip":
        if isinstance(node, ast.BoolOp):
            node.op = _BOOLOP_FLIPS[type(node.op)]()
        else:
            node.op = _BINOP_FLIPS[type(node.op)]()
        return True
    if site.operator == "comparison_flip":
        node.ops[site.variant] = _COMPARE_FLIPS[type(node.ops[site.variant])]()
        return True
    if site.operator == "off_by_one":
        if site.variant in (0, 1):
            node.value += 1 if site.variant == 0 else -1
            return True
        position = 1 if len(node.args) > 1 else 0
        node.args[position] = ast.BinOp(node.args[position], ast.Add() if site.variant == 2 else ast.Sub(),
                                        ast.Constant(1))
        return True
    if site.operator == "drop_branch":
        parent, field, position = _parent_slot(tree, node)
        if parent is None:
            return False
        if site.variant == 0:  # the whole if goes; its else (if any) stays in its place
            replacement = node.orelse or [ast.Pass()]
            getattr(parent, field)[position:position + 1] = replacement
        else:
            node.orelse = []
        return True
    if site.operator == "call_swap":
        if isinstance(node.func, ast.Name):
            node.func.id = _CALL_SWAPS[node.func.id]
        else:
            node.func.attr = _CALL_SWAPS[node.func.attr]
        return True
    if site.operator == "swap_return":
        if site.variant == 0:
            node.value.value = not node.value.value
            return True
        return _swap_with_other_return(tree, node)
    return False


def _call_name(call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    return call.func.attr if isinstance(call.func, ast.Attribute) else None


def _parent_slot(tree, node):
    """(parent, list field, index) of a statement, or (None, None, None)."""
    for parent in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            statements = getattr(parent, field, None)
            if isinstance(statements, list):
                for i, statement in enumerate(statements):
                    if statement is node:
                        return parent, field, i
    return None, None, None


def _swap_with_other_return(tree, node) -> bool:
    """Swap this return's value with the first return of the same function that differs."""
    for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        returns = [n for n in _own_nodes(function) if isinstance(n, ast.Return) and n.value is not None]
        if node in returns:
            text = ast.unparse(node.value)
            other = next((r for r in returns if r is not node and ast.unparse(r.value) != text), None)
            if other is None:
                return False
            node.value, other.value = other.value, node.value
            return True
    return False


def _own_nodes(function):
    """Nodes of a function body, not of functions or classes nested in it."""
    stack = list(function.body)
    while stack:
        n = stack.pop()
        yield n
        if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(n))
