"""Dependency extraction: which files of a repository each file needs.

``dependencies(files)`` maps every path to the set of repository paths it imports /
includes / uses. Python uses the standard ``ast`` parser; Java, C#, C/C++, JS/TS, Go
and Rust use tree-sitter grammars from PyPI (see ``_ts.py`` for why not regexes).
Other languages get no edges: they still land in the corpus, as single-file
components. Imports of anything outside the repository are ignored.
"""

from coder_align.corpus.deps.by_language import FAMILIES, dependencies

__all__ = ["FAMILIES", "dependencies"]
