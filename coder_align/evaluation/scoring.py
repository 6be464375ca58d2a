"""Judging samples: pass@k, reading sample files, running programs through the sandbox.

    >>> pass_at_k(5, 2, 1)
    0.4
    >>> round(pass_at_k(5, 2, 2), 6)
    0.7

Not here: generation, and any isolation of its own (the sandbox does that).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from coder_align import sandbox
from coder_align.benchmarks import mbpp_task_id
from coder_align.evaluation.tasks import Problem, Task, TaskError, read_jsonl
from coder_align.sandbox.results import UNAVAILABLE


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k).

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i), the numerically stable form of Chen et
    al. (2021), which never forms the huge binomials.
    """
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and k >= 1, got n={n} c={c} k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got n={n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def read_samples(path: str | Path) -> list[dict]:
    """Rows with `task_id` (str or int) and `completion` (str); errors name line and field."""
    path = Path(path)
    if not path.exists():
        raise TaskError(f"{path}: samples file not found")
    rows = []
    for n, row in read_jsonl(path):
        for field, kinds in (("task_id", (str, int)), ("completion", (str,))):
            if field not in row:
                raise TaskError(f"{path}:{n}: missing field '{field}'")
            if not isinstance(row[field], kinds) or isinstance(row[field], bool):
                raise TaskError(f"{path}:{n}: field '{field}' must be "
                                f"{' or '.join(k.__name__ for k in kinds)}, got {type(row[field]).__name__}")
        rows.append(row)
    return rows


def _normalise_id(task_id, task_name: str) -> str:
    """MBPP files often say `11` where we say `Mbpp/11`."""
    if task_name.startswith("mbpp") and (isinstance(task_id, int) or str(task_id).isdigit()):
        return mbpp_task_id(task_id)
    return str(task_id)


def exact_match(problem: Problem, completion: str) -> bool:
    """Infilling: the middle line equals the reference, whitespace-stripped."""
    return completion.strip() == problem.canonical.strip()


def score_samples(task: Task, samples: list[dict], timeout: float = 10.0, workers: int | None = None,
                  ks: tuple[int, ...] = (1, 10, 100), allow_unavailable: bool = False) -> tuple[list[dict], dict]:
    """Judge every sample of a known task; returns (per-sample results, summary).

    Samples for unknown task ids are not run; they are counted in the summary. pass@k is
    averaged over problems that have samples, for every k that all of them allow. A sample
    the sandbox could not judge (`unavailable`) makes pass@k None, unless `allow_unavailable`:
    then it is computed over the problems whose samples were all judged (see `summarise`).
    """
    by_id = {p.task_id: p for p in task.problems}
    known, unknown = [], Counter()
    for s in samples:
        tid = _normalise_id(s["task_id"], task.name)
        if tid in by_id:
            known.append((tid, s))
        else:
            unknown[tid] += 1
    jobs = [{"source": by_id[tid].program(s["completion"]), "tests": by_id[tid].tests,
             "language": by_id[tid].language, "timeout": timeout} for tid, s in known]
    reports = sandbox.check_many(jobs, workers=workers, return_exceptions=True)
    results, statuses = [], Counter()
    for (tid, s), report in zip(known, reports):
        row = {"task_id": tid, "completion": s["completion"], "status": report.status, "passed": bool(report.passed)}
        for extra in ("response", "prompt_tokens"):
            if extra in s:
                row[extra] = s[extra]
        if task.name == "infilling":
            row["exact_match"] = exact_match(by_id[tid], s["completion"])
        if report.error and not report.passed:
            row["error"] = report.error[-500:]
        results.append(row)
        statuses[report.status] += 1
    return results, summarise(task, results, unknown, statuses, ks, allow_unavailable)


def summarise(task: Task, results: list[dict], unknown: Counter, statuses: Counter, ks,
              allow_unavailable: bool = False) -> dict:
    per_task = defaultdict(lambda: [0, 0, 0])  # total, passed, exact
    unjudged = {r["task_id"] for r in results if r.get("status") == UNAVAILABLE}
    for r in results:
        t = per_task[r["task_id"]]
        t[0] += 1
        t[1] += r["passed"]
        t[2] += bool(r.get("exact_match"))
    summary = {"task": task.name, "problems": len(task.problems), "problems_scored": len(per_task),
               "samples": len(results), "unknown_task_ids": sum(unknown.values()),
               "status_counts": dict(statuses), "skipped": dict(task.skipped)}
    if unknown:
        summary["unknown_task_id_examples"] = sorted(unknown)[:5]
    if unjudged:
        summary.update(unavailable_reason(results), problems_unjudged=len(unjudged))
    # An unjudged sample is neither a pass nor a fail: a score that counted it as a fail
    # would look like a result for a model that did nothing wrong.
    judged = {tid: t for tid, t in per_task.items() if tid not in unjudged}
    if per_task:
        n_min = min(t[0] for t in per_task.values())
        for k in ks:
            if k <= n_min:
                summary[f"pass@{k}"] = (float(np.mean([pass_at_k(t[0], t[1], k) for t in judged.values()]))
                                        if judged and (allow_unavailable or not unjudged) else None)
    else:  # nothing scored (e.g. every task id unknown): say so rather than leave pass@1 out
        summary["pass@1"] = None
    if per_task:
        if task.name == "infilling":
            # exact match needs no sandbox
            summary["exact_match"] = float(np.mean([t[2] / t[0] for t in per_task.values()]))
    # pass@k averages over problems that have samples; say how many had none
    summary["problems_without_samples"] = len(task.problems) - len(per_task)
    summary["per_problem"] = {tid: {"n": t[0], "passed": t[1]} for tid, t in per_task.items()}
    return summary


def unavailable_reason(results: list[dict]) -> dict:
    """How many samples were not judged and the sandbox's first explanation (one line)."""
    rows = [r for r in results if r.get("status") == UNAVAILABLE]
    errors = [line for r in rows for line in (r.get("error") or "").strip().splitlines()[-1:]]
    return {"unavailable": len(rows), "unavailable_reason": errors[0][:300] if errors else "sandbox unavailable"}
