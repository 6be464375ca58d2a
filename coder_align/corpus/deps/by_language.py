"""Which extractor each language family uses, and `dependencies`, which runs them all."""


from __future__ import annotations

from collections import Counter

from coder_align.corpus.deps.cfamily import c_dependencies
from coder_align.corpus.deps.go_rust import go_dependencies, rust_dependencies
from coder_align.corpus.deps.javascript import js_dependencies
from coder_align.corpus.deps.jvm_dotnet import csharp_dependencies, java_dependencies
from coder_align.corpus.deps.python import python_dependencies
from coder_align.corpus.languages import language_of

# language family -> (languages in it, extractor(files, all_paths, counts))
FAMILIES = {
    "python": ({"python"}, python_dependencies),
    "java": ({"java"}, lambda f, paths, c: java_dependencies(f)),
    "csharp": ({"csharp"}, lambda f, paths, c: csharp_dependencies(f)),
    "c": ({"c", "cpp"}, lambda f, paths, c: c_dependencies(f, paths)),
    "javascript": ({"javascript", "typescript"}, lambda f, paths, c: js_dependencies(f, paths)),
    "go": ({"go"}, lambda f, paths, c: go_dependencies(f, paths)),
    "rust": ({"rust"}, lambda f, paths, c: rust_dependencies(f, paths)),
}


def dependencies(files: dict[str, str], counts: Counter | None = None) -> dict[str, set[str]]:
    """path -> the set of other paths in ``files`` that it depends on."""
    counts = Counter() if counts is None else counts
    all_paths = set(files)
    deps: dict[str, set[str]] = {p: set() for p in files}
    for languages, extract in FAMILIES.values():
        group = {p: t for p, t in files.items() if language_of(p) in languages}
        if group:
            for path, found in extract(group, all_paths, counts).items():
                deps[path] |= found & all_paths
    return deps
