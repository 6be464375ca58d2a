"""RewardSet (coder_align.rewards.reward_set): names and weights, sandbox verdicts per row, infra failures, rewards that raise."""

import json

import pytest

from coder_align import rewards, sandbox
from coder_align.rewards import RewardSet, resolve_reward

GOOD = "```python\ndef add(a, b):\n    return a + b\n```"
WRONG = "```python\ndef add(a, b):\n    return a - b\n```"
BROKEN = "def add(a, b) return"
TESTS = json.dumps(["assert add(1, 2) == 3"])


def serve(reward_set, completions, **kwargs):
    metrics = {}
    kwargs = {"tests": [TESTS] * len(completions), "log_metric": metrics.__setitem__, **kwargs}
    out = {f.__name__: f(completions, **kwargs) for f in reward_set.functions()}
    return out, metrics


def test_components_keep_names_and_match_the_sandbox(tmp_path):
    rs = RewardSet({"unit_test": 1.0, "format": 0.5}, record_to=tmp_path / "c.jsonl")
    out, metrics = serve(rs, [GOOD, WRONG, BROKEN])
    assert list(out) == ["unit_test_reward", "format_reward"] and rs.weights == [1.0, 0.5]
    assert out["unit_test_reward"] == [1.0, 0.0, 0.0] and out["format_reward"] == [1.0, 1.0, 0.0]
    assert metrics["code/pass_rate"] == pytest.approx(1 / 3)
    assert metrics["code/compile_rate"] == pytest.approx(2 / 3) and metrics["code/unjudged"] == 0
    recorded = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [r["rewards"]["unit_test_reward"] for r in recorded] == [1.0, 0.0, 0.0]


def test_sandbox_failure_is_unscorable_not_wrong(monkeypatch):
    def down(jobs, **kwargs):
        raise OSError("sandbox down")

    monkeypatch.setattr(sandbox, "check_many", down)
    rs = RewardSet({"unit_test": 1.0, "format": 0.5})
    out, metrics = serve(rs, [GOOD, WRONG])
    # None in every component: TRL drops the row from the group baseline, advantage 0.
    assert out == {"unit_test_reward": [None, None], "format_reward": [None, None]}
    assert rs.summary()["unjudged"] == {"unit_test_reward": 2} and metrics["code/unjudged"] == 2


def failing_reward(completions, **kwargs):
    raise KeyError("solution")


def test_a_reward_that_raises_is_named_or_counted():
    name = "test_reward_set:failing_reward"
    with pytest.raises(RuntimeError, match="reward 'failing_reward' raised KeyError"):
        serve(RewardSet({name: 1.0}), [GOOD])
    rs = RewardSet({name: 1.0, "format": 1.0}, on_error="skip")
    out, _ = serve(rs, [GOOD, WRONG])
    assert out["failing_reward"] == [None, None] and rs.summary()["reward_errors"] == {"failing_reward": 1}


def test_unknown_names_and_bad_weights_are_config_errors():
    assert resolve_reward("compile") is rewards.compile_reward
    with pytest.raises(ValueError, match="unknown reward 'unit'"):
        RewardSet({"unit": 1.0})
    with pytest.raises(ValueError, match="weight must be a number"):
        RewardSet({"unit_test": "high"})
    with pytest.raises(ValueError, match="not among grpo.rewards"):
        RewardSet({"unit_test": 1.0}, reward_kwargs={"format": {}})


CALLS = []


def counting_reward(completions, **kwargs):
    CALLS.append(len(completions))
    return [float(len(c)) for c in completions]


def test_a_batch_is_scored_once_whatever_the_call_order_or_list_identity():
    CALLS.clear()
    rs = RewardSet({"test_reward_set:counting_reward": 1.0, "format": 0.5})
    first, second = rs.functions()
    completions = [GOOD, WRONG]
    # TRL calls in order with one list today; neither is relied on: reversed order, copied lists.
    assert second(list(completions), prompts=["p", "q"]) == [1.0, 1.0]
    assert first(list(completions), prompts=["p", "q"]) == [float(len(GOOD)), float(len(WRONG))]
    assert CALLS == [2]
    # a different batch (other prompts) is scored anew
    assert first(list(completions), prompts=["p", "r"]) == [float(len(GOOD)), float(len(WRONG))]
    assert CALLS == [2, 2]


def test_the_same_texts_again_are_a_new_batch(tmp_path):
    CALLS.clear()
    rs = RewardSet({"test_reward_set:counting_reward": 1.0}, record_to=tmp_path / "c.jsonl")
    (only,) = rs.functions()
    only([GOOD], prompts=["p"])
    only([GOOD], prompts=["p"])  # e.g. a tiny model repeating itself at the next step
    assert CALLS == [1, 1] and rs.rows_scored == 2
    assert len((tmp_path / "c.jsonl").read_text().splitlines()) == 2
