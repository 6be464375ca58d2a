"""The corpus build's files: what its tasks write and read, and how.

- written atomically (``atomic``): a file appears under its name only once written in full,
  so a killed task leaves nothing that looks complete;
- numpy arrays of sorted records (band keys, digests, pairs) read back memory-mapped, in
  key ranges (``sorted_slice``) or in copied chunks for the k-way merges (``chunks``);
- the plan and the shard lists (``plan.json``, ``shards/<rank>.json``) under the work directory;
- the output shards (``ShardWriter``: JSONL or parquet) and their checksums.

Not here: what the tasks compute (``pipeline.py``) and what they record about themselves
(``records.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

CHUNK = 1024  # records read at a time per shard in a merge: memory is shards x CHUNK records
TMP_MARK = ".tmp"


@contextmanager
def atomic(path: Path, mode: str = "w"):
    """Open a temporary sibling of ``path``; it becomes ``path`` only if the block completes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            yield f
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def save_array(path: Path, array: np.ndarray) -> None:
    with atomic(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def load_array(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)


def load_plan(work: Path) -> dict:
    return json.loads((work / "plan.json").read_text(encoding="utf-8"))


def shard_repos(work: Path, rank: int) -> list[list]:
    """[[repo index, path, name], ...] of shard ``rank``, in corpus order."""
    return json.loads((work / "shards" / f"{rank:05d}.json").read_text(encoding="utf-8"))


def band_dtype(rows: int) -> np.dtype:
    # big-endian values as one byte string: byte order == numeric order of the band's tuple
    return np.dtype([("key", f"S{4 * rows}"), ("repo", "<u8")])


DIGEST = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("repo", "<u8"), ("file", "<u8")])
PAIR = np.dtype([("repo", "<i8"), ("file", "<i8")])


def digest_range(part: int, parts: int) -> tuple[int, int]:
    """Task ``part`` of ``exact`` owns digests whose first 8 bytes lie in [lo, hi)."""
    return part * (1 << 64) // parts, (part + 1) * (1 << 64) // parts


def bounds(keys: np.ndarray, lo: int, hi: int) -> tuple[int, int]:
    """(start, end) of the sorted integer ``keys`` with lo <= key < hi (hi may be 2**64)."""
    top = np.iinfo(keys.dtype).max
    start = int(np.searchsorted(keys, keys.dtype.type(lo), "left")) if lo <= top else len(keys)
    end = int(np.searchsorted(keys, keys.dtype.type(hi), "left")) if hi <= top else len(keys)
    return start, end


def sorted_slice(array: np.ndarray, lo: int, hi: int, field: str | None = None) -> np.ndarray:
    """The rows of ``array`` (sorted by ``field``, or by value) with lo <= key < hi."""
    start, end = bounds(np.asarray(array if field is None else array[field]), lo, hi)
    return array[start:end]


def chunks(path: Path, pick, size: int = CHUNK):
    """``pick(array in path)`` (a view) in copied chunks; the file is reopened per chunk so that
    a merge over thousands of shards keeps no file open (mmap holds a descriptor)."""
    start = 0
    while True:
        chunk = np.array(pick(load_array(path))[start:start + size])
        if not len(chunk):
            return
        yield chunk
        start += size


class ShardWriter:
    """Samples of one shard to ``path`` (JSONL, or parquet in row groups)."""

    def __init__(self, path: Path, fmt: str, row_group: int = 1000):
        self.path, self.fmt, self.row_group = path, fmt, row_group
        self.rows, self.parquet = [], None

    def __enter__(self):
        self.context = atomic(self.path, "wb")
        self.file = self.context.__enter__()
        return self

    def write(self, row: dict) -> None:
        if self.fmt == "jsonl":
            self.file.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
            return
        self.rows.append(row)
        if len(self.rows) >= self.row_group:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(self.rows, schema=pa.schema(
            [("text", pa.string()), ("repo", pa.string()), ("files", pa.list_(pa.string())), ("language", pa.string())]))
        if self.parquet is None:
            self.parquet = pq.ParquetWriter(self.file, table.schema)
        self.parquet.write_table(table)
        self.rows = []

    def __exit__(self, *exc):
        if exc[0] is None and self.fmt == "parquet":
            if self.rows or self.parquet is None:
                self._flush()
            self.parquet.close()
        return self.context.__exit__(*exc)


def shard_name(rank: int, fmt: str) -> str:
    return f"shard-{rank:05d}.{fmt}"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
