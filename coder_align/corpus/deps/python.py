"""Python imports -> files of the same repository, with Python's own ``ast`` parser.

Handled: ``import a.b``, ``from a.b import c`` (c may be a submodule or a name),
relative ``from . import x`` / ``from ..a import b``, and package imports (a package
resolves to its ``__init__.py``). Imports anywhere in the file count (inside
functions, ``try`` and ``if TYPE_CHECKING`` blocks too): they are all dependencies.

Module names: a file's name is its dotted path from the first ancestor directory that
is not a package (no ``__init__.py``), which covers ``src/`` layouts and scripts
importing siblings; its full repo-relative dotted path is registered too, for
namespace packages. When a name maps to several files, the one sharing the longest
directory prefix with the importer wins.

Files that ``ast`` cannot parse (Python 2, syntax errors) fall back to a line regex
and are counted by the caller under ``python_regex_fallback``.
"""

from __future__ import annotations

import ast
import posixpath
import re
from collections import Counter, defaultdict

_BODIES = ("body", "orelse", "finalbody")
_IMPORT_LINE = re.compile(r"^\s*(?:from\s+(\.*)([\w.]*)\s+import\s+([\w\s,()*]+)|import\s+([\w.\s,]+))", re.MULTILINE)


def _imports(text: str, counts: Counter) -> list[tuple[int, str, list[str]]]:
    """(level, module, names) triples; ``import a.b`` is (0, "a.b", [])."""
    if "import" not in text:  # exact shortcut: no import statement without the keyword
        return []
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        counts["python_regex_fallback"] += 1
        return _imports_regex(text)
    out = []
    # Imports are statements, and statements only live in statement lists, so walking
    # those finds every import while skipping the expression nodes (5x faster than ast.walk).
    stack = [tree.body]
    while stack:
        for node in stack.pop():
            if isinstance(node, ast.Import):
                out += [(0, alias.name, []) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                out.append((node.level, node.module or "", [a.name for a in node.names]))
            else:
                stack.extend(getattr(node, f) for f in _BODIES if hasattr(node, f))
                stack.extend(h.body for h in getattr(node, "handlers", ()))  # except clauses
                stack.extend(c.body for c in getattr(node, "cases", ()))  # match cases
    return out


def _imports_regex(text: str) -> list[tuple[int, str, list[str]]]:
    out = []
    for dots, module, names, plain in _IMPORT_LINE.findall(text):
        if plain:
            out += [(0, n.split()[0], []) for n in plain.split(",") if n.strip()]
        else:
            names = [n.split()[0] for n in names.replace("(", " ").replace(")", " ").split(",") if n.strip()]
            out.append((len(dots), module, names))
    return out


def _module_names(path: str, paths: set[str]) -> list[str]:
    directory, name = posixpath.split(path)
    stem = posixpath.splitext(name)[0]
    parts = [] if stem == "__init__" else [stem]
    full = [p for p in directory.split("/") if p] + parts
    package = list(parts)
    while directory and f"{directory}/__init__.py" in paths:
        directory, pkg = posixpath.split(directory)
        package.insert(0, pkg)
    names = {".".join(package), ".".join(full)}
    return [n for n in names if n]


def shared_dirs(a: str, b: str) -> int:
    """How many leading directories two paths share: the nearer candidate wins."""
    n = 0
    for x, y in zip(a.split("/")[:-1], b.split("/")[:-1]):
        if x != y:
            break
        n += 1
    return n


def python_dependencies(files: dict[str, str], all_paths: set[str], counts: Counter) -> dict[str, set[str]]:
    """For each Python file in ``files``, the repository files it imports."""
    py_paths = {p for p in all_paths if p.endswith((".py", ".pyi"))}
    index: dict[str, list[str]] = defaultdict(list)
    for p in sorted(py_paths):
        for name in _module_names(p, py_paths):
            index[name].append(p)

    def lookup(module: str, importer: str) -> str | None:
        cands = index.get(module)
        if not cands:
            return None
        return max(cands, key=lambda c: (shared_dirs(c, importer), -len(c)))

    def in_dir(directory: str, dotted: str) -> str | None:
        base = posixpath.join(directory, *dotted.split(".")) if dotted else directory
        for cand in (base + ".py", base + "/__init__.py", base + ".pyi", base + "/__init__.pyi"):
            if cand in py_paths:
                return posixpath.normpath(cand)
        return None

    deps: dict[str, set[str]] = {}
    for path, text in files.items():
        found: set[str] = set()
        for level, module, names in _imports(text, counts):
            if level:  # relative: resolve against the importer's package directory
                directory = posixpath.dirname(path)
                for _ in range(level - 1):
                    directory = posixpath.dirname(directory)
                subs = [in_dir(directory, f"{module}.{n}" if module else n) for n in names if n != "*"]
                found.update(s for s in subs if s)
                if module or not any(subs):
                    target = in_dir(directory, module)
                    if target:
                        found.add(target)
                continue
            subs = [lookup(f"{module}.{n}", path) for n in names if n != "*"]
            found.update(s for s in subs if s)
            if not names or not all(subs):
                target = lookup(module, path)
                if target:
                    found.add(target)
        found.discard(path)
        deps[path] = found
    return deps
