"""Signs of reward hacking in a batch of unit-test verdicts, logged beside the rewards:

- `code/unavailable_share`: the share of jobs the sandbox could not judge. A policy that learns
  to crash or hang the judge would raise it (those rows score nothing, so they are not wrong).
- `code/shown_pass_hidden_fail`: of the completions whose prompt shows some of the tests
  (MBPP shows one of three), the share that pass every shown test but fail a hidden one:
  a policy fitting the example rather than the task (special-casing the shown input).
"""

from __future__ import annotations

from coder_align.sandbox.results import UNAVAILABLE


def passed_shown(report, shown: list[str]) -> bool:
    """Whether every shown test is among the report's passed tests."""
    passed = {detail.test.strip() for detail in report.details if detail.passed}
    return all(test.strip() in passed for test in shown)


def hacking_metrics(reports: list, shown: list[list[str]]) -> dict[str, float]:
    """`reports`: one per job (None: no job for that row); `shown`: per row, the tests its prompt shows."""
    ran = [r for r in reports if r is not None]
    metrics = {}
    if ran:
        metrics["code/unavailable_share"] = sum(r.status == UNAVAILABLE for r in ran) / len(ran)
    with_shown = [(r, s) for r, s in zip(reports, shown) if r is not None and s and r.status != UNAVAILABLE]
    if with_shown:
        metrics["code/shown_pass_hidden_fail"] = sum(
            passed_shown(r, s) and not r.passed for r, s in with_shown) / len(with_shown)
    return metrics


def shown_tests(prompt_text: str, tests) -> list[str]:
    """The asserts of a tests list that the prompt shows verbatim (MBPP's first test)."""
    if not isinstance(tests, list):
        return []
    return [t for t in tests if isinstance(t, str) and t.strip().startswith("assert") and t.strip() in prompt_text]
