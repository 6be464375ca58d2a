"""coder_align.datagen.mutants: one change per mutant, each operator, never the original, deterministic."""

import ast

import pytest

from coder_align.datagen.mutants import OPERATORS, mutants

SOURCE = '''
def f(xs, n):
    total = 0
    for i in range(len(xs)):
        if xs[i] < n and xs[i] % 2 == 0:
            total += xs[i]
        else:
            total -= 1
    if total > 10:
        return True
    return max(total, 0) > 3
'''


def codes(operator, source=SOURCE):
    return {m.code for m in mutants(source, operators=[operator])}


def body(code):
    return ast.unparse(ast.parse(code))


def test_each_operator_makes_the_bugs_it_names():
    assert "total -= xs[i]" in "\n".join(codes("operator_flip"))  # += -> -=
    assert any("xs[i] < n or xs[i] % 2 == 0" in c for c in codes("operator_flip"))  # and -> or
    assert any("xs[i] <= n" in c for c in codes("comparison_flip"))
    assert any("xs[i] % 2 != 0" in c for c in codes("comparison_flip"))
    off = codes("off_by_one")
    assert any("range(len(xs) - 1)" in c for c in off) and any("range(len(xs) + 1)" in c for c in off)
    assert any("total = 1" in c for c in off) and any("xs[i] % 3 == 0" in c for c in off)
    dropped = codes("drop_branch")
    assert any("total += xs[i]" not in c and "total -= 1" in c for c in dropped)  # the if goes, its else stays
    assert any("total += xs[i]" in c and "total -= 1" not in c for c in dropped)  # the else goes
    assert any("return False" in c for c in codes("swap_return"))
    swapped = body("def g(a):\n    if a:\n        return a + 1\n    return a - 1")
    assert body("def g(a):\n    if a:\n        return a - 1\n    return a + 1") in codes("swap_return", swapped)
    assert any("min(total, 0)" in c for c in codes("call_swap"))


def test_mutants_differ_from_the_original_and_each_other_and_parse():
    found = mutants(SOURCE)
    original = body(SOURCE)
    assert len(found) > 20 and {m.operator for m in found} == set(OPERATORS)
    assert original not in {m.code for m in found} and len({m.code for m in found}) == len(found)
    for m in found:
        ast.parse(m.code)
        assert m.line >= 1


def test_limit_spreads_over_operators_and_the_seed_decides():
    few = mutants(SOURCE, limit=6, seed=1)
    assert len(few) == 6 and len({m.operator for m in few}) == 6  # round-robin, not six constant bumps
    assert few == mutants(SOURCE, limit=6, seed=1) and few != mutants(SOURCE, limit=6, seed=2)


def test_nothing_to_mutate_or_not_python_gives_nothing():
    assert mutants("def f(s):\n    return s.swapcase()") == []
    assert mutants("def f(:") == []
    with pytest.raises(ValueError, match="unknown mutation operators"):
        mutants(SOURCE, operators=["rename"])
