"""Exact file dedup and repository-level MinHash near-dedup (``datasketch``).

Near-dedup works on whole repositories, as DeepSeek-Coder did: all kept files of a
repository, concatenated in path order, are one document. Its shingles are 5-grams of
word tokens (``\\w+``, so formatting changes do not matter), hashed to 32 bits with
numpy and fed to a ``datasketch.MinHash``; ``MinHashLSH``'s bands find candidates and the
estimated Jaccard similarity confirms them (LSH alone has false positives). The first
repository seen is kept; later near-copies (forks, vendored snapshots) are dropped.

Exact dedup drops a file whose bytes equal a file already kept anywhere in the corpus.

Two forms of the same decisions:

- ``NearDedup`` / ``ExactDedup``: in memory, one repository after another (the index
  grows with the corpus). The reference the tests check the pipeline against.
- the pure pieces the disk-backed pipeline (``pipeline.py``) is made of: ``signature``,
  ``lsh_bands``, ``band_edges`` (verified pairs within one LSH band group) and
  ``greedy_removals`` ("first kept wins", replayed over those pairs in corpus order).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from datasketch import MinHash, MinHashLSH

_WORD = re.compile(r"\w+")
_MASK32 = np.uint64(0xFFFFFFFF)
_MULT = np.uint64(0x9E3779B1)  # odd 32-bit constant: mixes token hashes position-dependently
_BATCH = 50_000  # shingles per update_batch call: bounds its (batch x num_perm) matrix


class ExactDedup:
    def __init__(self) -> None:
        self.seen: set[bytes] = set()

    def is_duplicate(self, text: str) -> bool:
        """True when the same text was seen before; records it otherwise."""
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
        if digest in self.seen:
            return True
        self.seen.add(digest)
        return False


def shingle_hashes(text: str, ngram: int = 5) -> np.ndarray:
    """Unique 32-bit hashes of the word n-grams of ``text`` (one shingle if it is shorter)."""
    tokens = _WORD.findall(text)
    vocab = {t: zlib.crc32(t.encode("utf-8")) for t in set(tokens)}
    ids = np.fromiter(map(vocab.__getitem__, tokens), dtype=np.uint64, count=len(tokens))
    n = min(ngram, len(ids))
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    h = np.zeros(len(ids) - n + 1, dtype=np.uint64)
    for k in range(n):  # h = sum ids[i + k] * MULT^(n - k), wrapping mod 2^64
        h = (h + ids[k:len(ids) - n + 1 + k]) * _MULT
    # sort + mask instead of np.unique, which is ~50x slower here on numpy 2.x
    h = np.sort(h & _MASK32)
    return h[np.concatenate(([True], h[1:] != h[:-1]))]


def minhash(text: str, num_perm: int = 128, ngram: int = 5) -> MinHash:
    from datasketch import MinHash  # ~0.5 s (it loads scipy): only where hashing runs

    m = MinHash(num_perm=num_perm, hashfunc=int)
    hashes = shingle_hashes(text, ngram)
    for start in range(0, len(hashes), _BATCH):
        m.update_batch(hashes[start:start + _BATCH].tolist())
    return m


def signature(text: str, num_perm: int = 128, ngram: int = 5) -> np.ndarray:
    """The MinHash values of ``text`` as uint32 (num_perm,): what ``NearDedup`` compares."""
    return minhash(text, num_perm, ngram).hashvalues.astype(np.uint32)


def _lsh(threshold: float, num_perm: int) -> MinHashLSH:
    from datasketch import MinHashLSH  # ~0.5 s (it loads scipy): only where banding runs

    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"dedup threshold must be in (0, 1], got {threshold!r}")
    try:
        return MinHashLSH(threshold=threshold, num_perm=num_perm)
    except ValueError as e:  # e.g. 0.99: datasketch finds no band layout with >= 2 bands
        raise ValueError(f"dedup threshold {threshold} with num_perm={num_perm} is unusable: {e}; "
                         "use a threshold <= 0.98") from e


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) that ``MinHashLSH`` picks: two repositories are candidates when
    the values of one band, ``sig[b * rows:(b + 1) * rows]``, are equal."""
    lsh = _lsh(threshold, num_perm)
    return lsh.b, lsh.r


def band_edges(ids: list[int], sigs: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Verified pairs ``(later, earlier)`` among repositories sharing one band's values.

    ``ids`` ascending, ``sigs`` (len(ids), num_perm). A repository whose whole signature
    equals an earlier one's gets ``(later, later)``: it is removed whatever happens to the
    earlier one (same bands, same similarity to every third repository), so it is left out
    of the pairwise check -- a band group of a thousand unchanged forks costs one row each,
    not half a million comparisons.
    """
    _, first, inverse = np.unique(sigs, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    edges, distinct = [], []
    for k, repo in enumerate(ids):
        if first[inverse[k]] != k:
            edges.append((repo, repo))
            continue
        if distinct:
            rows = np.asarray(distinct)
            equal = np.count_nonzero(sigs[rows] == sigs[k], axis=1)
            edges += [(repo, ids[i]) for i in rows[equal / float(sigs.shape[1]) >= threshold].tolist()]
        distinct.append(k)
    return edges


def greedy_removals(edges: np.ndarray) -> np.ndarray:
    """Repositories removed as near-duplicates, sorted, from all verified pairs (j, i), i <= j.

    Replays ``NearDedup`` in corpus order: j goes when some i < j that was kept is similar
    to it; ``(j, j)`` means j goes in any case (``band_edges``). Pairs seen in several bands
    may repeat. Holds the pairs and the removed ids, not the signatures.
    """
    if len(edges) == 0:
        return np.zeros(0, dtype=np.int64)
    edges = np.unique(np.asarray(edges, dtype=np.int64).reshape(-1, 2), axis=0)  # sorted by (j, i)
    removed: set[int] = set()
    starts = np.flatnonzero(np.concatenate(([True], edges[1:, 0] != edges[:-1, 0])))
    for j, earlier in zip(edges[starts, 0].tolist(), np.split(edges[:, 1], starts[1:])):
        if any(i == j or i not in removed for i in earlier.tolist()):
            removed.add(j)
    return np.array(sorted(removed), dtype=np.int64)


class NearDedup:
    """Keeps the first of each group of repositories with Jaccard >= threshold."""

    def __init__(self, threshold: float = 0.7, num_perm: int = 128, ngram: int = 5):
        self.threshold, self.num_perm, self.ngram = threshold, num_perm, ngram
        self.lsh = _lsh(threshold, num_perm)
        self.kept: dict[str, MinHash] = {}

    def duplicate_of(self, key: str, text: str) -> str | None:
        """The kept repository that ``text`` nearly duplicates, or None (then it is kept)."""
        m = minhash(text, self.num_perm, self.ngram)
        for other in sorted(self.lsh.query(m)):
            if m.jaccard(self.kept[other]) >= self.threshold:
                return other
        if key in self.kept:
            raise ValueError(f"near-dedup: repository key {key!r} added twice")
        self.lsh.insert(key, m)
        self.kept[key] = m
        return None
