"""DeepSeek-Coder's own evaluation sets: HumanEval in MultiPL-E's languages, and LeetCode Contest.

The data (MIT, from the DeepSeek-Coder repository's `Evaluation/`) ships inside the package
(`data/deepseek-coder-eval/`, 0.8 MB); a path given, `$CODER_ALIGN_DATA/deepseek-coder-eval/`
or the checkout's `../shared/data/deepseek-coder-eval/` is read first.

- HumanEval-{cpp,java,js,ts,php,cs,sh,go,rs}: MultiPL-E rows (`prompt` ends inside the
  function, `tests` closes it and asserts, `stop_tokens`). The program judged is the code
  before the tests (DeepSeek's `generation`) followed by `tests`, by its exit status.
  Instruct mode asks with DeepSeek's prompt and keeps the function from the answer's fenced
  block as DeepSeek's `extract_generation_code` does (`generation_from_answer`).
- HumanEval-python: DeepSeek's copy of the 164 problems (`test` ends with `check(entry)`).
- LeetCode Contest: 180 problems of July 2023 - January 2024, ~100 asserts each, asked with
  `prompt_sft`; `start_time` (Unix seconds) allows contamination windows (`since`).

Not here: Problem/Task objects (`coder_align.evaluation.tasks`), running code (`sandbox`).
"""

from __future__ import annotations

import ast
import datetime
import re
from dataclasses import dataclass
from pathlib import Path

from coder_align.benchmarks.extract import _TAGS, _UNTERMINATED, FENCE, extract_code
from coder_align.benchmarks.sources import BenchmarkError, find_data, read_jsonl

DEEPSEEK_DIR = "deepseek-coder-eval"
PACKAGE_DATA = Path(__file__).resolve().parent / "data" / DEEPSEEK_DIR
LEETCODE_FILE = "leetcode-20240121-Jul.jsonl.gz"


@dataclass(frozen=True)
class Setting:
    language: str  # the sandbox's name
    full_name: str  # as DeepSeek's prompt and fence name it
    main: str | None = None  # where DeepSeek cuts a `main` the model wrote


# DeepSeek's `language_settings` (Evaluation/HumanEval/eval_instruct.py), plus Go and Rust
SETTINGS = {
    "python": Setting("python", "Python"), "cpp": Setting("cpp", "cpp", "int main()"),
    "java": Setting("java", "Java", "public static void main"), "cs": Setting("csharp", "csharp", "public static void Main"),
    "php": Setting("php", "PHP"), "ts": Setting("typescript", "TypeScript"), "js": Setting("javascript", "JavaScript"),
    "sh": Setting("bash", "Bash"), "go": Setting("go", "Go"), "rs": Setting("rust", "Rust", "fn main()"),
}
# the paper's eight, in its table's order (DeepSeek-Coder, arXiv 2401.14196, Table 3)
PAPER_LANGUAGES = ("python", "cpp", "java", "php", "ts", "cs", "sh", "js")
# their tests do not close the function (DeepSeek: PHP, TS, JS; Go, which DeepSeek leaves out, too)
_CLOSE_BRACE = ("php", "ts", "js", "go")

DEEPSEEK_INSTRUCT = ("Please continue to complete the function. You are not allowed to modify the given code and do "
                     "the completion only. Please return all completed function in a codeblock. Here is the given "
                     "code to do completion:\n```{language}\n{prompt}\n```")

# What LeetCode's own Python 3 judge has imported (its solutions use List, Counter, inf...)
LEETCODE_HEADER = (
    "from typing import *\nfrom collections import *\nfrom functools import *\nfrom itertools import *\n"
    "from heapq import *\nfrom bisect import *\nfrom math import ceil, comb, floor, gcd, inf, isqrt, lcm, log2, sqrt\n"
    "import collections, functools, heapq, itertools, math, re, string, bisect, operator\n\n\n"
    "class ListNode:\n    def __init__(self, val=0, next=None):\n        self.val = val\n        self.next = next\n\n\n"
    "class TreeNode:\n    def __init__(self, val=0, left=None, right=None):\n"
    "        self.val = val\n        self.left = left\n        self.right = right\n\n\n")
LEETCODE_CALL = "__leetcode_call"
# One call per assert, on a fresh Solution as LeetCode's judge makes per case: the sandbox
# passes only literals across, so an assert asks the program for the value of its expression
# (given as text), never for the instance; the expected value stays outside.
LEETCODE_FOOTER = f"""

def {LEETCODE_CALL}(expression, test_input):
    scope = dict(globals(), my_solution=Solution())
    scope["test_input"] = eval(test_input, scope)
    return eval(expression, scope)

"""

# MultiPL-E's Java prompts import org.javatuples (a jar beside the tests); 10 of 158 problems
# use its Pair. A program does not get the jar: the import goes, this Pair comes after the tests.
JAVATUPLES_IMPORT = "import org.javatuples.*;"
JAVA_PAIR = """
class Pair<A, B> {
    private final A a; private final B b;
    Pair(A a, B b) { this.a = a; this.b = b; }
    public static <A, B> Pair<A, B> with(A a, B b) { return new Pair<A, B>(a, b); }
    public A getValue0() { return a; }
    public B getValue1() { return b; }
    @Override public boolean equals(Object o) {
        if (!(o instanceof Pair)) return false;
        Pair<?, ?> p = (Pair<?, ?>) o;
        return java.util.Objects.equals(a, p.a) && java.util.Objects.equals(b, p.b);
    }
    @Override public int hashCode() { return java.util.Objects.hash(a, b); }
    @Override public String toString() { return "[" + a + ", " + b + "]"; }
}
"""


def data_file(name: str, path: str | Path | None = None) -> Path:
    """`path` (a file, or a folder holding `name`), else the first of $CODER_ALIGN_DATA,
    the cache and ../shared/data (each under deepseek-coder-eval/), else the package's copy."""
    if path:
        path = Path(path)
        return path / name if path.is_dir() else path
    found = find_data(f"{DEEPSEEK_DIR}/{name}") or PACKAGE_DATA / name
    if not found.is_file():
        raise BenchmarkError(f"{name}: not in the package ({PACKAGE_DATA}) nor in $CODER_ALIGN_DATA/{DEEPSEEK_DIR}")
    return found


def humaneval_file(code: str) -> str:
    if code not in SETTINGS:
        raise BenchmarkError(f"unknown HumanEval language {code!r}; known: {', '.join(SETTINGS)}")
    return f"humaneval-{code}.jsonl.gz"


def instruct_prompt(code: str, prompt: str) -> str:
    """DeepSeek-Coder-Instruct's HumanEval question for a language code (`cpp`, `cs`...)."""
    return DEEPSEEK_INSTRUCT.format(language=SETTINGS[code].full_name.lower(), prompt=prompt.strip())


def _field(row: dict, key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        raise BenchmarkError(f"{where}: field '{key}' must be a string, got {type(value).__name__}")
    return value


def read_humaneval(code: str, path: str | Path | None = None) -> list[dict]:
    """One dict per problem: task_id, prompt, tests (the test program), language, stops."""
    file = data_file(humaneval_file(code), path)
    rows = []
    for n, row in read_jsonl(file):
        where = f"{file}:{n}"
        tests = row.get("tests", row.get("test"))
        if not isinstance(tests, str) or not tests.strip():
            raise BenchmarkError(f"{where}: missing field 'tests' (a test program)")
        stops = row.get("stop_tokens") or []
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise BenchmarkError(f"{where}: field 'stop_tokens' must be a list of strings")
        rows.append({"task_id": _field(row, "task_id", where), "prompt": _field(row, "prompt", where),
                     "tests": tests, "language": SETTINGS[code].language, "stops": stops})
    return rows


def python_entry_point(tests: str, where: str) -> str:
    """The function DeepSeek's Python tests check (their last line is `check(name)`)."""
    m = re.search(r"^check\((\w+)\)\s*$", tests, re.M)
    if not m:
        raise BenchmarkError(f"{where}: the test program does not end with check(<function>)")
    return m.group(1)


def java_program(code: str) -> str:
    """A Java program without MultiPL-E's javatuples jar: the import goes (Pair comes with the tests)."""
    return code.replace(JAVATUPLES_IMPORT, "")


def program_tests(code: str, tests: str) -> str:
    """The tests as the sandbox appends them: Java's gain the Pair class it lacks."""
    return tests + JAVA_PAIR if code == "java" else tests


def function_prefix(prompt: str) -> tuple[str, str]:
    """DeepSeek's `get_function_name`: the prompt's last line up to `{` (the signature) and
    the lines before it."""
    lines = [x for x in prompt.strip().split("\n") if x.strip()]
    return lines[-1].split("{")[0].strip(), "\n".join(lines[:-1])


def answer_block(answer: str, code: str) -> str | None:
    """The first fenced block in the language (DeepSeek takes the first ```{lang} block), else
    the first untagged one, else, with no closed block at all, an unterminated one; else None."""
    wanted = _TAGS.get(SETTINGS[code].language, set()) | {SETTINGS[code].full_name.lower()}
    blocks = FENCE.findall(answer)
    for tags in (wanted, {""}):
        tagged = [body for tag, body in blocks if tag.lower() in tags]
        if tagged:
            return tagged[0]
    unterminated = None if blocks else _UNTERMINATED.search(answer)  # cut at max tokens inside it
    return unterminated.group(1) if unterminated else None


def generation_from_answer(code: str, prompt: str, answer: str) -> str:
    """DeepSeek's `extract_generation_code`: from the answer's block, cut a `main`, take the
    function from its signature to its closing brace (left to the tests, which close it,
    except in PHP/TS/JS) and put the prompt's lines before the signature in front. An answer
    without a block is `prompt + answer`, as DeepSeek scores it."""
    block = answer_block(answer, code)
    if block is None:
        return prompt + "\n" + answer
    main = SETTINGS[code].main
    if main and main in block:
        block = block[:block.index(main)]
    name, prefix = function_prefix(prompt)
    start = block.lower().find(name.lower())
    indent = 0
    if start < 0:
        start = 0
        indent = 4 if code == "java" else 0
    else:
        while start - indent - 1 >= 0 and block[start - indent - 1] == " ":
            indent += 1
    end = block.rfind("\n" + " " * indent + "}")
    body = block[start:end if end >= 0 else len(block)]
    if code in _CLOSE_BRACE:
        body += "\n" + " " * indent + "}"
    return prefix + "\n" + body + "\n"


# --- LeetCode Contest ---------------------------------------------------------------------

def parse_since(since: str | int | None) -> int | None:
    """A contamination window's start: a date (`2023-09-01`, UTC) or Unix seconds."""
    if since is None or since == "":
        return None
    if isinstance(since, int) or str(since).isdigit():
        return int(since)
    try:
        day = datetime.date.fromisoformat(str(since))
    except ValueError:
        raise BenchmarkError(f"leetcode since={since!r}: give a date YYYY-MM-DD or Unix seconds") from None
    return int(datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.timezone.utc).timestamp())


def leetcode_tests(test: str, where: str) -> tuple[str, list[str]]:
    """DeepSeek's LeetCode test (`my_solution = Solution()`, helper lines, then pairs of
    `test_input = {...}` and `assert <expr using my_solution and test_input> <op> <expected>`)
    as (helper code for the program, asserts with one literal call each): the call gives the
    expression and the input as source to `__leetcode_call`, which the program defines."""
    try:
        body = ast.parse(test).body
    except SyntaxError as e:
        raise BenchmarkError(f"{where}: field 'test' is not valid Python ({e.msg}, line {e.lineno})") from None
    helpers, asserts, kwargs = [], [], None
    for stmt in body:
        text = ast.unparse(stmt)
        if text.replace(" ", "") == "my_solution=Solution()":
            continue
        if isinstance(stmt, ast.Assign) and [ast.unparse(t) for t in stmt.targets] == ["test_input"]:
            kwargs = ast.unparse(stmt.value)
        elif isinstance(stmt, ast.Assert) and isinstance(stmt.test, ast.Compare) and kwargs is not None:
            left = ast.unparse(stmt.test.left)
            tail = ast.unparse(stmt.test)[len(left):]  # the comparison as written: `== [3, 7, 8]`
            asserts.append(f"assert {LEETCODE_CALL}({left!r}, {kwargs!r}){tail}")
        elif isinstance(stmt, ast.Assert):
            raise BenchmarkError(f"{where}: assert {text[:80]!r} is not a comparison after a test_input")
        else:
            helpers.append(text)
    if not asserts:
        raise BenchmarkError(f"{where}: field 'test' holds no assert")
    return "\n".join(helpers), asserts


def read_leetcode(path: str | Path | None = None, since: str | int | None = None) -> tuple[list[dict], int]:
    """(problems with start_time >= since, how many were older). Each: task_id, prompt (base
    mode), instruction (`prompt_sft`), tests (asserts), start_time."""
    file = data_file(LEETCODE_FILE, path)
    start = parse_since(since)
    rows, older = [], 0
    for n, row in read_jsonl(file):
        where = f"{file}:{n}"
        started = row.get("start_time")
        if not isinstance(started, int):
            raise BenchmarkError(f"{where}: field 'start_time' must be Unix seconds (int)")
        if start is not None and started < start:
            older += 1
            continue
        rows.append({"task_id": _field(row, "task_id", where), "prompt": _field(row, "prompt", where),
                     "instruction": _field(row, "prompt_sft", where), "start_time": started,
                     **dict(zip(("helpers", "tests"), leetcode_tests(_field(row, "test", where), where)))})
    return rows, older


def leetcode_code(answer: str) -> str:
    """The code of a LeetCode answer: the first Python block that defines `class Solution`,
    else the last Python block (`extract_code`)."""
    blocks = [body for tag, body in FENCE.findall(answer) if tag.lower() in _TAGS["python"] | {""}]
    return next((b for b in blocks if re.search(r"^class\s+Solution\b", b, re.M)), None) or extract_code(answer, "python")


def leetcode_program(helpers: str, completion: str) -> str:
    return LEETCODE_HEADER + completion + LEETCODE_FOOTER + helpers + "\n"

