"""Rewards in TRL's shape: scores, conversational input, penalties, infrastructure failures."""

from __future__ import annotations

import doctest

import pytest

import coder_align.rewards as rewards
from coder_align.rewards import compile_reward, execution, extract_code, format_reward, unit_test_reward
from coder_align.sandbox import find_bwrap, toolchain_available

needs_bwrap = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap not installed")

GOOD = "Sure:\n```python\ndef add(a, b):\n    return a + b\n```\n"
WRONG = "```python\ndef add(a, b):\n    return a - b\n```"
BROKEN = "```python\ndef add(a, b) return\n```"
HACK = "```python\nimport sys\nsys.exit(0)\n```"
TESTS = ["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(0, 0) == 0"]


def test_doctests():
    assert doctest.testmod(execution).failed == 0


def test_extract_code():
    assert extract_code("```cpp\nint x;\n```\n```python\nx = 1\n```", "cpp") == "int x;\n"
    assert extract_code("```\nuntagged\n```", "python") == "untagged\n"
    assert extract_code("text ```python\nnot a fence start") == "text ```python\nnot a fence start"
    assert extract_code("```python\nunterminated = 1\n") == "unterminated = 1\n"


def test_names_are_stable_metric_keys():
    # Users write these names in grpo.rewards and read rewards/<name>/mean in their logs:
    # a renamed function, a wrapper that loses __name__ or a table built differently breaks it.
    from coder_align.rewards import RewardSet, resolve_reward

    assert {name: fn.__name__ for name, fn in rewards.REWARDS.items()} == {
        "unit_test_reward": "unit_test_reward", "compile_reward": "compile_reward", "format_reward": "format_reward",
        "reward_model_reward": "reward_model_reward"}
    for short in ("unit_test", "compile", "format", "reward_model"):
        assert resolve_reward(short) is rewards.REWARDS[f"{short}_reward"]
    served = RewardSet({"unit_test": 1.0, "compile": 0.2, "format": 0.1}).functions()
    assert [f.__name__ for f in served] == ["unit_test_reward", "compile_reward", "format_reward"]


@needs_bwrap
def test_unit_test_reward_binary_fraction_and_penalty():
    completions = [GOOD, WRONG, BROKEN, HACK]
    tests = [TESTS] * 4
    assert unit_test_reward(completions, tests=tests) == [1.0, 0.0, 0.0, 0.0]
    assert unit_test_reward(completions, tests=tests, fraction=True) == [1.0, pytest.approx(1 / 3), 0.0, 0.0]
    assert unit_test_reward(completions, tests=tests, compile_error_penalty=-0.5) == [1.0, 0.0, -0.5, 0.0]


@needs_bwrap
def test_conversational_completions_and_rows_without_tests():
    conv = [[{"role": "assistant", "content": GOOD}], [{"role": "assistant", "content": WRONG}]]
    assert unit_test_reward(conv, tests=[TESTS, TESTS]) == [1.0, 0.0]
    assert unit_test_reward([GOOD], tests=[[]]) == [None]


@needs_bwrap
def test_stdin_stdout_rows_and_languages():
    c = "```c\n#include <stdio.h>\nint main(){int a,b;scanf(\"%d %d\",&a,&b);printf(\"%d\\n\",a+b);}\n```"
    cases = [{"stdin": "1 2", "stdout": "3"}]
    assert unit_test_reward([c, "```c\nint main(){return 0;}\n```"], tests=[cases, cases], language="c") == [1.0, 0.0]


def test_fence_language_maps_info_strings_to_sandbox_languages():
    from coder_align.rewards import fence_language

    for tag, lang in [("c", "c"), ("cpp", "cpp"), ("c++", "cpp"), ("java", "java"), ("js", "javascript"),
                      ("javascript", "javascript"), ("go", "go"), ("rust", "rust"), ("bash", "bash"),
                      ("python", "python"), ("Python3", "python")]:
        assert fence_language(f"Here:\n```{tag}\ncode\n```\n") == lang, tag
    assert fence_language("```\nuntagged\n```") is None and fence_language("```text\nx\n```") is None


C_ADD = "```c\n#include <stdio.h>\nint main(){int a,b;scanf(\"%d %d\",&a,&b);printf(\"%d\\n\",a+b);}\n```"


@needs_bwrap
@pytest.mark.skipif(not toolchain_available("c"), reason="no C compiler")
def test_without_a_language_argument_the_fence_decides():
    cases = [{"stdin": "1 2", "stdout": "3"}]
    # a ```c block was compiled as Python and scored 0 before
    assert unit_test_reward([C_ADD, GOOD], tests=[cases, TESTS]) == [1.0, 1.0]
    assert compile_reward([C_ADD, "```c\nint main( {\n```", GOOD]) == [1.0, 0.0, 1.0]
    # the argument wins over the fence
    assert compile_reward([C_ADD], language="python") == [0.0]
    assert compile_reward([C_ADD], language=[None]) == [1.0]


@needs_bwrap
def test_compile_reward():
    assert compile_reward([GOOD, BROKEN], compile_error_penalty=-1.0) == [1.0, -1.0]


def test_infrastructure_failure_is_none_and_counted(monkeypatch):
    import coder_align.sandbox as sb
    import coder_align.sandbox.bwrap as bw
    from coder_align.rewards import RewardSet

    monkeypatch.setattr(sb, "find_bwrap", lambda: None)
    monkeypatch.setattr(bw, "find_bwrap", lambda: None)
    assert unit_test_reward([GOOD, WRONG], tests=[TESTS, TESTS]) == [None, None]
    assert compile_reward([GOOD]) == [None]
    # counted where GRPO logs it (code/unjudged), per run rather than in a process-wide global
    reward_set = RewardSet({"unit_test": 1.0})
    reward_set.functions()[0]([GOOD, WRONG], tests=[TESTS, TESTS])
    assert reward_set.unjudged["unit_test_reward"] == 2


def test_format_reward():
    assert format_reward([GOOD, "no code", "```python\na\n```\n```python\nb\n```", [{"role": "assistant", "content": GOOD}]]) == [1.0, 0.0, 0.0, 1.0]


def test_column_length_mismatch_is_loud():
    with pytest.raises(ValueError, match="one entry per completion"):
        unit_test_reward([GOOD, WRONG], tests=[TESTS])
