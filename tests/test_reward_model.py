"""The reward-model stage on tiny models (CPU): it learns a learnable task, writes its output
directory, reloads to the same scores, and serves as a GRPO reward combined by weight."""

import json
import random
import subprocess

import pytest

from coder_align.config import ConfigError, load_config
from coder_align.reward_model import RewardModelConfig, main

from conftest import DATA_TEMPLATES, REPO_ROOT, cli_command, cli_env

WORDS = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]


def tiny_word_model(path):
    """A 2-layer Llama over 12 words: a forward pass costs next to nothing."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "<eos>": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="<eos>").save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, eos_token_id=1, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def synthetic_rows(n_tasks=48, seed=0):
    """Per task (prompt: two words), two completions that pass and two that fail: a passing
    completion holds the word "a" somewhere, a failing one never does. Learnable, and only from
    the completion: the held-out tasks' prompts were never seen."""
    rng = random.Random(seed)
    rows = []
    for task in range(n_tasks):
        prompt = " ".join(rng.choice(WORDS[1:]) for _ in range(2))
        for k in range(4):
            words = [rng.choice(WORDS[1:]) for _ in range(5)]
            passed = k < 2
            if passed:
                words[rng.randrange(5)] = "a"
            rows.append({"prompt": prompt, "completion": " ".join(words), "passed": passed, "task_id": task,
                         "source": "synthetic"})
    return rows


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def rm(model_dir, data, out, *overrides):
    return main(load_config(RewardModelConfig, None, [
        f"model.path={model_dir}", f"data.path={data}", f"train.output_dir={out}", "train.report_to=[]",
        "train.disable_progress_bar=true", "model.gradient_checkpointing=false", "train.save_steps=1000",
        "train.warmup_steps=0", "train.lr_scheduler_type=constant", *overrides]))


def test_held_out_pairwise_accuracy_rises_above_chance_on_a_learnable_task(tmp_path):
    model_dir = tiny_word_model(tmp_path / "model")
    summary = rm(model_dir, write(tmp_path / "rows.jsonl", synthetic_rows()), tmp_path / "out",
                 "data.eval_fraction=0.25", "data.system_prompt=", "train.max_steps=24", "train.learning_rate=3e-3",
                 "train.per_device_train_batch_size=8", "rm.eval_steps=12", "train.logging_steps=4",
                 "rm.pointwise_weight=0.5")
    before, after = summary["held_out"]["before"], summary["held_out"]["after"]
    assert after["pairs"] >= 20 and after["rows"] == after["pairs"]  # 2 x 2 pairs from 4 rows per task
    assert after["pairwise_accuracy"] >= 0.85 and after["auc"] >= 0.85, (before, after)
    assert after["pairwise_accuracy"] > before["pairwise_accuracy"] + 0.2, (before, after)
    assert summary["final_loss"] < summary["first_loss"]
    assert (tmp_path / "out" / "accuracy.png").is_file()


@pytest.fixture(scope="module")
def lora_rm(tiny_model_dir, tmp_path_factory):
    """A LoRA reward model of the tiny Llama on the bundled MBPP rows (two steps: files, not skill)."""
    out = tmp_path_factory.mktemp("rm") / "lora"
    summary = rm(tiny_model_dir, DATA_TEMPLATES / "rm_rows_mbpp.jsonl", out, "peft.method=lora", "train.max_steps=2",
                 "train.per_device_train_batch_size=2", "data.max_rows=120", "data.eval_fraction=0.3",
                 "data.max_length=384", "data.max_pairs_per_task=2", "train.report_to=[tensorboard]")
    return out, summary


def test_output_directory_and_summary(lora_rm):
    out, summary = lora_rm
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "chat_template.jinja",
                 "coder_align_config.yaml", "summary.json", "accuracy.png"):
        assert (out / name).is_file(), name
    assert list(out.glob("runs/*/events.out.tfevents.*")), "TensorBoard logs"
    assert summary["stage"] == "reward_model" and summary["steps"] == 2 and summary["peft"] == "lora"
    data = summary["data"]
    assert data["rows"]["rows_used"] == 120 and data["rows"]["rows_by_source"].keys() <= {"reference", "mutant"}
    assert data["train_rows"] + data["eval_rows"] == 120 and data["train_pairs_used"] > 0
    assert set(data["train_pairs"]) >= {"one_sided_tasks", "pairs_over_cap", "pairs_by_sources"}
    for when in ("before", "after"):
        held = summary["held_out"][when]
        assert 0 <= held["pairwise_accuracy"] <= 1 and 0 <= held["auc"] <= 1 and held["pairs"] > 0
        kinds = held["pairwise_accuracy_by_sources"]
        assert sum(k["pairs"] for k in kinds.values()) == held["pairs"] and set(kinds) <= {
            "reference > mutant", "mutant > mutant"}
    # the resolved config names what a scorer needs: the base weights, the policy's template
    assert summary["config"]["data"]["template"] == "deepseek" and summary["config"]["model"]["path"]


def test_saved_reward_model_reloads_to_the_scores_it_was_measured_with(lora_rm):
    from coder_align.data.rm_rows import build_pairs, read_rm_rows, split_by_task
    from coder_align.reward_model import RMDataConfig
    from coder_align.rewards.reward_model import auc, pairwise_accuracy, scorer

    out, summary = lora_rm
    d = RMDataConfig(**{k: v for k, v in summary["config"]["data"].items() if k != "path"})
    rows, _ = read_rm_rows(str(DATA_TEMPLATES / "rm_rows_mbpp.jsonl"), max_rows=d.max_rows)
    _, held = split_by_task(rows, d.eval_fraction, d.seed)
    loaded = scorer(str(out))
    assert loaded.model.device.type == "cpu" and loaded.template == "deepseek"
    scores = loaded.score([r["prompt"] for r in held], [r["completion"] for r in held])
    assert len(scores) == len(held) and loaded.truncated == 0
    after = summary["held_out"]["after"]
    assert round(auc(scores, [r["passed"] for r in held]), 4) == pytest.approx(after["auc"], abs=2e-4)
    by_row = {id(r): s for r, s in zip(held, scores)}
    pairs, _ = build_pairs(held, d.max_pairs_per_task, d.seed)
    assert round(pairwise_accuracy([(by_row[id(g)], by_row[id(b)]) for g, b in pairs]), 4) == pytest.approx(
        after["pairwise_accuracy"], abs=2e-4)
    assert scorer(str(out)) is loaded  # loaded once per process


def test_reward_model_reward_inside_a_short_grpo_run(lora_rm, tiny_model_dir, tmp_path):
    from coder_align.grpo import GRPOConfig
    from coder_align.grpo import main as grpo_main
    from coder_align.rewards.reward_model import scorer

    out, _ = lora_rm
    rows = [{"task_id": 1, "prompt": "Write add(a, b).", "tests": ["assert add(1, 2) == 3"]},
            {"task_id": 2, "prompt": "Write neg(x).", "tests": ["assert neg(2) == -2"]}]
    run = tmp_path / "grpo"
    summary = grpo_main(load_config(GRPOConfig, None, [
        f"model.path={tiny_model_dir}", f"data.path={write(tmp_path / 'tasks.jsonl', rows)}",
        f"train.output_dir={run}", "train.report_to=[]", "train.disable_progress_bar=true",
        "model.gradient_checkpointing=false", "train.save_steps=1000", "train.max_steps=1",
        "grpo.num_generations=4", "grpo.max_completion_length=12", "train.per_device_train_batch_size=8",
        "grpo.rewards={unit_test: 0.5, reward_model: 0.5}", f"grpo.reward_kwargs={{reward_model: {{path: {out}}}}}"]))
    assert summary["rewards"]["weights"] == {"unit_test_reward": 0.5, "reward_model_reward": 0.5}
    assert summary["last"]["rewards/reward_model_reward/mean"] is not None
    records = [json.loads(line) for line in (run / "completions.jsonl").read_text().splitlines()]
    assert len(records) == 8
    prompts = {str(r["task_id"]): [{"role": "user", "content": r["prompt"]}] for r in rows}
    expected = scorer(str(out)).score([prompts[r["task_id"]] for r in records], [r["completion"] for r in records])
    import math

    for record, logit in zip(records, expected):  # the logged reward is the reward model's score, squashed
        assert record["rewards"]["reward_model_reward"] == pytest.approx(1 / (1 + math.exp(-logit)), abs=1e-5)


def test_reward_model_reward_needs_a_reward_model_directory(tmp_path):
    from coder_align.rewards import RewardSet

    with pytest.raises(ConfigError, match="reward_model needs the reward model's directory"):
        RewardSet({"unit_test": 0.5, "reward_model": 0.5})
    with pytest.raises(ConfigError, match="is not a directory"):
        RewardSet({"reward_model": 1.0}, {"reward_model": {"path": str(tmp_path / "nope")}})
    with pytest.raises(ConfigError, match="transform must be sigmoid or raw"):
        RewardSet({"reward_model": 1.0}, {"reward_model": {"path": str(tmp_path), "transform": "tanh"}})


def test_cli_errors_are_one_line(tmp_path):
    result = subprocess.run(cli_command("rm", "train", f"data.path={tmp_path / 'missing.jsonl'}",
                                        f"train.output_dir={tmp_path / 'out'}"),
                            capture_output=True, text=True, env=cli_env(), cwd=REPO_ROOT)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "coder-align rm: error:" in result.stderr and "missing.jsonl: file not found" in result.stderr
    assert not (tmp_path / "out").exists()
    result = subprocess.run(cli_command("rm", "trian"), capture_output=True, text=True, env=cli_env(), cwd=REPO_ROOT)
    assert result.returncode == 2 and "unknown command 'trian'" in result.stderr


def test_score_head_with_lora_on_the_top_blocks_only(tiny_model_dir):
    """peft.layers_to_transform=[-1]: LoRA in the last block only, the score head trains, and no
    gradient needs to reach the embeddings (the backward pass stops at the top block)."""
    import torch

    from coder_align.config import ModelConfig, PeftConfig
    from coder_align.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = load_model(ModelConfig(path=str(tiny_model_dir), gradient_checkpointing=False), tokenizer,
                       PeftConfig(method="lora", layers_to_transform=[-1]), head="score")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".layers.1." in n or "score" in n for n in trainable), trainable
    assert any("score" in n for n in trainable) and model.config.pad_token_id == tokenizer.pad_token_id
    ids = torch.tensor([tokenizer("def f(): pass")["input_ids"]])
    score = model(input_ids=ids).logits  # (1, 1)
    assert score.shape == (1, 1)
    score.sum().backward()
    embeddings = model.get_input_embeddings()
    assert all(p.grad is None for p in embeddings.parameters())
    with pytest.raises(ConfigError, match="this model has 2 blocks"):
        load_model(ModelConfig(path=str(tiny_model_dir)), tokenizer, PeftConfig(method="lora", layers_to_transform=[2]),
                   head="score")


def test_qlora_reward_model_trains_on_cpu_and_reloads(tiny_model_dir, tmp_path):
    """4-bit base, LoRA and a full-precision score head: TRL casts trainable parameters to bf16,
    the head must still match the hidden states it reads (fp32 on a CPU)."""
    from coder_align.rewards.reward_model import RewardModelScorer

    out = tmp_path / "qlora"
    summary = rm(tiny_model_dir, DATA_TEMPLATES / "rm_rows_mbpp.jsonl", out, "peft.method=qlora", "train.max_steps=1",
                 "train.per_device_train_batch_size=2", "data.max_rows=40", "data.max_length=384",
                 "data.eval_fraction=0.3", "train.learning_rate=1e-3")
    assert summary["steps"] == 1 and summary["peft"] == "qlora" and summary["final_loss"] is not None
    scores = RewardModelScorer(out).score(["Write f."], ["```python\ndef f():\n    return 1\n```"])
    assert len(scores) == 1 and scores[0] == scores[0]  # a number, not NaN


def test_the_v2_benchmark_script_runs_on_references_and_mutants(lora_rm, tmp_path):
    """benchmarks/reward_model_auc.py end to end (no policy: --k 0, the held-out references and
    their mutants), so the script that made the README's figures cannot rot."""
    import sys

    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import reward_model_auc

    out, _ = lora_rm
    samples = tmp_path / "samples.jsonl"
    results = reward_model_auc.main(["--rm", str(out), "--task-ids", "554-575", "--k", "0", "--mutants", "2",
                                     "--samples", str(samples), "--out", str(tmp_path / "auc.json")])
    block = results["references_and_mutants"]
    assert block["completions"] == len(samples.read_text().splitlines()) and block["tasks"] >= 5
    for signal in ("shown test 0/1", "reward model score", "0.5 shown + 0.5 sigmoid(score)"):
        assert 0 <= block["auc"][signal]["auc"] <= 1
    assert json.loads((tmp_path / "auc.json").read_text())["references_and_mutants"] == block
    # the samples are judged once and reused: a second run reads them back
    again = reward_model_auc.main(["--rm", str(out), "--task-ids", "554-575", "--k", "0", "--mutants", "2",
                                   "--samples", str(samples)])
    assert again["references_and_mutants"]["auc"] == block["auc"]
