"""Judging GRPO completions while the others still generate.

The rollout calls `submit` as each completion finishes; a background thread sends what has
gathered to `sandbox.check_many` (the local pool or the sandbox servers) in small batches, so
the sandbox works during generation instead of after it. Each report is scored exactly as
`unit_test_reward` scores it (same job, same `unit_test_score`) and left in `prejudged`, where
the reward finds it instead of running the job again. `wait` returns the values once the last
one is in; the time spent judging before generation ended is the overlap the logs show.

    judge = EarlyJudge({"timeout": 10})
    judge.start(); judge.submit(0, completion_text, row); values = judge.wait()
"""

from __future__ import annotations

import queue
import threading
import time

from coder_align import sandbox
from coder_align.benchmarks.extract import fence_language
from coder_align.data.grpo_rows import decode_tests
from coder_align.rewards import prejudged
from coder_align.rewards.execution import unit_test_job, unit_test_score
from coder_align.sandbox.results import UNAVAILABLE, TestReport

UNIT_TEST_OPTIONS = {"fraction", "compile_error_penalty", "timeout"}


class EarlyJudge:
    def __init__(self, unit_test_kwargs: dict | None = None, batch: int = 8):
        options = dict(unit_test_kwargs or {})
        unknown = set(options) - UNIT_TEST_OPTIONS
        if unknown:  # the reward itself would take them; early judging must score exactly as it does
            raise ValueError(f"early judging cannot reproduce unit_test options {sorted(unknown)}")
        self.fraction = bool(options.get("fraction", False))
        self.penalty = options.get("compile_error_penalty")
        self.timeout = float(options.get("timeout", 10.0))
        self.batch = batch
        self._queue: queue.Queue = queue.Queue()
        self._done = threading.Condition()
        self._thread: threading.Thread | None = None
        self.start()

    def start(self, forget: bool = True) -> None:
        """Begin a round of completions; `forget`: also drop the reports no reward took (a new
        rollout; the rounds of one rollout keep theirs, the groups kept from them are scored later)."""
        if forget:
            prejudged.clear()
        self.values: dict[int, float | None] = {}
        self.intervals: list[tuple[float, float]] = []
        self._submitted = 0
        self._finished = 0

    def submit(self, index: int, text: str, row: dict) -> None:
        tests = decode_tests([row["tests"]])[0]
        language = row.get("language") or fence_language(text) or "python"
        job = unit_test_job(text, tests, language, self.timeout)
        with self._done:
            self._submitted += 1
        if job is None:
            self._settle([(index, None)], [None])
            return
        with self._done:  # completions finish in several threads: one judging thread for all
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="early-judge", daemon=True)
                self._thread.start()
        self._queue.put((index, job))

    def wait(self) -> dict[int, float | None]:
        """Every submitted completion's value (None: unjudged), once the last is in."""
        with self._done:
            self._done.wait_for(lambda: self._finished >= self._submitted)
        return dict(self.values)

    @property
    def busy_seconds(self) -> float:
        return sum(end - start for start, end in self.intervals)

    def busy_before(self, moment: float) -> float:
        """Seconds of judging that happened before `moment` (e.g. the end of generation)."""
        return sum(max(0.0, min(end, moment) - start) for start, end in self.intervals)

    def _work(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < self.batch:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            started = time.perf_counter()
            jobs = [job for _, job in items]
            try:
                reports = sandbox.check_many(jobs, return_exceptions=True)
            except Exception as e:  # e.g. bubblewrap missing: unjudgeable, never wrong
                reports = [TestReport(False, 0, 0, UNAVAILABLE, error=str(e)) for _ in jobs]
            self.intervals.append((started, time.perf_counter()))
            for job, report in zip(jobs, reports):
                prejudged.put(job, report)
            self._settle(items, reports)

    def _settle(self, items, reports) -> None:
        with self._done:
            for (index, _), report in zip(items, reports):
                self.values[index] = unit_test_score(report, self.fraction, self.penalty)
            self._finished += len(items)
            self._done.notify_all()
