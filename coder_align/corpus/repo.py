"""Repository-level ordering: files sorted by dependency, one sample per component.

The reference algorithm (DeepSeek-Coder V1, Algorithm 1): an edge B -> A when A depends
on B; split the graph into (weakly) connected components; in each, repeatedly place the
unplaced file with the smallest in-degree -- not only zero, so cycles do not stall --
and decrement the in-degree of the files that depend on it. Ties are broken by a
seeded RNG: each file draws one random key up front and the smallest key wins a tie,
which picks uniformly among tied files and lets a heap do the argmin, so a component
of n files and e edges costs O((n + e) log n) instead of the naive O(n^2).

Components come out ordered by their first path (sorted), so output is deterministic
for a given seed. Each sample is the component's files concatenated in order, each
preceded by a one-line comment with its path in that file's comment syntax.
"""

from __future__ import annotations

import heapq
import os
import random
from collections import Counter, defaultdict

from coder_align.corpus.deps import dependencies
from coder_align.corpus.languages import language_of, path_comment


def _components(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    neighbours: dict[str, set[str]] = defaultdict(set)
    for a, targets in edges.items():
        for b in targets:
            neighbours[a].add(b)
            neighbours[b].add(a)
    seen: set[str] = set()
    out = []
    for start in sorted(nodes):
        if start in seen:
            continue
        seen.add(start)
        stack, comp = [start], []
        while stack:
            node = stack.pop()
            comp.append(node)
            for nb in neighbours[node] - seen:
                seen.add(nb)
                stack.append(nb)
        out.append(sorted(comp))
    return out


def order_graph(deps: dict[str, set[str]], seed: int = 0) -> list[list[str]]:
    """Ordered components of a dependency map (path -> paths it depends on)."""
    rng = random.Random(seed)
    nodes = sorted(deps)
    tie = {p: rng.random() for p in nodes}  # drawn in sorted order: reproducible per seed
    dependents: dict[str, list[str]] = defaultdict(list)  # B -> [A, ...] when A depends on B
    in_degree = {p: 0 for p in nodes}
    for a in nodes:
        for b in deps[a]:
            if b != a and b in in_degree:
                dependents[b].append(a)
                in_degree[a] += 1
    ordered = []
    for comp in _components(nodes, {a: {b for b in deps[a] if b in in_degree} for a in nodes}):
        heap = [(in_degree[p], tie[p], p) for p in comp]
        heapq.heapify(heap)
        placed: set[str] = set()
        result = []
        while heap:
            degree, _, p = heapq.heappop(heap)
            if p in placed or degree != in_degree[p]:
                continue  # stale entry: the file was placed or its in-degree dropped
            placed.add(p)
            result.append(p)
            for a in dependents[p]:
                if a not in placed:
                    in_degree[a] -= 1
                    heapq.heappush(heap, (in_degree[a], tie[a], a))
        ordered.append(result)
    return ordered


def order_components(files: dict, seed: int = 0, counts: Counter | None = None) -> list[list]:
    """Components of ``files`` (path -> text), each a list of paths in placement order.

    Paths may be ``str`` or ``os.PathLike``; the returned items are the caller's keys.
    """
    keys = {os.fspath(k).replace(os.sep, "/"): k for k in files}
    if len(keys) != len(files):
        raise ValueError("order_components: two paths in files name the same file")
    deps = dependencies({p: files[k] for p, k in keys.items()}, counts)
    return [[keys[p] for p in comp] for comp in order_graph(deps, seed)]


def order_files(files: dict, seed: int = 0) -> list:
    """All paths of ``files`` in repository order: components one after another."""
    return [p for comp in order_components(files, seed) for p in comp]


def render_sample(paths: list[str], files: dict[str, str]) -> tuple[str, str]:
    """(text, language) of one component; the language is the one with most characters."""
    parts, sizes = [], Counter()
    for p in paths:
        language = language_of(p) or "text"
        text = files[p] if files[p].endswith("\n") else files[p] + "\n"
        parts.append(f"{path_comment(p, language)}\n{text}")
        sizes[language] += len(text)
    return "".join(parts), max(sorted(sizes), key=sizes.__getitem__)
