"""GRPO's rewards: plain functions `fn(completions, **columns) -> list[float | None]`, TRL's shape.

- `execution`: `unit_test_reward` (the sandbox runs the tests), `compile_reward`, `format_reward`.
- `reward_model`: `reward_model_reward`, a trained reward model's score (DeepSeek-Coder-V2).
- `registry`: names as configs write them (`unit_test`, ...) and `resolve_reward`.
- `reward_set`: `RewardSet`, how the GRPO stage scores, combines, counts and records a batch.
- `early`, `prejudged`: judging completions as GRPO's rollout finishes them; the reward reuses those verdicts.
- `signals`: reward-hacking signs logged beside the rewards (unavailable verdicts, shown-test-only passes).

A reward returns None for a row it cannot judge (the sandbox failed), never raises into the
trainer. Not here: running code (`coder_align.sandbox`), training (`coder_align.grpo`).
"""

from coder_align.benchmarks.extract import extract_code, fence_language
from coder_align.rewards.execution import compile_reward, completion_text, format_reward, unit_test_reward
from coder_align.rewards.registry import JUDGING, REWARDS, SHORT_NAMES, resolve_reward
from coder_align.rewards.reward_model import reward_model_reward
from coder_align.rewards.reward_set import RewardSet

__all__ = [
    "JUDGING", "REWARDS", "SHORT_NAMES", "RewardSet", "compile_reward", "completion_text", "extract_code",
    "fence_language", "format_reward", "resolve_reward", "reward_model_reward", "unit_test_reward",
]
