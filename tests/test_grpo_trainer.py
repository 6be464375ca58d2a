"""What CodeGRPOTrainer and RewardSet rely on in TRL: fails loudly when a TRL upgrade changes it.

The real runs in test_grpo_train.py show the features work (timing keys logged, rewards
matching the sandbox); these checks name the exact TRL piece that moved.
"""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest


def test_private_methods_we_override_or_call_still_exist():
    from coder_align.training.trainers import RELIED_ON, check_trl
    from trl import GRPOTrainer

    check_trl()
    for name, params in RELIED_ON.items():
        assert list(inspect.signature(getattr(GRPOTrainer, name)).parameters) == params


def test_check_trl_names_what_changed():
    from coder_align.training.trainers import check_trl

    class Changed:
        def _generate(self, prompts, extra):
            pass

    with pytest.raises(RuntimeError, match=r"_generate.*no longer takes.*_log_metric no longer exists"):
        check_trl(Changed)


def test_reward_functions_get_the_keywords_reward_set_uses():
    # RewardSet keys a batch on prompts, completions and trainer_state, and logs via log_metric.
    from trl import GRPOTrainer

    source = inspect.getsource(GRPOTrainer._calculate_rewards)
    for needle in ('reward_kwargs["trainer_state"] = self.state', 'reward_kwargs["log_metric"] = self._log_metric',
                   "prompts=prompts, completions=completions"):
        assert needle in source, f"TRL's _calculate_rewards no longer has: {needle}"


def test_log_metric_values_reach_the_logged_metrics():
    # _log_metric buffers; _generate_and_score_completions must flush the buffer into _metrics.
    from trl import GRPOTrainer

    source = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert "self._pending_metrics" in source and "self._metrics[mode][name].append" in source


def test_importing_the_grpo_stage_does_not_import_trl():
    code = "import sys, coder_align.grpo; print('trl' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_rollout_func_hook_as_the_rollout_uses_it():
    # training/rollout.py: TRL calls rollout_func(prompts, trainer), trains on its prompt_ids,
    # completion_ids and logprobs, and writes its other keys into the inputs the rewards see.
    from trl import GRPOTrainer

    assert "rollout_func" in inspect.signature(GRPOTrainer.__init__).parameters
    generate = inspect.getsource(GRPOTrainer._generate)
    for needle in ("self.rollout_func(prompts, self)", 'required_keys = {"prompt_ids", "completion_ids", "logprobs"}'):
        assert needle in generate, f"TRL's _generate no longer has: {needle}"
    score = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert "inp[key] = values[i]" in score, "TRL no longer writes rollout_func's extra fields into the inputs"
    assert score.index("inp[key] = values[i]") < score.index("self._calculate_rewards(inputs")
    # TRLGeneration (rollout_backend trl/vllm) calls TRL's own generation for one batch
    single = inspect.getsource(GRPOTrainer._generate_single_turn)
    assert "return completion_ids, logprobs" in single
