"""Rewards by name, as configs name them: `unit_test`, `unit_test_reward`, or an import path
(`my_pkg.rewards:length_penalty`) for a reward of your own.

Not here: the rewards themselves (`execution.py`, `reward_model.py`), how GRPO combines them
(`reward_set.py`).
"""

from __future__ import annotations

import importlib
from typing import Callable

from coder_align.config import ConfigError
from coder_align.rewards.execution import compile_reward, format_reward, unit_test_reward
from coder_align.rewards.reward_model import reward_model_reward

REWARDS = {f.__name__: f for f in (unit_test_reward, compile_reward, format_reward, reward_model_reward)}
SHORT_NAMES = {"unit_test": "unit_test_reward", "compile": "compile_reward", "format": "format_reward",
               "reward_model": "reward_model_reward"}
# Rewards whose None means "the sandbox could not judge this row", not "not applicable".
JUDGING = {"unit_test_reward", "compile_reward"}


def resolve_reward(name: str) -> Callable:
    """`unit_test`, `unit_test_reward` or `package.module:function` -> the function."""
    full = SHORT_NAMES.get(name, name)
    if full in REWARDS:
        return REWARDS[full]
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            fn = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"grpo.rewards: cannot import reward '{name}': {e}") from e
        if not callable(fn):
            raise ConfigError(f"grpo.rewards: '{name}' is not a function")
        return fn
    known = sorted(SHORT_NAMES) + sorted(REWARDS)
    raise ConfigError(f"grpo.rewards: unknown reward '{name}'; known: {', '.join(known)}, "
                      "or an import path like my_pkg.rewards:my_reward")
