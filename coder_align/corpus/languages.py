"""Language by file name, and each language's comment syntax for the path header.

Only files whose extension (or exact name, for Makefile and friends) is listed here
enter the corpus; everything else is skipped and counted by the walker. Languages
without comments (JSON, plain text) get ``//``-style headers, the JSONC convention:
the header is a marker for the model, not something a JSON parser will read back.
"""

from __future__ import annotations

import posixpath

EXTENSIONS: dict[str, str] = {
    ".py": "python", ".pyi": "python",
    ".java": "java",
    ".cs": "csharp",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".c++": "cpp", ".hpp": "cpp", ".hh": "cpp",
    ".hxx": "cpp", ".h++": "cpp", ".inl": "cpp", ".ipp": "cpp", ".cu": "cpp", ".cuh": "cpp",
    ".js": "javascript", ".jsx": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".ts": "typescript", ".tsx": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".go": "go",
    ".rs": "rust",
    ".kt": "kotlin", ".kts": "kotlin", ".scala": "scala", ".swift": "swift",
    ".rb": "ruby", ".php": "php", ".pl": "perl", ".pm": "perl", ".lua": "lua",
    ".r": "r", ".jl": "julia", ".hs": "haskell", ".ml": "ocaml", ".mli": "ocaml",
    ".ex": "elixir", ".exs": "elixir", ".erl": "erlang", ".clj": "clojure", ".dart": "dart",
    ".sh": "shell", ".bash": "shell", ".zsh": "shell", ".ps1": "powershell",
    ".sql": "sql", ".proto": "protobuf", ".cmake": "cmake", ".m": "objective-c", ".mm": "objective-c",
    ".html": "html", ".htm": "html", ".css": "css", ".scss": "scss", ".vue": "vue",
    ".xml": "xml", ".xsl": "xslt", ".xslt": "xslt",
    ".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml",
    ".md": "markdown", ".rst": "restructuredtext", ".tex": "tex",
}
FILENAMES: dict[str, str] = {
    "Makefile": "makefile", "GNUmakefile": "makefile", "Dockerfile": "dockerfile",
    "CMakeLists.txt": "cmake",
}

# language -> (opening, closing) of a one-line comment
_HASH = ("# ", "")
_SLASH = ("// ", "")
_BLOCK = ("/* ", " */")
_ANGLE = ("<!-- ", " -->")
_DASH = ("-- ", "")
_PCT = ("% ", "")
COMMENTS: dict[str, tuple[str, str]] = {
    "python": _HASH, "ruby": _HASH, "perl": _HASH, "r": _HASH, "julia": _HASH, "elixir": _HASH,
    "shell": _HASH, "powershell": _HASH, "yaml": _HASH, "toml": _HASH, "makefile": _HASH,
    "dockerfile": _HASH, "cmake": _HASH,
    "java": _SLASH, "csharp": _SLASH, "c": _SLASH, "cpp": _SLASH, "javascript": _SLASH,
    "typescript": _SLASH, "go": _SLASH, "rust": _SLASH, "kotlin": _SLASH, "scala": _SLASH,
    "swift": _SLASH, "php": _SLASH, "dart": _SLASH, "protobuf": _SLASH, "objective-c": _SLASH,
    "scss": _SLASH, "json": _SLASH,
    "css": _BLOCK, "ocaml": ("(* ", " *)"),
    "html": _ANGLE, "xml": _ANGLE, "xslt": _ANGLE, "markdown": _ANGLE, "vue": _ANGLE,
    "restructuredtext": (".. ", ""),
    "lua": _DASH, "haskell": _DASH, "sql": _DASH,
    "erlang": _PCT, "tex": _PCT, "clojure": (";; ", ""),
}


def language_of(path: str) -> str | None:
    """The language of a path by its name, or None when it is not a known source file."""
    name = posixpath.basename(path)
    if name in FILENAMES:
        return FILENAMES[name]
    _, ext = posixpath.splitext(name)
    return EXTENSIONS.get(ext.lower())


def path_comment(path: str, language: str) -> str:
    """One comment line naming ``path`` in ``language``'s syntax (no trailing newline)."""
    start, end = COMMENTS.get(language, _SLASH)
    return f"{start}{path}{end}"
