"""GRPO's optimisation path, proven on a task a tiny model can climb in seconds.

A 12-word vocabulary makes each word start near 1/12 probability, so a reward for the
word "a" has variance inside every group from the first step; if the advantages, loss
and update are wired right, the mean reward must rise within a few dozen CPU steps.
"""

import json

import torch

from coder_align.config import load_config
from coder_align.grpo import GRPOConfig, main

WORDS = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]


def letter_a_reward(completions, **kwargs):
    """Share of the completion's words that are "a"."""
    scores = []
    for completion in completions:
        words = (completion if isinstance(completion, str) else completion[-1]["content"]).split()
        scores.append(sum(w == "a" for w in words) / max(len(words), 1))
    return scores


def tiny_word_model(path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "<eos>": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="<eos>")
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, eos_token_id=1, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def test_mean_reward_rises_on_a_learnable_task(tmp_path):
    model_dir = tiny_word_model(tmp_path / "model")
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{w} {w}", "tests": ["assert True"]}) + "\n" for w in WORDS[1:5]))
    config = load_config(GRPOConfig, None, [
        f"model.path={model_dir}", f"data.path={data}", f"train.output_dir={tmp_path / 'out'}",
        "train.report_to=[]", "train.disable_progress_bar=true", "model.gradient_checkpointing=false",
        "train.save_steps=1000", "train.logging_steps=1", "train.max_steps=40", "train.learning_rate=1e-2",
        "train.per_device_train_batch_size=16", "grpo.num_generations=8", "grpo.max_completion_length=8",
        "grpo.rewards={test_grpo_learn:letter_a_reward: 1.0}", "data.system_prompt=",
    ])
    summary = main(config)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["steps"] == 40
    rewards = [h["reward"] for h in summary_history(tmp_path / "out")]
    first, last = sum(rewards[:8]) / 8, sum(rewards[-8:]) / 8
    assert last > first + 0.2, (first, last, rewards)
    assert summary["last"]["reward"] is not None


def summary_history(out):
    """Per-step logs from the last checkpoint's trainer_state.json."""
    states = sorted(out.glob("checkpoint-*/trainer_state.json"))
    return [h for h in json.loads(states[-1].read_text())["log_history"] if "reward" in h]
