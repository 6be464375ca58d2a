"""Fill-in-the-middle (FIM) transform, DeepSeek-Coder style, applied per document.

PSM (prefix-suffix-middle), the DeepSeek-Coder default at rate 0.5::

    <｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>{middle}

SPM (suffix first), used at ``spm_rate``; the layout chosen here is::

    <｜fim▁hole｜>{suffix}<｜fim▁begin｜>{prefix}<｜fim▁end｜>{middle}

Why this SPM layout: each sentinel introduces the same segment as in PSM (begin ->
prefix, hole -> suffix, end -> middle), only the two context segments swap, so it
is the literal "suffix first" variant of the reference and splits back unambiguously.
The StarCoder/Megatron "SPM variant" (``begin hole suffix end prefix middle``) glues
prefix and middle together and cannot be split back, so it is not used.

The bars in the sentinels are FULLWIDTH U+FF5C and the ``▁`` is U+2581, as in the
DeepSeek-Coder tokenizer (ids 32016, 32015, 32017).

What this module does not do: it never appends EOS. The packer adds EOS between
documents, so a FIM document ends with its middle. It does not tokenize either: the
split is on characters, as in DeepSeek's and Megatron's document-level FIM.
"""

from __future__ import annotations

import random
from typing import NamedTuple

FIM_BEGIN = "<\uff5cfim\u2581begin\uff5c>"
FIM_HOLE = "<\uff5cfim\u2581hole\uff5c>"
FIM_END = "<\uff5cfim\u2581end\uff5c>"
SENTINELS = (FIM_BEGIN, FIM_HOLE, FIM_END)


class FimParts(NamedTuple):
    prefix: str
    middle: str
    suffix: str
    mode: str  # "psm" or "spm"


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")


def apply_fim(text: str, rng: random.Random, fim_rate: float = 0.5, spm_rate: float = 0.0) -> str:
    """With probability ``fim_rate`` rearrange ``text`` into a FIM sample, else return it as is.

    The two cut points are drawn uniformly from ``0..len(text)`` (inclusive) and sorted,
    so empty prefix, middle or suffix all occur. Among FIM samples, a fraction ``spm_rate``
    uses the SPM layout (see the module docstring). No EOS is appended.

    Documents that already contain a sentinel are returned unchanged: transforming them
    would make the result impossible to split back.

    RNG use is fixed so runs are reproducible: one ``random()`` for the FIM decision, two
    ``randint`` for the cuts, and one more ``random()`` for the mode only when spm_rate > 0.

    >>> apply_fim("abcdef", random.Random(0), fim_rate=0.0)
    'abcdef'
    >>> out = apply_fim("abcdef", random.Random(0), fim_rate=1.0)
    >>> p = split_fim(out); p.prefix + p.middle + p.suffix
    'abcdef'
    """
    _check_rate("fim_rate", fim_rate)
    _check_rate("spm_rate", spm_rate)
    if rng.random() >= fim_rate:
        return text
    if any(s in text for s in SENTINELS):
        return text
    a, b = sorted((rng.randint(0, len(text)), rng.randint(0, len(text))))
    prefix, middle, suffix = text[:a], text[a:b], text[b:]
    if spm_rate > 0.0 and rng.random() < spm_rate:
        return f"{FIM_HOLE}{suffix}{FIM_BEGIN}{prefix}{FIM_END}{middle}"
    return f"{FIM_BEGIN}{prefix}{FIM_HOLE}{suffix}{FIM_END}{middle}"


def split_fim(sample: str) -> FimParts | None:
    """Split a sample made by ``apply_fim`` back into its parts; None if it is not FIM.

    A FIM sample holds each sentinel exactly once and starts with ``FIM_BEGIN`` (PSM)
    or ``FIM_HOLE`` (SPM).
    """
    if any(sample.count(s) != 1 for s in SENTINELS):
        return None
    head, middle = sample.split(FIM_END)
    if head.startswith(FIM_BEGIN):
        prefix, _, suffix = head[len(FIM_BEGIN):].partition(FIM_HOLE)
        if FIM_HOLE not in head:
            return None
        return FimParts(prefix, middle, suffix, "psm")
    if head.startswith(FIM_HOLE):
        suffix, sep, prefix = head[len(FIM_HOLE):].partition(FIM_BEGIN)
        if not sep:
            return None
        return FimParts(prefix, middle, suffix, "spm")
    return None
