"""Tree-sitter parsers and queries from the PyPI grammar wheels, built once per process.

Tree-sitter parses with error recovery, so a file with a syntax error (or a C header
full of macros) still yields its import nodes; and it never confuses an import inside
a comment or a string with a real one, which is where regexes go wrong.
"""

from __future__ import annotations

import importlib
from functools import lru_cache

import tree_sitter as ts

# grammar name -> (PyPI module, function returning the language pointer)
_GRAMMARS = {
    "java": ("tree_sitter_java", "language"),
    "csharp": ("tree_sitter_c_sharp", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
}


@lru_cache(maxsize=None)
def _language(grammar: str) -> ts.Language:
    module_name, func = _GRAMMARS[grammar]
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        pip_name = module_name.replace("_", "-")
        raise ImportError(f"dependency parsing for {grammar} needs the '{pip_name}' package: pip install {pip_name}") from e
    return ts.Language(getattr(module, func)())


@lru_cache(maxsize=None)
def _parser(grammar: str) -> ts.Parser:
    return ts.Parser(_language(grammar))


@lru_cache(maxsize=None)
def _query(grammar: str, source: str) -> ts.Query:
    return ts.Query(_language(grammar), source)


def parse(grammar: str, text: str) -> ts.Node:
    return _parser(grammar).parse(text.encode("utf-8")).root_node


def captures(grammar: str, root: ts.Node, query: str) -> dict[str, list[ts.Node]]:
    """Nodes captured by ``query`` under ``root``, by capture name, in source order."""
    found = ts.QueryCursor(_query(grammar, query)).captures(root)
    return {name: sorted(nodes, key=lambda n: n.start_byte) for name, nodes in found.items()}


def text_of(node: ts.Node) -> str:
    return node.text.decode("utf-8", errors="replace")
