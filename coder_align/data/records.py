"""Read instruction data and turn each row into chat messages, naming file and line on error.

Accepted sources: JSONL, JSON (a list of rows, or {"data": [...]}), parquet, or a hub
dataset name (through `datasets`). Accepted row formats:

- DeepSeek fine-tuning: {"instruction", "output"}
- Alpaca: {"instruction", "input", "output"}
- Chat: {"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}
- Prompt/completion: {"prompt", "completion"}
- Code document: {"text"} (plain code; trained like pretraining, with optional FIM)

Every problem is a `DataError` whose message starts with `file:line:` and names the field.
With `on_invalid="skip"` the bad row is skipped and counted by reason instead.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from coder_align.templates import TemplateError, validate_messages


MAX_EXAMPLES = 10  # skipped rows named in summary.json, so they can be found and fixed


class DataError(ValueError):
    """A row or file that cannot be used; `reason` is a short key for counting."""

    def __init__(self, where: str, message: str, reason: str):
        super().__init__(f"{where}: {message}")
        self.where, self.reason = where, reason


@dataclass
class Row:
    data: dict[str, Any]
    where: str  # "file.jsonl:12" or "org/dataset[train]#5"


@dataclass
class ReadStats:
    rows_read: int = 0
    invalid: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)  # the first skipped rows, "file:line: why"

    @property
    def rows_invalid(self) -> int:
        return sum(self.invalid.values())


def iter_rows(path: str, split: str = "train") -> Iterator[Row | DataError]:
    """Yield rows (or the error for an unreadable line, so the caller can skip and count it)."""
    p = Path(path)
    suffix = "".join(p.suffixes[-2:]) if p.suffix == ".gz" else p.suffix
    if p.is_dir():  # not "unsupported file type": the user named a folder, perhaps of data files
        files = sorted(f.name for f in p.iterdir() if f.suffix in (".jsonl", ".json", ".parquet", ".gz"))[:3]
        raise DataError(str(p), "is a directory; data.path takes one .jsonl, .json or .parquet file"
                        + (f" (e.g. {p / files[0]})" if files else ""), "bad_file")
    if p.exists():
        if suffix in (".jsonl", ".jsonl.gz"):
            yield from iter_jsonl(p)
        elif suffix == ".json":
            yield from _iter_json(p)
        elif suffix == ".parquet":
            yield from _iter_dataset(_load_dataset("parquet", data_files=str(p), split="train"), str(p))
        else:
            raise DataError(str(p), "unsupported file type (use .jsonl, .json or .parquet)", "bad_file")
    elif p.suffix in (".jsonl", ".json", ".parquet", ".gz") or p.parent != Path("."):
        raise DataError(str(p), "file not found", "missing_file")
    else:
        yield from _iter_dataset(_load_dataset(path, split=split), f"{path}[{split}]")


def _load_dataset(*args, **kwargs):
    import datasets

    return datasets.load_dataset(*args, **kwargs)


def iter_jsonl(p: str | Path) -> Iterator[Row | DataError]:
    """Rows of a .jsonl (or .jsonl.gz) file; an unreadable line is yielded as its DataError
    (not raised), so callers choose between stopping and counting."""
    p = Path(p)
    import gzip

    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{p}:{lineno}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield DataError(where, f"not valid UTF-8 (byte {e.start})", "not_utf8")
                continue
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                yield DataError(where, f"invalid JSON: {e.msg} at column {e.colno}", "bad_json")
                continue
            if not isinstance(data, dict):
                yield DataError(where, "each line must be a JSON object", "bad_json")
                continue
            yield Row(data, where)


def _iter_json(p: Path) -> Iterator[Row | DataError]:
    try:
        data = json.loads(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(str(p), f"not valid UTF-8 (byte {e.start})", "not_utf8") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{p}:{e.lineno}", f"invalid JSON: {e.msg} at column {e.colno}", "bad_json") from e
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(str(p), "a .json file must hold a list of rows (or {\"data\": [...]})", "bad_file")
    for i, item in enumerate(data):
        where = f"{p}#{i}"
        if isinstance(item, dict):
            yield Row(item, where)
        else:
            yield DataError(where, "each row must be a JSON object", "bad_json")


def _iter_dataset(ds, name: str) -> Iterator[Row]:
    for i, item in enumerate(ds):
        yield Row(dict(item), f"{name}#{i}")


def _text_field(row: Row, name: str, allow_empty: bool = False) -> str:
    if name not in row.data or row.data[name] is None:
        raise DataError(row.where, f"missing field '{name}'", f"missing_{name}")
    value = row.data[name]
    if not isinstance(value, str):
        raise DataError(row.where, f"field '{name}' must be a string, got {type(value).__name__}", f"bad_{name}")
    if not allow_empty and not value.strip():
        raise DataError(row.where, f"field '{name}' is empty", f"empty_{name}")
    return value


def row_to_messages(row: Row) -> list[dict[str, str]]:
    """Normalise any accepted row format into chat messages."""
    d = row.data
    if "messages" in d:
        messages = d["messages"]
        if not isinstance(messages, list):
            raise DataError(row.where, "field 'messages' must be a list", "bad_messages")
        try:
            validate_messages(messages)
        except TemplateError as e:
            raise DataError(row.where, f"field 'messages': {e}", "bad_messages") from e
        for i, m in enumerate(messages):
            if m["role"] == "assistant" and not m["content"].strip():
                raise DataError(row.where, f"field 'messages[{i}].content': empty assistant response", "empty_response")
        if not any(m["role"] == "assistant" for m in messages):
            raise DataError(row.where, "field 'messages': no assistant turn to learn from", "no_response")
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    if "instruction" in d or "output" in d:
        # The official script strips the instruction and keeps the output verbatim.
        instruction = _text_field(row, "instruction").strip()
        extra = d.get("input")
        if extra is not None and not isinstance(extra, str):
            raise DataError(row.where, "field 'input' must be a string", "bad_input")
        if extra and extra.strip():
            instruction = f"{instruction}\n\n{extra.strip()}"
        output = _text_field(row, "output")
        return [{"role": "user", "content": instruction}, {"role": "assistant", "content": output}]
    if "prompt" in d or "completion" in d:
        return [
            {"role": "user", "content": _text_field(row, "prompt").strip()},
            {"role": "assistant", "content": _text_field(row, "completion")},
        ]
    raise DataError(
        row.where,
        f"unknown row format (fields: {', '.join(sorted(d)) or 'none'}); expected 'messages', "
        "'instruction'+'output', or 'prompt'+'completion'",
        "unknown_format",
    )


def row_to_sample(row: Row) -> list[dict[str, str]] | str:
    """Chat messages for conversation rows; the text itself for a plain code row {"text"}."""
    if "text" in row.data and not ({"messages", "instruction", "output", "prompt", "completion"} & set(row.data)):
        return _text_field(row, "text")
    return row_to_messages(row)


def read_conversations(path: str, split: str = "train", on_invalid: str = "error", max_rows: int | None = None):
    """(list of (messages or code text, where), ReadStats). Raises the first DataError unless on_invalid='skip'."""
    stats = ReadStats()
    conversations = []
    for item in iter_rows(path, split):
        if max_rows is not None and len(conversations) >= max_rows:  # max_rows counts rows used, in every stage
            break
        stats.rows_read += 1
        try:
            if isinstance(item, DataError):
                raise item
            conversations.append((row_to_sample(item), item.where))
        except DataError as e:
            if on_invalid != "skip":
                raise
            stats.invalid[e.reason] += 1
            if len(stats.examples) < MAX_EXAMPLES:
                stats.examples.append(str(e))
    return conversations, stats
