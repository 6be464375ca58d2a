"""Go imports and Rust ``mod`` / ``use`` -> files of the same repository (tree-sitter).

Go: an import path names a package, i.e. a directory; it resolves to the non-test
``.go`` files of the repository directory that is the longest suffix of the import
path (``example.com/proj/internal/util`` -> ``internal/util/``), so ``go.mod`` need
not be read. Files of one package use each other without imports; those edges are
not made (the package's files still meet in one component when anything imports it).

Rust: each file gets its module path inside its crate (the directory holding ``src``
is the crate; ``src/lib.rs``/``main.rs`` is its root, ``a.rs`` and ``a/mod.rs`` are
module ``a``). ``mod x;`` depends on the child module's file; a ``use`` path
(``crate::``, ``self::``, ``super::``, a child module, or a crate of the repository
named by its directory: ``Cargo.toml`` is not read)
depends on the file of its longest module prefix. Macros' paths are not followed.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict

from coder_align.corpus.deps._ts import captures, parse, text_of

_GO_QUERY = "(import_spec path: (interpreted_string_literal (interpreted_string_literal_content) @path))"
_RUST_QUERY = """
(use_declaration argument: (_) @use)
(mod_item !body name: (identifier) @mod)
"""


def go_dependencies(files: dict[str, str], all_paths: set[str]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = defaultdict(set)
    for p in all_paths:
        if p.endswith(".go") and not p.endswith("_test.go"):
            packages[posixpath.dirname(p)].add(p)
    named = [d for d in packages if d]  # the root package's import path is only in go.mod

    def resolve(import_path: str) -> set[str]:
        hits = [d for d in named if import_path == d or import_path.endswith("/" + d)]
        return packages[max(hits, key=len)] if hits else set()

    deps: dict[str, set[str]] = {}
    for path, text in files.items():
        found: set[str] = set()
        for node in captures("go", parse("go", text), _GO_QUERY).get("path", ()):
            found |= resolve(text_of(node))
        found.discard(path)
        deps[path] = found
    return deps


def _rust_module(path: str) -> tuple[str, tuple[str, ...]]:
    """(crate directory, module path) of a .rs file."""
    parts = path.split("/")
    if "src" in parts:
        i = len(parts) - 1 - parts[::-1].index("src")
        crate, inner = "/".join(parts[:i]), parts[i + 1:]
    else:  # tests/, examples/, benches/: each file is a crate root of its own
        crate, inner = path, [posixpath.basename(path)]
    stem = inner[-1][:-3]
    if stem in ("mod",) or (len(inner) == 1 and stem in ("lib", "main")) or crate == path:
        return crate, tuple(inner[:-1])
    return crate, tuple(inner[:-1]) + (stem,)


def _expand(node) -> list[list[str]]:
    """Every path a use tree names: `a::{b, c::D}` -> [[a, b], [a, c, D]]."""
    kind = node.type
    if kind == "use_as_clause":
        return _expand(node.child_by_field_name("path"))
    if kind == "use_wildcard":
        return [p for c in node.named_children for p in _expand(c)] or [[]]
    if kind == "use_list":
        return [p for c in node.named_children for p in _expand(c)]
    if kind == "scoped_use_list":
        head = node.child_by_field_name("path")
        prefix = text_of(head).split("::") if head else []
        return [prefix + p for p in _expand(node.child_by_field_name("list"))]
    return [[s.strip() for s in text_of(node).split("::")]]


def rust_dependencies(files: dict[str, str], all_paths: set[str]) -> dict[str, set[str]]:
    modules: dict[tuple[str, tuple[str, ...]], str] = {}
    crate_names: dict[str, str] = {}
    for p in sorted(all_paths):
        if p.endswith(".rs"):
            crate, mod = _rust_module(p)
            modules.setdefault((crate, mod), p)
            if crate != p:
                crate_names[posixpath.basename(crate).replace("-", "_") or "crate"] = crate

    def longest(crate: str, segs: list[str]) -> str | None:
        for cut in range(len(segs), -1, -1):
            hit = modules.get((crate, tuple(segs[:cut])))
            if hit:
                return hit
        return None

    def resolve(segs: list[str], crate: str, here: tuple[str, ...]) -> str | None:
        segs = [s for s in segs if s and s != "*"]
        if segs and segs[-1] == "self":
            segs = segs[:-1]
        if not segs:
            return None
        head = segs[0]
        if head == "crate":
            return longest(crate, segs[1:])
        if head in ("self", "super"):
            base = list(here)
            while segs and segs[0] in ("self", "super"):
                if segs.pop(0) == "super" and base:
                    base.pop()
            return longest(crate, base + segs) if segs or base else None
        if head in crate_names:
            return longest(crate_names[head], segs[1:])
        child = modules.get((crate, here + (head,)))  # 2018 edition: a child module
        return longest(crate, list(here) + segs) if child else None

    deps: dict[str, set[str]] = {}
    for path, text in files.items():
        crate, here = _rust_module(path)
        caps = captures("rust", parse("rust", text), _RUST_QUERY)
        found = {modules.get((crate, here + (text_of(n),))) for n in caps.get("mod", ())}
        for node in caps.get("use", ()):
            found |= {resolve(segs, crate, here) for segs in _expand(node)}
        found -= {None, path}
        deps[path] = found
    return deps
