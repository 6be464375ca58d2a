"""Which functions of one Python module can be mined, and their self-contained source.

``read_module`` parses a module's text once: its unconditional top-level imports, the names
it binds, and its literal constants. ``module_functions`` lists its top-level functions and
the methods of its public classes; ``function_of`` decides for one of them whether it
qualifies (``DocstringsFilterConfig``: docstring, return value, private, method, length,
self-contained) and builds its source: the stdlib imports and literal constants it uses put
above it, with its docstring (the plain code row), without it (the answer), or as a
HumanEval-style stub (header and docstring), so every piece runs on its own. A method that
never reads ``self`` stands as a function with that parameter cut from its header.

Not here: which files are read and their licences, dedup, decontamination and the rows
(``docstrings.py``).
"""

from __future__ import annotations

import ast
import builtins
import copy
import symtable
import sys
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

from coder_align.config import NON_NEGATIVE, ONE_OR_MORE

STDLIB_MODULES = frozenset(sys.stdlib_module_names)
BUILTIN_NAMES = frozenset(dir(builtins))


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

