"""Real GRPO runs on a tiny random Llama (CPU): wiring, rewards vs sandbox, learning, deepspeed."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from coder_align.config import load_config
from coder_align.grpo import GRPOConfig, main

from conftest import REPO_ROOT

ROWS = [
    {"task_id": 1, "prompt": "Write a Python function add(a, b) that returns a + b.",
     "tests": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]},
    {"task_id": 2, "text": "Write a function square(x).", "test_list": ["assert square(3) == 9"],
     "test_setup_code": ""},
    {"task_id": 3, "instruction": "Read a number and print it doubled.",
     "stdin_stdout": [{"stdin": "2\n", "stdout": "4\n"}]},
    {"task_id": 4, "messages": [{"role": "user", "content": "Write neg(x)."}], "tests": "assert neg(2) == -2"},
]


def write_rows(path, rows=ROWS):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def grpo(model_dir, data, out, *overrides):
    config = load_config(GRPOConfig, None, [
        f"model.path={model_dir}", f"data.path={data}", f"train.output_dir={out}", "train.report_to=[]",
        "train.disable_progress_bar=true", "model.gradient_checkpointing=false", "train.save_steps=1000",
        "grpo.num_generations=4", "grpo.max_completion_length=12", "train.per_device_train_batch_size=8",
        *overrides,
    ])
    return main(config)


def test_run_with_sandbox_rewards_saves_and_logs_what_the_sandbox_says(tiny_model_dir, tmp_path):
    from coder_align.rewards import extract_code
    from coder_align.sandbox import check

    out = tmp_path / "run"
    summary = grpo(tiny_model_dir, write_rows(tmp_path / "rows.jsonl"), out, "train.max_steps=2",
                   "grpo.rewards={unit_test: 1.0, format: 0.5}", "train.report_to=[tensorboard]")
    for name in ("model.safetensors", "tokenizer.json", "chat_template.jinja", "coder_align_config.yaml",
                 "summary.json", "rewards.png", "completions.jsonl"):
        assert (out / name).is_file(), name
    assert list(out.glob("runs/*/events.out.tfevents.*")), "TensorBoard logs"
    assert summary["steps"] == 2 and summary["data"]["rows_used"] == 4
    assert summary["rewards"]["rows_scored"] == 16 and summary["rewards"]["unjudged"] == {}

    records = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert len(records) == 16 and {r["step"] for r in records} == {1, 2}
    tests = {str(r["task_id"]): r for r in ROWS}
    for r in records:  # the logged reward is the sandbox's verdict on the logged completion
        row = tests[r["task_id"]]
        row_tests = row.get("tests") or row.get("stdin_stdout") or ["import math", *row.get("test_list", [])]
        report = check(extract_code(r["completion"], "python"), row_tests)
        assert r["rewards"]["unit_test_reward"] == float(report.passed)
    history = json.loads((out / "summary.json").read_text())
    log_history = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    for step in (1, 2):  # and TRL's logged means are the means of those rewards
        logged = [r["rewards"]["format_reward"] for r in records if r["step"] == step]
        entry = [h for h in log_history if h["step"] == step][0]
        assert entry["rewards/format_reward/mean"] == pytest.approx(sum(logged) / len(logged))
        assert entry["code/pass_rate"] == pytest.approx(
            sum(r["rewards"]["unit_test_reward"] for r in records if r["step"] == step) / 8)
        for key in ("completions/clipped_ratio", "frac_reward_zero_std", "completions/mean_length",
                    "timing/generation_s", "timing/reward_s", "timing/step_s", "code/compile_rate",
                    "code/unavailable_share", "groups/dropped_all_failed",
                    "groups/filled_without_spread", "groups/rounds", "curriculum/retired",
                    "timing/rollout_generation_s", "timing/rollout_judge_wait_s", "timing/judge_overlap"):
            assert key in entry, key
        assert entry["code/unavailable_share"] == 0.0
    assert history["warnings"], "12-token completions are clipped: the run must warn"
    rollout = history["rollout"]
    assert rollout["backend"] == "eval_generator" and rollout["dynamic_sampling"] is True
    # a random model fails every test: each step drops its groups, tries fresh tasks, then fills
    assert rollout["groups"]["dropped_all_failed"] >= 2 and rollout["groups"]["filled_without_spread"] >= 2


def test_trl_backend_without_dynamic_sampling_trains_on_the_sampler_s_tasks(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    summary = grpo(tiny_model_dir, write_rows(tmp_path / "rows.jsonl"), out, "train.max_steps=1",
                   "grpo.rollout_backend=trl", "grpo.dynamic_sampling=false")
    assert summary["rollout"]["backend"] == "trl" and summary["rollout"]["groups"] == {"rounds": 1}
    records = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert len(records) == 8 and len({r["task_id"] for r in records}) == 2



def test_chain_sft_lora_then_grpo_then_merge_then_eval(tiny_model_dir, tmp_path):
    """The README's chain on the tiny model: an SFT LoRA directory is a GRPO starting point,
    and the GRPO adapter merges and evaluates on its own."""
    import torch
    from transformers import AutoModelForCausalLM

    from coder_align.evaluation.config import flat_config
    from coder_align.evaluate import main as evaluate
    from coder_align.models.merge import merge
    from coder_align.sft import SFTConfig
    from coder_align.sft import main as sft_main
    from coder_align.templates import EOT

    sft_dir = tmp_path / "sft"
    sft_main(load_config(SFTConfig, None, [
        f"model.path={tiny_model_dir}", f"data.path={REPO_ROOT / 'data_templates' / 'instruction_output.jsonl'}",
        f"train.output_dir={sft_dir}", "peft.method=lora", "train.max_steps=2", "train.learning_rate=1e-2",
        "train.report_to=[]", "train.disable_progress_bar=true", "model.gradient_checkpointing=false"]))
    assert (sft_dir / "adapter_config.json").is_file()

    data = write_rows(tmp_path / "rows.jsonl")
    grpo_dir = tmp_path / "grpo"
    summary = grpo(sft_dir, data, grpo_dir, "peft.method=lora", "train.max_steps=1", "grpo.rewards={format: 1.0}")
    assert summary["steps"] == 1 and summary["start"]["adapter"] == str(sft_dir)
    start = grpo_dir / "start_model"
    assert (start / "config.json").is_file()
    assert json.loads((grpo_dir / "adapter_config.json").read_text())["base_model_name_or_path"] == str(start.resolve())
    # the merged start carries the SFT run's trained <|EOT|> row, not a fresh copy of EOS
    from coder_align.models.merge import load_merged

    sft_model, tokenizer = load_merged(sft_dir)
    start_model = AutoModelForCausalLM.from_pretrained(start)
    eot = tokenizer.convert_tokens_to_ids(EOT)
    torch.testing.assert_close(start_model.get_input_embeddings().weight[eot],
                               sft_model.get_input_embeddings().weight[eot])

    from peft import AutoPeftModelForCausalLM

    assert AutoPeftModelForCausalLM.from_pretrained(grpo_dir).get_input_embeddings().weight.shape[0] == len(tokenizer)
    merged = merge(grpo_dir, tmp_path / "merged")
    assert EOT in (merged / "tokenizer.json").read_text()
    custom = tmp_path / "one.jsonl"
    custom.write_text(json.dumps({"instruction": "Write one() returning 1.", "tests": ["assert one() == 1"]}) + "\n")
    for model in (merged, grpo_dir):  # the merged directory, and the adapter directory directly
        result = evaluate(flat_config(model=str(model), tasks=[str(custom)], mode="instruct", max_new_tokens=8,
                                      out=str(tmp_path / f"eval-{model.name}"), threads=1))
        assert result["tasks"]["one"]["samples"] == 1 and result["tasks"]["one"]["pass@1"] is not None

    # a merged directory is a starting point as it is
    again = grpo(merged, data, tmp_path / "grpo-from-merged", "peft.method=lora", "train.max_steps=1",
                 "grpo.rewards={format: 1.0}")
    assert again["steps"] == 1 and again["start"]["adapter"] is None


def test_refuses_to_start_when_the_sandbox_cannot_judge(tiny_model_dir, tmp_path, monkeypatch):
    from coder_align.grpo import check_sandbox
    from coder_align.sandbox.preflight import PreflightError

    data = write_rows(tmp_path / "rows.jsonl")
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # no bwrap, as on a fresh machine
    with pytest.raises(PreflightError, match="unit_test_reward would score nothing: bubblewrap"):
        grpo(tiny_model_dir, data, tmp_path / "run", "train.max_steps=1")
    assert not (tmp_path / "run" / "model.safetensors").exists()
    check_sandbox(["format_reward"], [{"language": "python"}])  # a reward that runs no code needs no sandbox


@pytest.mark.skipif(not os.path.exists(os.path.join(os.path.dirname(sys.executable), "deepspeed")),
                    reason="deepspeed launcher not installed")
def test_deepspeed_two_processes_on_cpu(tiny_model_dir, tmp_path):
    out = tmp_path / "ds"
    launcher = os.path.join(os.path.dirname(sys.executable), "deepspeed")
    cmd = [launcher, "--num_gpus", "2", "--master_port", "29527", str(REPO_ROOT / "coder_align" / "grpo.py"),
           f"model.path={tiny_model_dir}", f"data.path={write_rows(tmp_path / 'rows.jsonl')}",
           f"train.output_dir={out}", "train.deepspeed=configs/deepspeed/zero2.json", "train.max_steps=2",
           "train.per_device_train_batch_size=4", "grpo.num_generations=4", "grpo.max_completion_length=8",
           "train.report_to=[]", "model.gradient_checkpointing=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and (out / "model.safetensors").is_file()


def test_a_resumed_run_forgets_the_completions_of_steps_it_redoes(tmp_path):
    from coder_align.grpo import forget_steps_after

    path = tmp_path / "completions.jsonl"
    rows = [{"step": s, "task_id": "601", "completion": f"c{s}", "rewards": {}} for s in (9, 10, 10, 11, 12)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 12, "task_id": "6')  # cut by a kill
    assert forget_steps_after(path, 10) == 3
    assert [json.loads(line)["completion"] for line in path.read_text().splitlines()] == ["c9", "c10", "c10"]
    assert forget_steps_after(path, 10) == 0 and forget_steps_after(tmp_path / "none.jsonl", 3) == 0
