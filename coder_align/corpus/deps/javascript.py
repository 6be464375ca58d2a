"""JavaScript / TypeScript imports -> files of the same repository (tree-sitter).

Handled: ``import ... from "./x"``, side-effect ``import "./x"``, ``export ... from``,
``require("./x")`` and dynamic ``import("./x")``. Only relative specifiers (``./``,
``../``) name repository files; bare specifiers are packages and are ignored (path
aliases from tsconfig/webpack are not read). Resolution follows Node/TypeScript:
the exact path, then with each extension, then ``index.*``; a ``./x.js`` specifier in
TypeScript may point at ``x.ts``.
"""

from __future__ import annotations

import posixpath

from coder_align.corpus.deps._ts import captures, parse, text_of

_QUERY = """
(import_statement source: (string (string_fragment) @src))
(export_statement source: (string (string_fragment) @src))
((call_expression function: (identifier) @fn arguments: (arguments . (string (string_fragment) @src)))
 (#eq? @fn "require"))
(call_expression function: (import) arguments: (arguments . (string (string_fragment) @src)))
"""
_EXTS = (".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts")


def _grammar(path: str) -> str:
    if path.endswith(".tsx"):
        return "tsx"
    return "typescript" if path.endswith((".ts", ".mts", ".cts")) else "javascript"


def js_dependencies(files: dict[str, str], all_paths: set[str]) -> dict[str, set[str]]:
    def resolve(spec: str, importer: str) -> str | None:
        if not spec.startswith(("./", "../")) and spec not in (".", ".."):
            return None
        base = posixpath.normpath(posixpath.join(posixpath.dirname(importer), spec))
        stem, ext = posixpath.splitext(base)
        cands = [base] + [base + e for e in _EXTS] + [f"{base}/index{e}" for e in _EXTS]
        if ext in (".js", ".jsx", ".mjs", ".cjs"):
            cands += [stem + e for e in (".ts", ".tsx", ".mts", ".cts")]
        return next((c for c in cands if c in all_paths), None)

    deps: dict[str, set[str]] = {}
    for path, text in files.items():
        grammar = _grammar(path)
        caps = captures(grammar, parse(grammar, text), _QUERY)
        found = {resolve(text_of(n), path) for n in caps.get("src", ())}
        found -= {None, path}
        deps[path] = found
    return deps
