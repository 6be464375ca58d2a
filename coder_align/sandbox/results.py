"""What `run` and `check` return."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

# ExecutionResult.status
OK = "ok"
RUNTIME_ERROR = "runtime_error"
TIMEOUT = "timeout"
MEMORY_EXCEEDED = "memory_exceeded"
COMPILE_ERROR = "compile_error"
UNAVAILABLE = "unavailable"  # infrastructure, not the candidate's fault: skip, do not punish
# TestReport.status adds: everything ran, some test failed
WRONG_ANSWER = "wrong_answer"


@dataclass
class ExecutionResult:
    status: str
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration: float = 0.0
    signal: int | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TestDetail:
    passed: bool
    test: str
    error: str | None = None  # why it failed; None when it passed


@dataclass
class TestReport:
    passed: bool
    n_passed: int
    n_total: int
    status: str
    # how the verdict was reached: "host_compare" (every expected value stayed on the host),
    # "split_process" (some asserts ran in a sandboxed test process, the candidate in another)
    isolation: str = "host_compare"
    details: list[TestDetail] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    error: str | None = None  # compile output, crash reason or infrastructure problem

    @property
    def fraction(self) -> float:
        return self.n_passed / self.n_total if self.n_total else 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
