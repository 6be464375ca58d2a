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
-> function filters (docstring, return value, private, method, length, self-contained) ->
exact dedup (normalised AST) -> near dedup (MinHash, corpus/dedup.py) -> decontamination
against HumanEval and the MBPP test split (the corpus module's 10-gram rule).

Not here: tokenization (data/sft_dataset.py) and any judgement of whether a docstring is
right about its function.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import json
import os
import random
import symtable
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from coder_align.benchmarks import humaneval_instruct_prompt, python_answer
from coder_align.config import FRACTION, NON_NEGATIVE, ONE_OR_MORE, ConfigError, Range
from coder_align.corpus.decontam import DEFAULT_MBPP
from coder_align.corpus.walk import DEFAULT_MAX_FILE_BYTES, VENDORED_DIRS
from coder_align.data.licences import LicenceMap

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
class DocstringsFilterConfig:
    min_lines: int = 3  # lines of the output function (docstring removed, imports not counted)
    max_lines: int = 30
    min_chars: int = 60
    max_chars: int = 1200
    min_doc_chars: int = 30  # the cleaned docstring
    max_doc_chars: int = 800
    # Only its arguments, builtins, stdlib imports and literal constants: no other module globals,
    # no helpers defined beside it (like HumanEval/MBPP solutions, and so the output runs on its own).
    self_contained: bool = True

    RANGES: ClassVar[dict] = {"min_lines": ONE_OR_MORE, "max_lines": ONE_OR_MORE, "min_chars": NON_NEGATIVE,
                              "max_chars": ONE_OR_MORE, "min_doc_chars": NON_NEGATIVE, "max_doc_chars": ONE_OR_MORE}


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
    """(path, text) of the .py files under `root`, sorted; skips counted under `files_skipped_*`."""
    from coder_align.corpus.walk import _is_generated  # the corpus walker's marker test, not its walk

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
            if _is_generated(name, text):
                counts["files_skipped_generated"] += 1
                continue
            yield path, text


# --- one module: its imports and its documented functions --------------------------------------

STDLIB_MODULES = frozenset(sys.stdlib_module_names)
BUILTIN_NAMES = frozenset(dir(builtins))


@dataclass
class Module:
    tree: ast.Module
    lines: list[str]
    imports: dict[str, tuple[str, str | None, str]]  # bound name -> (module, imported name or None, alias)
    bound: set[str]  # every name the module binds at its top level
    constants: dict[str, str]  # name -> its one-line assignment, for names bound once, to a literal


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def read_module(text: str) -> Module:
    """Parse a module (SyntaxError/ValueError propagate: the caller counts them)."""
    tree = ast.parse(text)
    imports = {}
    for node in tree.body:  # only unconditional top-level imports: a try/except import may be absent
        if isinstance(node, ast.Import):
            for a in node.names:
                bound = a.asname or a.name.split(".")[0]
                imports[bound] = (a.name, None, a.asname or "")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            for a in node.names:
                if a.name != "*":
                    imports[a.asname or a.name] = (node.module, a.name, a.asname or "")
    constants, assigned = {}, Counter()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name):
                    assigned[n.id] += 1
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and _is_literal(node.value)):
            constants[node.targets[0].id] = ast.get_source_segment(text, node)
    table = symtable.symtable(text, "<module>", "exec")
    bound = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()}
    # ast numbers lines as the tokenizer does; str.splitlines also splits at form feeds and the like
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    constants = {k: v for k, v in constants.items() if assigned[k] == 1 and v and "\n" not in v}
    return Module(tree, lines, imports, bound, constants)


def is_stdlib(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] in STDLIB_MODULES


def import_lines(names: list[str], imports: dict) -> list[str]:
    """Import statements binding `names`, `from` imports of one module grouped."""
    plain, grouped = set(), {}
    for name in names:
        module, imported, alias = imports[name]
        if imported is None:
            plain.add(f"import {module}" + (f" as {alias}" if alias else ""))
        else:
            grouped.setdefault(module, set()).add(imported + (f" as {alias}" if alias else ""))
    return sorted(plain) + [f"from {m} import {', '.join(sorted(n))}" for m, n in sorted(grouped.items())]


@dataclass
class Function:
    name: str
    signature: str  # name(args) -> returns
    docstring: str  # cleaned (inspect.cleandoc)
    stub: str  # imports + header + docstring: the HumanEval-style prompt
    code: str  # imports + the function without its docstring: the answer
    text: str  # imports + the whole function: the plain code row


def _own_nodes(fn: ast.AST):
    """Nodes of a function's body, not of functions or classes nested in it."""
    stack = list(ast.iter_child_nodes(fn))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))


def _global_names(source: str) -> tuple[set[str], bool]:
    """Names a function's source reads from outside itself, and whether it declares `global`."""
    names, declares = set(), False
    top = symtable.symtable(source, "<function>", "exec")
    # The top level holds what the def line evaluates in the module: annotations, defaults.
    names.update(s.get_name() for s in top.get_symbols() if s.is_referenced())
    stack = top.get_children()
    while stack:
        table = stack.pop()
        stack.extend(table.get_children())
        for s in table.get_symbols():
            declares |= s.is_declared_global()
            if s.is_global() and s.is_referenced():
                names.add(s.get_name())
    return names, declares


def _dedent(lines: list[str], indent: int) -> list[str] | None:
    """The lines with `indent` columns removed; None when a line (inside a string) has less."""
    out = []
    for line in lines:
        if line[:indent].strip():
            return None
        out.append(line[indent:])
    return out


def unused_self(node: ast.FunctionDef) -> ast.arg | None:
    """A plain method's first parameter when nothing in it (closures included) reads it, nor
    `super()` / `__class__`; None otherwise."""
    params = node.args.posonlyargs + node.args.args
    if not params:
        return None
    unused = {params[0].arg, "super", "__class__"}
    if any(isinstance(n, ast.Name) and n.id in unused for n in ast.walk(node)):
        return None
    return params[0]


def without_param(body: list[str], node: ast.FunctionDef, param: ast.arg) -> tuple[list[str] | None, ast.arguments]:
    """`body` (the dedented def) with `param` and its comma cut from the header, line count
    unchanged (a line left blank is dropped later), and the arguments without it; (None, _)
    when the cut does not give the same function minus that parameter."""
    import copy

    args = copy.deepcopy(node.args)
    if args.posonlyargs:
        args.posonlyargs = args.posonlyargs[1:]
    else:
        args.args = args.args[1:]
    i = param.lineno - node.lineno
    line = body[i].encode()  # ast's columns count UTF-8 bytes; the removed indent was ASCII
    start, end = param.col_offset - node.col_offset, param.end_col_offset - node.col_offset
    tail = line[end:].lstrip()
    tail = tail[1:].lstrip() if tail.startswith(b",") else line[end:]
    out = list(body)
    out[i] = (line[:start] + tail).decode()
    try:
        cut = ast.parse("\n".join(out) + "\n").body[0]
    except SyntaxError:
        return None, args
    return (out if ast.dump(cut.args) == ast.dump(args) else None), args


def source_parts(node: ast.FunctionDef, module: Module, drop: ast.arg | None):
    """(header lines, docstring lines, body lines after it, arguments) of a function's source,
    dedented, decorators left out, `drop` cut from the parameters; or "layout" when the source
    cannot be cut so (a docstring sharing a line with code, a string less indented than the def)."""
    body = _dedent(module.lines[node.lineno - 1:node.end_lineno], node.col_offset)
    ds = node.body[0]
    if body is None or len(node.body) < 2:
        return "layout"
    args = node.args
    if drop is not None:
        body, args = without_param(body, node, drop)
        if body is None:
            return "layout"
    first, last = ds.lineno - node.lineno, ds.end_lineno - node.lineno  # docstring lines in `body`
    # ast's columns count UTF-8 bytes
    before = module.lines[ds.lineno - 1].encode()[:ds.col_offset].decode(errors="replace")
    after = module.lines[ds.end_lineno - 1].encode()[ds.end_col_offset:].decode(errors="replace")
    if before.strip() or after.strip() or first == 0:
        return "layout"
    rest = body[last + 1:]
    while rest and not rest[0].strip():  # the blank line that set the docstring apart goes with it
        rest = rest[1:]
    head = [line for line in body[:first] if line.strip()]  # a line that held only `self,` is gone
    return head, body[first:last + 1], rest, args


def function_of(node: ast.FunctionDef, module: Module, filters: DocstringsFilterConfig,
                in_class: bool) -> Function | str:
    """The mined function, or the reason it is skipped."""
    doc = "\n".join(line.rstrip() for line in (ast.get_docstring(node, clean=True) or "").splitlines()).strip()
    if not doc:
        return "no_docstring"
    if node.name.startswith("_"):
        return "private"
    decorators = [ast.unparse(d) for d in node.decorator_list]
    drop = None  # a method's `self` that its body never reads: the function stands without it
    if in_class and decorators != ["staticmethod"]:
        drop = None if decorators else unused_self(node)
        if drop is None:
            return "method"  # uses self or cls, or is a property: not a free-standing function
    if not in_class and decorators:
        return "decorated"
    own = list(_own_nodes(node))
    if any(isinstance(n, (ast.Yield, ast.YieldFrom, ast.Await)) for n in own):
        return "generator"
    if not any(isinstance(n, ast.Return) and n.value is not None for n in own):
        return "no_return"
    if not filters.min_doc_chars <= len(doc) <= filters.max_doc_chars:
        return "docstring_length"

    parts = source_parts(node, module, drop)
    if isinstance(parts, str):
        return parts
    head, docstring, rest, args = parts
    code_lines = head + rest
    code, whole = "\n".join(code_lines), "\n".join(head + docstring + rest)
    if not filters.min_lines <= len(code_lines) <= filters.max_lines:
        return "length"
    if not filters.min_chars <= len(code) <= filters.max_chars:
        return "length"

    # --- what it reads from outside: builtins, itself, stdlib imports; nothing else -------
    outside, declares_global = _global_names(whole)
    if declares_global:
        return "globals"
    needed = sorted(n for n in outside if n in module.imports)
    if not all(is_stdlib(module.imports[n][0]) for n in needed):
        return "non_stdlib_import"
    if any(isinstance(n, ast.ImportFrom) and (n.level or not is_stdlib(n.module)) or
           isinstance(n, ast.Import) and not all(is_stdlib(a.name) for a in n.names) for n in ast.walk(node)):
        return "non_stdlib_import"
    constants = sorted(n for n in outside if n in module.constants and n not in module.imports)
    others = outside - set(needed) - set(constants) - {node.name}
    if filters.self_contained and any(n in module.bound or n not in BUILTIN_NAMES for n in others):
        return "globals"

    try:
        ast.parse(code)
    except SyntaxError:  # a cut that left something odd behind (a continuation line, say)
        return "layout"
    header = "\n".join(import_lines(needed, module.imports) + [module.constants[n] for n in constants])
    header = header + "\n\n" if header else ""
    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    return Function(name=node.name, signature=f"{node.name}({ast.unparse(args)}){returns}", docstring=doc,
                    stub=header + "\n".join(head + docstring), code=header + code, text=header + whole)


def module_functions(module: Module):
    """(node, in_class) for top-level functions and the methods of top-level classes."""
    for node in module.tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node, False
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield item, True


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
        from coder_align.corpus.decontam import load_test_split_index
        from coder_align.corpus.dedup import NearDedup

        self.index, self.benchmarks = load_test_split_index(config.decontam.mbpp, config.decontam.extra_files)
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
    from coder_align.config import to_dict

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
        f"decontamination (HumanEval + MBPP test): {s['decontamination']['removed']} removed "
        f"{s['decontamination']['removed_by_benchmark'] or ''}",
        f"kept by source: {s['kept_by_source']}",
    ]
    return "\n".join(lines) + "\n"
