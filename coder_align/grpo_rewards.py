"""Deprecated name: the GRPO-side reward batching is `coder_align.reward_set` (the reward
functions themselves are in `coder_align.rewards`). This alias will be removed later."""

import warnings

from coder_align.reward_set import JUDGING, SHORT_NAMES, RewardSet, resolve_reward  # noqa: F401

warnings.warn("coder_align.grpo_rewards was renamed coder_align.reward_set", DeprecationWarning, stacklevel=2)
