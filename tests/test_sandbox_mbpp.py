"""Every MBPP reference solution passes (with the README's `import math` quirk); ~10 s.

The jobs are built as GRPO and evaluation build them, through `coder_align.benchmarks`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from coder_align import benchmarks
from coder_align.sandbox import check_many, find_bwrap

MBPP = benchmarks.find_data(benchmarks.MBPP_FILE) or Path(benchmarks.MBPP_FILE)

pytestmark = [
    pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap not installed"),
    pytest.mark.skipif(not MBPP.exists(), reason=f"{MBPP} not present"),
]


def _jobs(rows):
    # 10 tasks call math.* without importing it; mbpp_setup puts `import math` first
    return [{"source": r["code"], "tests": [*benchmarks.mbpp_setup(r), *r["test_list"]]} for r in rows]


def _rows():
    return [row for _, row in benchmarks.read_mbpp(str(MBPP))]


def _assert_all_pass(rows):
    reports = check_many(_jobs(rows))
    failed = [(r["task_id"], rep.status, rep.details) for r, rep in zip(rows, reports) if not rep.passed]
    assert failed == []


def test_mbpp_wrong_solutions_fail():
    rows = _rows()[:20]
    jobs = [dict(job, source=job["source"] + "\n" + "\n".join(
        f"def {name}(*a, **k): return None" for name in _names(job["tests"]))) for job in _jobs(rows)]
    assert not any(rep.passed for rep in check_many(jobs))


def _names(tests):
    import ast
    import builtins

    return {n.func.id for t in tests for n in ast.walk(ast.parse(t))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)} - set(dir(builtins))


def test_mbpp_all_427_reference_solutions_pass():
    rows = _rows()
    assert len(rows) == 427
    _assert_all_pass(rows)
