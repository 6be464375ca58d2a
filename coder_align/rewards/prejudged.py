"""Verdicts reached before the reward asked: GRPO's rollout sends each completion to the sandbox
as it finishes (`early.EarlyJudge`), and `unit_test_reward` takes the report from here instead
of running the same job again. A job is known by everything that decides its verdict (source,
tests, language, timeout); a report is taken once, and a rollout clears what it left.
"""

from __future__ import annotations

import json
import threading

_reports: dict[tuple, object] = {}
_lock = threading.Lock()


def job_key(job: dict) -> tuple:
    return (job["source"], json.dumps(job["tests"], sort_keys=True), job.get("language"), job.get("timeout"))


def put(job: dict, report) -> None:
    with _lock:
        _reports[job_key(job)] = report


def take(job: dict):
    """The report judged early for this job, or None (it is then run as usual)."""
    with _lock:
        return _reports.pop(job_key(job), None)


def clear() -> int:
    with _lock:
        count = len(_reports)
        _reports.clear()
        return count
