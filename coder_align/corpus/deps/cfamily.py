"""C and C++ ``#include`` -> files of the same repository (tree-sitter, C++ grammar).

The C++ grammar parses C too, and headers are often C++ whatever their extension, so
one grammar serves the whole family. Quoted includes are looked up the way compilers
do: next to the including file, then from the repository root, then in any directory
of the repository (projects put ``-Iinclude`` or ``-Isrc`` on the command line, which
we cannot see), preferring the candidate closest to the includer. Angle includes
resolve only when they carry a directory (``<mylib/util.h>``) that matches a repository
path: a bare ``<string.h>`` is the system's, even if the repository has one.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict

from coder_align.corpus.deps._ts import captures, parse, text_of
from coder_align.corpus.deps.python import shared_dirs

_QUERY = """
(preproc_include path: (string_literal (string_content) @quoted))
(preproc_include path: (system_lib_string) @angle)
"""


def c_dependencies(files: dict[str, str], all_paths: set[str]) -> dict[str, set[str]]:
    by_name: dict[str, list[str]] = defaultdict(list)
    for p in sorted(all_paths):
        by_name[posixpath.basename(p)].append(p)

    def resolve(include: str, importer: str, quoted: bool) -> str | None:
        if quoted:
            for cand in (posixpath.join(posixpath.dirname(importer), include), include):
                cand = posixpath.normpath(cand)
                if cand in all_paths:
                    return cand
        elif "/" not in include:
            return None
        tail = posixpath.normpath(include).lstrip("./")
        hits = [p for p in by_name.get(posixpath.basename(tail), ()) if p == tail or p.endswith("/" + tail)]
        return max(hits, key=lambda p: (shared_dirs(p, importer), -len(p)), default=None)

    deps: dict[str, set[str]] = {}
    for path, text in files.items():
        caps = captures("cpp", parse("cpp", text), _QUERY)
        found = {resolve(text_of(n), path, True) for n in caps.get("quoted", ())}
        found |= {resolve(text_of(n)[1:-1], path, False) for n in caps.get("angle", ())}
        found -= {None, path}
        deps[path] = found
    return deps
