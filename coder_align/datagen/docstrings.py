"""Instruction/output pairs mined from documented Python functions (`coder-align data from-docstrings`).

    coder-align data from-docstrings /usr/lib/python3.11 site-packages/ --out rows.jsonl --code-out code.jsonl

Each documented top-level function (or staticmethod, or method that never reads `self`) of
a licence-clean file becomes

- an SFT row: instruction = a request built from the signature and the docstring (a few
  phrasings, one of them the HumanEval-style stub the eval asks to complete, so the model
  does not learn one wording), output = the function without its docstring, in one
  ```python fence (the answer format the instruct prompts ask for and `extract_code` takes);
- with `--code-out`, a plain code row `{"text": ...}` of the same function with its
  docstring, which SFT turns into FIM samples at `data.fim_rate`.

The stdlib imports and literal module constants a function uses are put above it, so every
output runs on its own.
Steps, each removal counted in `<out>.summary.json`: licence (licences.py) -> read and parse
-> function filters (docstring, return value, private, method, length, self-contained;
function_source.py) ->
exact dedup (normalised AST) -> near dedup (MinHash, corpus/dedup.py) -> decontamination
against HumanEval and the MBPP test split (the corpus module's 10-gram rule).

Not here: tokenization (data/sft_dataset.py) and any judgement of whether a docstring is
right about its function.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from coder_align.benchmarks import humaneval_instruct_prompt, python_answer
from coder_align.benchmarks.decontam import DEFAULT_MBPP, load_test_split_index
from coder_align.config import FRACTION, NON_NEGATIVE, ONE_OR_MORE, ConfigError, Range, to_dict
from coder_align.corpus.dedup import NearDedup
from coder_align.corpus.walk import DEFAULT_MAX_FILE_BYTES, VENDORED_DIRS, is_generated
from coder_align.datagen.function_source import (
    DocstringsFilterConfig, Function, function_of, module_functions, read_module,
)
from coder_align.datagen.licences import LicenceMap

# The stdlib's own tests, GUI and demo code, and vendored copies: not the functions we want.
DEFAULT_EXCLUDE = ["test", "tests", "testing", "idlelib", "turtledemo", "tkinter", "lib2to3", "ensurepip",
                   "_vendor", "vendored", "__phello__", "examples", "benchmarks", "docs"]
MAX_EXAMPLES = 10  # contaminated rows named in the summary
REPLY_IN_FENCE = "Reply with the code in one ```python code block."  # the eval's MBPP prompt ends so


@dataclass
class DocstringsDataConfig:
    dirs: list[str] = field(default_factory=list)  # directories of .py files (stdlib, site-packages, ...)
    exclude_dirs: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDE))  # folder names not entered
    licences: dict[str, str] = field(default_factory=dict)  # DIR -> SPDX id, for code no metadata covers
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES

    RANGES: ClassVar[dict] = {"max_file_bytes": ONE_OR_MORE}


@dataclass
class DocstringsDedupConfig:
    near: bool = True  # MinHash near-duplicates of an earlier kept function are dropped
    threshold: float = 0.8  # Jaccard of word 5-gram shingles
    num_perm: int = 64

    RANGES: ClassVar[dict] = {"threshold": Range(0, 0.98, low_open=True), "num_perm": Range(2)}


@dataclass
class DocstringsDecontamConfig:
    mbpp: str = DEFAULT_MBPP  # MBPP JSONL whose test split (ids 11-510) rows are checked; default: found
    extra_files: list[str] = field(default_factory=list)  # more benchmark JSONL (fields text/code/test_list)


@dataclass
class DocstringsConfig:
    """Mine instruction/output pairs from documented Python functions."""

    data: DocstringsDataConfig = field(default_factory=DocstringsDataConfig)
    filters: DocstringsFilterConfig = field(default_factory=DocstringsFilterConfig)
    dedup: DocstringsDedupConfig = field(default_factory=DocstringsDedupConfig)
    decontam: DocstringsDecontamConfig = field(default_factory=DocstringsDecontamConfig)
    output_path: str = ""  # instruction/output JSONL
    code_output_path: str | None = None  # plain code rows {"text"} of the same functions, for FIM
    summary_path: str | None = None  # default: <output_path without .jsonl>.summary.json
    stub_rate: float = 0.3  # share of instructions given as the HumanEval-style stub to complete
    reply_hint_rate: float = 0.5  # share of the other instructions ending with the eval's fence request
    seed: int = 0

    RANGES: ClassVar[dict] = {"stub_rate": FRACTION, "reply_hint_rate": FRACTION, "seed": NON_NEGATIVE}


# --- reading files ----------------------------------------------------------------------------

def python_files(root: Path, exclude: set[str], counts: Counter, max_file_bytes: int):
    """(path, text) of the .py files under `root`, sorted; skips counted under `files_skipped_*`
    (generated files by the corpus walker's test, `is_generated`)."""
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in VENDORED_DIRS and d not in exclude)
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = Path(directory) / name
            if path.is_symlink():
                counts["files_skipped_symlink"] += 1
                continue
            if path.stat().st_size > max_file_bytes:
                counts["files_skipped_oversized"] += 1
                continue
            try:
                text = path.read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                counts["files_skipped_not_utf8"] += 1
                continue
            if is_generated(name, text):
                counts["files_skipped_generated"] += 1
                continue
            yield path, text


# --- rows --------------------------------------------------------------------------------------

PHRASINGS = (
    "Write a Python function `{signature}` that does the following.\n{doc}",
    "Write a Python function `{signature}`.\n{doc}",
    "Implement `{signature}` in Python.\n{doc}",
    "{doc}\nWrite this as a Python function `{signature}`.",
    "Create a Python function named `{name}` with the signature `{signature}`.\n{doc}",
)


def instruction_for(fn: Function, rng: random.Random, stub_rate: float, reply_hint_rate: float) -> str:
    """A request for `fn`, in one of a few phrasings (drawn from `rng`)."""
    if rng.random() < stub_rate:
        return humaneval_instruct_prompt(fn.stub)
    text = rng.choice(PHRASINGS).format(signature=fn.signature, name=fn.name, doc=fn.docstring)
    if rng.random() < reply_hint_rate:
        text += "\n" + REPLY_IN_FENCE
    return text


def normalised_hash(code: str) -> str:
    """Equal for functions that differ only in name, comments or layout."""
    fn = next(n for n in ast.parse(code).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    key = ast.dump(fn.args) + ast.dump(ast.Module(body=fn.body, type_ignores=[]))
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


# --- the whole run -----------------------------------------------------------------------------

def check_config(config: DocstringsConfig) -> None:
    if not config.output_path:
        raise ConfigError("output_path (--out) is required: the instruction/output JSONL to write")
    if not config.data.dirs:
        raise ConfigError("data.dirs (DIR ...) is required: the directories of Python files to read")
    for d in config.data.dirs:
        if not Path(d).is_dir():
            raise NotADirectoryError(f"{d}: not a directory (data.dirs)")
    f = config.filters
    if f.min_lines > f.max_lines or f.min_chars > f.max_chars or f.min_doc_chars > f.max_doc_chars:
        raise ConfigError("filters: a minimum is above its maximum (min_lines/max_lines, min_chars/max_chars, "
                          "min_doc_chars/max_doc_chars)")


def candidates(config: DocstringsConfig, counts: Counter, licence_skips: Counter):
    """(where, licence, Function or skip reason) for every function of every readable, licence-clean file."""
    licences = LicenceMap(config.data.licences)
    for d in config.data.dirs:
        licences.add_root(d)
    exclude = set(config.data.exclude_dirs)
    for root in map(Path, config.data.dirs):
        for path, text in python_files(root, exclude, counts, config.data.max_file_bytes):
            counts["files_read"] += 1
            licence = licences.licence_of(path)
            if not licence.permissive:
                counts["files_skipped_licence"] += 1
                licence_skips[f"{licence.source or '?'}: {licence.name}"] += 1
                continue
            try:
                module = read_module(text)
            except (SyntaxError, ValueError, RecursionError):  # another Python's syntax, a NUL byte, ...
                counts["files_skipped_parse"] += 1
                continue
            counts["files_parsed"] += 1
            rel = path.relative_to(root).as_posix()
            for node, in_class in module_functions(module):
                fn = "async" if isinstance(node, ast.AsyncFunctionDef) else \
                    function_of(node, module, config.filters, in_class)
                yield f"{licence.source}:{rel}:{node.lineno}", licence, fn


class Gate:
    """What a mined row must pass after the function filters: exact dedup, near dedup, decontamination."""

    def __init__(self, config: DocstringsConfig):
        self.index, self.benchmarks = load_test_split_index(config.decontam.mbpp, config.decontam.extra_files,
                                                            validation=True)
        self.near = NearDedup(config.dedup.threshold, config.dedup.num_perm) if config.dedup.near else None
        self.hashes: set[str] = set()
        self.contaminated_by: Counter = Counter()
        self.examples: list[str] = []

    def reason(self, where: str, fn: Function, instruction: str, output: str) -> str | None:
        digest = normalised_hash(fn.code)
        if digest in self.hashes:
            return "exact_duplicate"
        self.hashes.add(digest)
        if self.near is not None and self.near.duplicate_of(str(len(self.hashes)), fn.code) is not None:
            return "near_duplicate"
        hit = self.index.match(f"{instruction}\n{output}\n{fn.text}")
        if hit is not None:
            self.contaminated_by[hit.split("/")[0]] += 1
            if len(self.examples) < MAX_EXAMPLES:
                self.examples.append(f"{where}: {fn.name} overlaps {hit}")
            return "contaminated"
        return None


def mine(config: DocstringsConfig) -> dict:
    """Write the rows (and code rows) and return the summary (also written as JSON)."""
    check_config(config)
    start = time.perf_counter()
    out = Path(config.output_path)
    base = out.with_suffix("") if out.suffix == ".jsonl" else out
    summary_path = Path(config.summary_path or f"{base}.summary.json")
    gate = Gate(config)
    files, functions, licence_skips, kept_by_source = Counter(), Counter(), Counter(), Counter()
    rng = random.Random(config.seed)

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as sink, \
            open(config.code_output_path or os.devnull, "w", encoding="utf-8") as code_sink:  # devnull: not asked for
        for where, licence, fn in candidates(config, files, licence_skips):
            functions["seen"] += 1
            if isinstance(fn, str):
                functions[fn] += 1
                continue
            instruction = instruction_for(fn, rng, config.stub_rate, config.reply_hint_rate)
            output = python_answer(fn.code)
            reason = gate.reason(where, fn, instruction, output)
            if reason:
                functions[reason] += 1
                continue
            functions["kept"] += 1
            kept_by_source[f"{licence.source} ({licence.name})"] += 1
            meta = {"source": where, "licence": licence.name}
            sink.write(json.dumps({"instruction": instruction, "output": output, **meta}, ensure_ascii=False) + "\n")
            code_sink.write(json.dumps({"text": fn.text + "\n", **meta}, ensure_ascii=False) + "\n")

    summary = {
        "dirs": [str(d) for d in config.data.dirs],
        "out": str(out), "code_out": config.code_output_path,
        "files_read": files["files_read"], "files_parsed": files["files_parsed"],
        "files_skipped_by_reason": {k.removeprefix("files_skipped_"): v for k, v in sorted(files.items())
                                    if k.startswith("files_skipped_")},
        "files_skipped_licence_by_licence": dict(licence_skips.most_common()),
        "functions_seen": functions["seen"], "kept": functions["kept"],
        "skipped_by_reason": {k: v for k, v in sorted(functions.items()) if k not in ("seen", "kept")},
        "decontamination": {"benchmarks": gate.benchmarks, "removed": functions["contaminated"],
                            "removed_by_benchmark": dict(gate.contaminated_by), "examples": gate.examples},
        "kept_by_source": dict(kept_by_source.most_common()),
        "seconds": round(time.perf_counter() - start, 1),
        "config": to_dict(config),
    }
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    summary["summary_path"] = str(summary_path)
    return summary


def format_summary(s: dict) -> str:
    lines = [
        f"files: {s['files_read']} read, {s['files_parsed']} parsed; skipped: {s['files_skipped_by_reason'] or 'none'}",
        f"functions: {s['functions_seen']} seen, {s['kept']} kept",
        f"skipped: {s['skipped_by_reason'] or 'none'}",
        f"decontamination (HumanEval, MBPP test and validation): {s['decontamination']['removed']} removed "
        f"{s['decontamination']['removed_by_benchmark'] or ''}",
        f"kept by source: {s['kept_by_source']}",
    ]
    return "\n".join(lines) + "\n"
