"""Which licence a source file is under, and whether it is permissive enough to train on.

A file's licence comes from, in order:

1. a declaration by the user (`DIR=SPDX`, for code of your own);
2. the installed distribution that lists the file in its `RECORD` (found through
   `importlib.metadata` in the nearest parent directory holding `*.dist-info`), whose
   metadata is read as `License-Expression` (SPDX), else the `License :: ...` classifiers,
   else a short `License` field;
3. the CPython standard library: a directory holding `os.py` and the PSF `LICENSE.txt`
   (PSF-2.0), except what is installed below it (`site-packages`).

Anything else is unknown, and unknown is never assumed permissive: the caller skips the file
and counts it. An SPDX expression is permissive when some `OR` branch has only allowed ids
joined by `AND` (`WITH` exceptions are ignored: they only add permissions); classifiers must
all be allowed (two classifiers usually mean "either", but a GPL one beside MIT is ambiguous,
so it is refused).

Not here: licence *text* recognition (a LICENSE file's wording); declare such code with `DIR=SPDX`.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from dataclasses import dataclass
from pathlib import Path

# SPDX ids of permissive licences (no copyleft, attribution at most).
PERMISSIVE = frozenset({
    "MIT", "MIT-0", "MIT-CMU", "BSD-2-Clause", "BSD-3-Clause", "0BSD", "Apache-2.0", "PSF-2.0", "Python-2.0",
    "CNRI-Python", "ISC", "Unlicense", "Zlib", "CC0-1.0", "BSL-1.0", "HPND",
})
# The last part of `License :: OSI Approved :: ...` (and a few outside OSI) -> SPDX id.
CLASSIFIERS = {
    "MIT License": "MIT", "MIT No Attribution License (MIT-0)": "MIT-0", "BSD License": "BSD-3-Clause",
    "Apache Software License": "Apache-2.0", "Python Software Foundation License": "PSF-2.0",
    "ISC License (ISCL)": "ISC", "The Unlicense (Unlicense)": "Unlicense", "zlib/libpng License": "Zlib",
    "Boost Software License 1.0 (BSL-1.0)": "BSL-1.0", "CC0 1.0 Universal (CC0 1.0) Public Domain Dedication": "CC0-1.0",
    "Historical Permission Notice and Disclaimer (HPND)": "HPND",
}
# Classifiers that say nothing about which licence applies.
_META_CLASSIFIERS = {"License :: OSI Approved", "License :: DFSG approved"}
# Free-text `License` fields seen in the wild, lower-cased, -> SPDX id.
_NAMES = {
    "mit": "MIT", "mit license": "MIT", "the mit license": "MIT", "bsd": "BSD-3-Clause",
    "bsd license": "BSD-3-Clause", "3-clause bsd license": "BSD-3-Clause", "bsd 3-clause license": "BSD-3-Clause",
    "new bsd license": "BSD-3-Clause", "bsd 2-clause license": "BSD-2-Clause", "simplified bsd": "BSD-2-Clause",
    "apache": "Apache-2.0", "apache 2.0": "Apache-2.0", "apache 2": "Apache-2.0", "apache license 2.0": "Apache-2.0",
    "apache license, version 2.0": "Apache-2.0", "apache 2.0 license": "Apache-2.0",
    "apache software license": "Apache-2.0", "apache software license 2.0": "Apache-2.0",
    "isc": "ISC", "isc license": "ISC", "psf": "PSF-2.0", "psf license": "PSF-2.0",
    "python software foundation license": "PSF-2.0", "unlicense": "Unlicense", "public domain": "Unlicense",
}
STDLIB = "PSF-2.0"
_INSTALLED = frozenset({"site-packages", "dist-packages"})


@dataclass(frozen=True)
class Licence:
    name: str  # what the metadata says, shortened, or "unknown"
    source: str  # "declared", "python3.11 stdlib", or the distribution's name
    permissive: bool


UNKNOWN = Licence("unknown", "", False)


def spdx_permissive(expression: str) -> bool:
    """Whether an SPDX expression allows training under a permissive licence.

    >>> spdx_permissive("Apache-2.0 OR BSD-2-Clause"), spdx_permissive("MPL-2.0 AND MIT")
    (True, False)
    >>> spdx_permissive("Apache-2.0 WITH LLVM-exception AND MIT")
    True
    """
    text = expression.replace("(", " ").replace(")", " ")
    for branch in re.split(r"\s+OR\s+", text.strip()):
        ids = [re.split(r"\s+WITH\s+", part.strip())[0].strip() for part in re.split(r"\s+AND\s+", branch)]
        if ids and all(i in PERMISSIVE for i in ids):
            return True
    return False


def _looks_like_spdx(text: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9.+\-]+(\s+(AND|OR|WITH)\s+[A-Za-z0-9.+\-]+)*", text.strip()))


def metadata_licence(metadata, source: str) -> Licence:
    """The licence that a distribution's metadata states (see the module docstring for the order)."""
    expression = (metadata.get("License-Expression") or "").strip()
    if expression:
        return Licence(expression, source, spdx_permissive(expression))
    classifiers = [c.strip() for c in (metadata.get_all("Classifier") or []) if c.startswith("License ::")]
    classifiers = [c for c in classifiers if c not in _META_CLASSIFIERS]
    if classifiers:
        names = [c.rsplit("::", 1)[-1].strip() for c in classifiers]
        ids = [CLASSIFIERS.get(n) for n in names]
        return Licence(" AND ".join(i or n for i, n in zip(ids, names)), source,
                       all(i in PERMISSIVE for i in ids))
    field = (metadata.get("License") or "").strip()
    if field and "\n" not in field and len(field) <= 80:
        spdx = _NAMES.get(field.lower().rstrip("."))
        if spdx:
            return Licence(spdx, source, True)
        if _looks_like_spdx(field):
            return Licence(field, source, spdx_permissive(field))
    return Licence("unknown", source, False)


def is_cpython_stdlib(directory: Path) -> bool:
    licence = directory / "LICENSE.txt"
    if not ((directory / "os.py").is_file() and licence.is_file()):
        return False
    return "PYTHON SOFTWARE FOUNDATION LICENSE" in licence.read_text(encoding="utf-8", errors="replace")


def _dist_root(path: Path) -> Path | None:
    """The nearest directory at or above `path` that holds installed distributions' metadata."""
    for directory in (path, *path.parents):
        if directory.is_dir() and any(directory.glob("*.dist-info")):
            return directory
    return None


class LicenceMap:
    """Licences of the files under the directories being mined (one lookup per file)."""

    def __init__(self, declared: dict[str, str] | None = None):
        self.declared = {Path(d).resolve(): spdx for d, spdx in (declared or {}).items()}
        self.files: dict[Path, Licence] = {}  # resolved file -> licence of the distribution owning it
        self.stdlib: list[Path] = []
        self.scanned: set[Path] = set()

    def add_root(self, root: str | os.PathLike) -> None:
        """Learn what is needed to judge the files under `root`."""
        root = Path(root).resolve()
        if is_cpython_stdlib(root):
            self.stdlib.append(root)
        dist_root = _dist_root(root)
        if dist_root is None or dist_root in self.scanned:
            return
        self.scanned.add(dist_root)
        for dist in importlib.metadata.distributions(path=[str(dist_root)]):
            licence = metadata_licence(dist.metadata, dist.metadata.get("Name") or "?")
            for f in dist.files or []:  # RECORD; None for a distribution installed without one
                self.files[(dist_root / f).resolve()] = licence

    def licence_of(self, path: str | os.PathLike) -> Licence:
        path = Path(path).resolve()
        for directory, spdx in self.declared.items():
            if path.is_relative_to(directory):
                return Licence(spdx, "declared", spdx_permissive(spdx))
        if path in self.files:
            return self.files[path]
        # an installed package below the standard library's folder is not the standard library
        inside = [d for d in self.stdlib if path.is_relative_to(d)]
        if inside and not _INSTALLED.intersection(path.relative_to(inside[0]).parts):
            return Licence(STDLIB, f"{inside[0].name} stdlib", True)
        return UNKNOWN
