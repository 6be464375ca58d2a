"""Allowed ranges of numeric settings (`RANGES` on a config dataclass; see `coder_align.config`).

Standard library only, so that settings groups outside the training stack (the sandbox's
`SandboxConfig`) can declare ranges too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric setting: [low, high] with optionally open ends, plus
    special values (e.g. -1 for "off"). Declared per dataclass in a `RANGES` class variable,
    checked when a config is built, so `lr=-1` fails before any model loads."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    special: tuple = ()

    def __contains__(self, value) -> bool:
        if value in self.special:
            return True
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        text = " and ".join(parts) or "any number"
        return text + "".join(f" or {v!r}" for v in self.special)


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
ONE_OR_MORE = Range(1)
FRACTION = Range(0, 1)
