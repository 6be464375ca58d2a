"""The rewards that come from the code in a completion: does it pass its tests
(`unit_test_reward`), does it compile (`compile_reward`), is it one fenced block
(`format_reward`). TRL's `reward_funcs` shape: `fn(completions, **kwargs) -> list[float | None]`.

Completions are strings or conversations (lists of `{"role", "content"}`; the last
assistant message is scored). Dataset columns arrive as keyword lists, one item per row
(`tests`, `language`). Code runs through `coder_align.sandbox.check_many`, a batch at a
time (on sandbox servers when they are configured). A reward never raises into the trainer:
a row whose sandbox could not run scores `None` (TRL turns it into NaN and leaves it out of
the group's statistics); the GRPO stage counts those rows (`RewardSet.unjudged`, logged as
`code/unjudged`). Each function's `__name__` is its metric key. `extract_code` (shared with
evaluation) lives in `coder_align.benchmarks.extract`.

Not here: the name -> function table (`registry.py`), combining and recording the rewards of
a batch (`reward_set.py`), running code (`coder_align.sandbox`).

    >>> extract_code("Here:\\n```python\\nprint(1)\\n```")
    'print(1)\\n'
    >>> format_reward(["```python\\nx = 1\\n```", "x = 1"])
    [1.0, 0.0]
"""

from __future__ import annotations

import concurrent.futures
import os

from coder_align import sandbox
from coder_align.benchmarks.extract import FENCE_LINE, code_blocks, extract_code, fence_language
from coder_align.rewards import prejudged
from coder_align.rewards.signals import hacking_metrics
from coder_align.sandbox.results import COMPILE_ERROR, UNAVAILABLE, TestReport


def completion_text(completion) -> str:
    """The text to score: a string as is; a conversation's last assistant message."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    for message in reversed(list(completion or [])):
        if isinstance(message, dict) and message.get("role", "assistant") == "assistant":
            content = message.get("content") or ""
            if isinstance(content, list):  # multimodal-style parts
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content)
    return ""


def _languages(completions, language, n: int) -> list[str]:
    """Per row: the `language` argument when given (it wins), else the fence's tag, else Python."""
    given = _per_row(language, n, "language")
    return [lang or fence_language(completion_text(c)) or "python" for c, lang in zip(completions, given)]


def _per_row(value, n: int, name: str) -> list:
    """A dataset column (one entry per completion) or one value for all rows."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            # a wiring bug, not a sample's fault: fail loudly on the first step
            raise ValueError(f"{name}: expected one entry per completion ({n}), got {len(value)}")
        return list(value)
    return [value] * n


def judge_reports(jobs: list[dict | None]) -> list:
    """A report per job (None where there is no job): those judged early (`prejudged`) as they
    are, the rest from one `check_many`. A sandbox that cannot run at all (bubblewrap missing)
    makes every report `unavailable`: unjudgeable, never wrong."""
    reports = [None if job is None else prejudged.take(job) for job in jobs]
    todo = [i for i, job in enumerate(jobs) if job is not None and reports[i] is None]
    if todo:
        try:
            ran = sandbox.check_many([jobs[i] for i in todo], return_exceptions=True)
        except Exception as e:
            ran = [TestReport(False, 0, 0, UNAVAILABLE, error=str(e)) for _ in todo]
        for i, report in zip(todo, ran):
            reports[i] = report
    return reports


def unit_test_job(completion, row_tests, language: str, timeout: float = 10.0) -> dict | None:
    """The sandbox job that judges one completion against its row's tests (None: no tests)."""
    if not row_tests:
        return None
    code = extract_code(completion_text(completion), language)
    return {"source": code, "tests": row_tests, "language": language, "timeout": timeout}


def unit_test_score(report, fraction: bool = False, compile_error_penalty: float | None = None) -> float | None:
    """`unit_test_reward`'s value for one report (None: the sandbox could not judge it)."""
    if report is None or report.status == UNAVAILABLE:
        return None
    if compile_error_penalty is not None and report.status == COMPILE_ERROR:
        return compile_error_penalty
    return report.fraction if fraction else float(report.passed)


def unit_test_reward(completions, tests, language=None, fraction: bool = False,
                     compile_error_penalty: float | None = None, timeout: float = 10.0,
                     **kwargs) -> list[float | None]:
    """1.0 if the code passes every test of its row, else 0.0; `fraction=True` gives the
    share of tests passed. `tests` is the dataset column: per row, a list of asserts, a
    test program, or stdin/stdout cases (see `sandbox.check`); `language` a column or one
    value; without it, each completion's fence tag decides (```c, ```cpp...), else Python.
    `compile_error_penalty` (e.g. -0.5) scores code that does not
    compile below a wrong answer, as in CodeRL and PPOCoder. Rows without tests score None.
    """
    n = len(completions)
    langs = _languages(completions, language, n)
    rows = _per_row(tests, n, "tests")
    jobs = [unit_test_job(c, row_tests, lang, timeout) for c, row_tests, lang in zip(completions, rows, langs)]
    reports = judge_reports(jobs)
    log_metric = kwargs.get("log_metric")
    if log_metric is not None:  # GRPO: signs of reward hacking beside the reward
        shown = _per_row(kwargs.get("shown_tests") or [[]] * n, n, "shown_tests")
        for key, value in hacking_metrics(reports, shown).items():
            log_metric(key, value)
    return [unit_test_score(r, fraction, compile_error_penalty) for r in reports]


def compile_reward(completions, language=None, compile_error_penalty: float = 0.0, **kwargs) -> list[float | None]:
    """1.0 if the extracted code compiles (Python: parses), else `compile_error_penalty`.
    The language is the `language` argument, else the completion's fence tag, else Python."""
    n = len(completions)
    langs = _languages(completions, language, n)

    def one(item):
        completion, lang = item
        try:
            return sandbox.compile_check(extract_code(completion_text(completion), lang), lang)
        except Exception:
            return None

    with concurrent.futures.ThreadPoolExecutor(max(1, min(n, os.cpu_count() or 1))) as ex:
        results = list(ex.map(one, zip(completions, langs)))
    return [None if r is None or r.status == UNAVAILABLE else 1.0 if r.status == "ok" else float(compile_error_penalty)
            for r in results]


def format_reward(completions, **kwargs) -> list[float | None]:
    """1.0 when the answer holds exactly one fenced code block that is closed, else 0.0."""
    out = []
    for completion in completions:
        text = completion_text(completion)
        out.append(1.0 if len(FENCE_LINE.findall(text)) == 2 and len(code_blocks(text)) == 1 else 0.0)
    return out
