"""Real training runs of the SFT stage on a tiny random Llama (CPU, seconds each)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from coder_align.config import load_config
from coder_align.sft import SFTConfig, main

from conftest import DATA_TEMPLATES, REPO_ROOT

DATA = str(DATA_TEMPLATES / "instruction_output.jsonl")


def sft(model_dir, out, *overrides):
    config = load_config(SFTConfig, None, [
        f"model.path={model_dir}", f"data.path={DATA}", f"train.output_dir={out}", "data.max_length=256",
        "train.warmup_steps=0", "train.report_to=[]", "train.disable_progress_bar=true",
        "model.gradient_checkpointing=false", "train.per_device_train_batch_size=4", "train.save_steps=1000",
        *overrides,
    ])
    return main(config)


def assert_loss_falls(summary, margin):
    assert summary["final_loss"] < summary["first_loss"] - margin, summary


def test_full_finetune_loss_falls_and_output_is_complete(tiny_model_dir, tmp_path):
    out = tmp_path / "full"
    summary = sft(tiny_model_dir, out, "train.max_steps=12", "train.learning_rate=3e-3", "train.logging_steps=1",
                  "train.report_to=[tensorboard]", "model.gradient_checkpointing=true")
    assert_loss_falls(summary, 1.0)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja",
                 "generation_config.json", "coder_align_config.yaml", "summary.json", "loss.png"):
        assert (out / name).is_file(), name
    assert list(out.glob("runs/*/events.out.tfevents.*")), "TensorBoard logs"
    saved = json.loads((out / "summary.json").read_text())
    assert saved["data"]["rows_read"] == 24 and saved["data"]["rows_used"] == 24
    assert saved["tokens_per_second"] > 0 and saved["steps"] == 12

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from coder_align.templates import EOT, render

    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    eot = tokenizer.convert_tokens_to_ids(EOT)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert eot in model.generation_config.eos_token_id
    messages = [{"role": "user", "content": "hi"}]
    # the prompt SFT trained with (not DeepSeek's: this base is no DeepSeek model)
    assert tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == render(
        messages, add_generation_prompt=True, system_prompt=saved["system_prompt"]["text"])


def test_lora_trains_adapter_and_new_eot_row(tiny_model_dir, tmp_path):
    out = tmp_path / "lora"
    summary = sft(tiny_model_dir, out, "peft.method=lora", "train.max_steps=12", "train.learning_rate=1e-2",
                  "peft.r=8", "sample_prompts=[Write add.]", "max_new_tokens=8")
    assert_loss_falls(summary, 0.3)
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    from safetensors import safe_open

    with safe_open(out / "adapter_model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert any("lora_A" in k for k in keys)
    assert any("trainable_tokens" in k and "embed_tokens" in k for k in keys), "the new <|EOT|> row trains"
    assert any("trainable_tokens" in k and "lm_head" in k for k in keys), "untied head row trains too"
    assert summary["samples"][0]["instruction"] == "Write add."
    assert (out / "samples.jsonl").is_file()


def test_merge_folds_adapter_into_full_weights(tiny_model_dir, tmp_path):
    out = tmp_path / "lora"
    sft(tiny_model_dir, out, "peft.method=lora", "train.max_steps=3", "train.learning_rate=1e-2")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from coder_align.models import fit_embeddings

    merged_dir = tmp_path / "merged"
    subprocess.run([sys.executable, "-m", "coder_align.cli", "merge", str(out), "--out", str(merged_dir),
                    "--dtype", "float32"], check=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert (merged_dir / "model.safetensors").is_file() and not (merged_dir / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    tokenizer = AutoTokenizer.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    fit_embeddings(base, tokenizer)
    reference = PeftModel.from_pretrained(base, out).eval()
    ids = torch.tensor([tokenizer("def add(a, b):\n<|EOT|>").input_ids])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, reference(ids).logits, atol=1e-4, rtol=1e-4)


def test_adapter_directory_serves_with_plain_peft_and_merge_keeps_greedy_output(tiny_model_dir, tmp_path):
    from peft import AutoPeftModelForCausalLM
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from coder_align.templates import EOT

    out = tmp_path / "lora"
    sft(tiny_model_dir, out, "peft.method=lora", "train.max_steps=3", "train.learning_rate=1e-2")
    with safe_open(out / "adapter_model.safetensors", "pt") as f:
        keys = list(f.keys())
    # only LoRA matrices and the trained <|EOT|> rows, not whole embedding matrices
    assert not [k for k in keys if k.endswith("base_layer.weight")], keys
    assert any("trainable_tokens_delta" in k for k in keys)

    # the README's way to serve the adapter directory
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoPeftModelForCausalLM.from_pretrained(out).eval()
    model.generation_config = GenerationConfig.from_pretrained(out)
    assert tokenizer.convert_tokens_to_ids(EOT) in model.generation_config.eos_token_id

    # the same model as in training: base grown to the tokenizer, trained <|EOT|> row, LoRA
    from peft import PeftModel

    from coder_align.models import fit_embeddings

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    fit_embeddings(base, tokenizer)
    reference = PeftModel.from_pretrained(base, out).eval()
    ids = torch.tensor([tokenizer("def add(a, b):\n<|EOT|>").input_ids])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference(ids).logits)

    merged_dir = tmp_path / "merged"  # default dtype: the base's (float32 here), not bf16
    subprocess.run([sys.executable, "-m", "coder_align.cli", "merge", str(out), "--out", str(merged_dir)],
                   check=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    assert merged.dtype == torch.float32
    mask = os.umask(0)
    os.umask(mask)
    assert (merged_dir / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask
    prompts = ["Write add(a, b).", "Reverse a string.", "Sum a list of numbers.", "Is 7 prime?", "Sort a list."]
    for prompt in prompts:
        chat = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                             return_tensors="pt", return_dict=True)
        with torch.no_grad():
            adapter_ids = model.generate(**chat, max_new_tokens=16, do_sample=False)
            merged_ids = merged.generate(**chat, max_new_tokens=16, do_sample=False)
        assert adapter_ids.tolist() == merged_ids.tolist(), prompt


def test_qlora_4bit_nf4_trains_on_cpu(tiny_model_dir, tmp_path):
    pytest.importorskip("bitsandbytes")
    out = tmp_path / "qlora"
    summary = sft(tiny_model_dir, out, "peft.method=qlora", "train.max_steps=10", "train.learning_rate=1e-2",
                  "model.gradient_checkpointing=true")
    assert_loss_falls(summary, 0.2)
    assert (out / "adapter_model.safetensors").is_file()


def test_resume_continues_only_with_the_same_config(tiny_model_dir, tmp_path):
    from coder_align.config import ConfigError

    out = tmp_path / "resume"
    same = ["train.max_steps=4", "train.save_steps=2", "train.learning_rate=1e-3"]
    first = sft(tiny_model_dir, out, *same)
    assert first["resumed"] is False and first["resumed_from"] is None and (out / "checkpoint-4").is_dir()
    shutil.rmtree(out / "checkpoint-4")  # as if the run had died after step 2
    second = sft(tiny_model_dir, out, *same, "train.logging_steps=2")  # logging does not shape training
    assert second["resumed"] is True and second["resumed_from"].endswith("checkpoint-2")
    assert second["resumed_from_step"] == 2
    assert second["steps"] == 4 and second["config"]["train"]["max_steps"] == 4

    # another config: a one-line error naming the differing keys and the two ways out, before any model loads
    with pytest.raises(ConfigError) as error:
        sft(tiny_model_dir, out, "train.max_steps=2", "train.save_steps=2", "train.learning_rate=1e-2")
    message = str(error.value)
    assert "train.learning_rate: 0.001 -> 0.01" in message and "train.max_steps: 4 -> 2" in message
    assert "train.output_dir" in message and "train.resume=never" in message and "train.overwrite=true" in message
    assert "\n" not in message
    assert "max_steps: 4" in (out / "coder_align_config.yaml").read_text()  # the refused config is not saved

    fresh = sft(tiny_model_dir, out, "train.max_steps=2", "train.save_steps=2", "train.overwrite=true")
    assert fresh["resumed_from"] is None and fresh["steps"] == 2 and not (out / "checkpoint-4").exists()
    never = sft(tiny_model_dir, out, "train.max_steps=1", "train.resume=never")
    assert never["resumed_from"] is None and never["steps"] == 1
    # checkpoint-2 (of the max_steps=2 run) is still the newest, and its own saved config says so
    with pytest.raises(ConfigError, match=r"holds checkpoint-2 .*train.max_steps: 2 -> 1"):
        sft(tiny_model_dir, out, "train.max_steps=1")


def test_every_checkpoint_is_servable_and_mergeable_like_the_final_directory(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from coder_align.models.merge import merge
    from coder_align.templates import EOT

    out = tmp_path / "lora"
    sft(tiny_model_dir, out, "peft.method=lora", "train.max_steps=2", "train.save_steps=1")
    for checkpoint in (out / "checkpoint-1", out / "checkpoint-2"):
        for name in ("adapter_model.safetensors", "tokenizer.json", "chat_template.jinja", "generation_config.json",
                     "coder_align_config.yaml"):
            assert (checkpoint / name).is_file(), f"{checkpoint.name}/{name}"
    merged = merge(out / "checkpoint-1", tmp_path / "merged-1", dtype="float32")
    model = AutoModelForCausalLM.from_pretrained(merged)
    tokenizer = AutoTokenizer.from_pretrained(merged)
    assert tokenizer.convert_tokens_to_ids(EOT) in model.generation_config.eos_token_id
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True).endswith("### Response:\n")

    full = tmp_path / "full"
    sft(tiny_model_dir, full, "train.max_steps=1", "train.save_steps=1")
    model = AutoModelForCausalLM.from_pretrained(full / "checkpoint-1")
    tokenizer = AutoTokenizer.from_pretrained(full / "checkpoint-1")
    assert tokenizer.convert_tokens_to_ids(EOT) in model.generation_config.eos_token_id


def test_short_runs_log_their_last_step_files_are_readable_and_corrupt_checkpoints_are_named(tiny_model_dir,
                                                                                            tmp_path):
    from coder_align.config import ConfigError

    out = tmp_path / "short"
    settings = ["train.max_steps=2", "train.logging_steps=5", "train.save_steps=2", "train.learning_rate=1e-3"]
    summary = sft(tiny_model_dir, out, *settings)
    assert summary["final_loss"] is not None and (out / "loss.png").is_file()  # max_steps < logging_steps

    mask = os.umask(0)
    os.umask(mask)
    for path in (out / "model.safetensors", out / "checkpoint-2" / "model.safetensors", out / "summary.json"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path  # not 0600

    weights = out / "checkpoint-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a run killed while saving
    with pytest.raises(ConfigError, match=r"cannot resume from .*checkpoint-2: model.safetensors is unreadable .*; "
                                          r"delete .*checkpoint-2 to resume from the checkpoint before it"):
        sft(tiny_model_dir, out, *settings)


def test_packing_trains_on_the_same_tokens_without_padding(tiny_model_dir, tmp_path):
    summary = sft(tiny_model_dir, tmp_path / "packed", "data.packing=true", "train.max_steps=8",
                  "train.learning_rate=3e-3")
    assert summary["packing"] is True
    assert_loss_falls(summary, 0.5)


def test_no_trainable_rows_is_an_error(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "' + "long " * 400 + '"}\n')
    with pytest.raises(ValueError, match="no trainable rows left"):
        sft(tiny_model_dir, tmp_path / "o", f"data.path={bad}", "data.max_length=64")


@pytest.mark.skipif(shutil.which("deepspeed") is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "deepspeed")), reason="deepspeed launcher not installed")
def test_deepspeed_zero3_two_processes_on_cpu(tiny_model_dir, tmp_path):
    out = tmp_path / "zero3"
    launcher = os.path.join(os.path.dirname(sys.executable), "deepspeed")
    cmd = [launcher, "--num_gpus", "2", "--master_port", "29517", str(REPO_ROOT / "coder_align" / "sft.py"),
           f"model.path={tiny_model_dir}", f"data.path={DATA}", f"train.output_dir={out}",
           "train.deepspeed=configs/deepspeed/zero3.json", "train.max_steps=3", "train.warmup_steps=0",
           "train.learning_rate=1e-3", "train.per_device_train_batch_size=2", "train.report_to=[]",
           "model.gradient_checkpointing=false", "data.max_length=256"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["epochs"] == 0.5  # 3 steps x 2 ranks x 2 rows of 24

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)  # gathered 16-bit weights, not empty shards
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trained = model.model.layers[0].mlp.up_proj.weight
    assert trained.shape == original.model.layers[0].mlp.up_proj.weight.shape
    assert trained.abs().sum() > 0
    assert not torch.equal(trained, original.model.layers[0].mlp.up_proj.weight)


def test_generate_stops_at_eot_and_reports_when_it_did_not(tiny_model_dir, tokenizer):
    """`generate` (used by the notebook and sample_prompts): greedy, stops on <|EOT|>, says so."""
    from coder_align.config import ModelConfig
    from coder_align.models import load_model
    from coder_align.sft import generate
    from coder_align.templates import EOT

    model = load_model(ModelConfig(path=str(tiny_model_dir)), tokenizer, training=False)
    head = model.get_output_embeddings()

    def always(token_id):  # a head whose greedy choice is always token_id
        linear = torch.nn.Linear(head.in_features, head.out_features, bias=True)
        with torch.no_grad():
            linear.weight.zero_()
            linear.bias.zero_()
            linear.bias[token_id] = 1.0
        model.set_output_embeddings(linear)

    always(tokenizer.convert_tokens_to_ids(EOT))
    answers = generate(model, tokenizer, ["Write f().", "Write g()."], max_new_tokens=5)
    assert [a["instruction"] for a in answers] == ["Write f().", "Write g()."]
    assert all(a["stopped_at_eot"] and a["response"] == "" for a in answers)

    x = tokenizer("x", add_special_tokens=False)["input_ids"][0]
    always(x)
    [answer] = generate(model, tokenizer, ["Write f()."], max_new_tokens=5)
    assert answer == {"instruction": "Write f().", "response": "xxxxx", "stopped_at_eot": False}


def test_summary_records_the_threads_a_run_trained_with_and_pinning_them_reproduces_it(
        tiny_model_dir, tmp_path, monkeypatch):
    """Threads follow the machine's load (models.threads) and change how sums are ordered: the
    summary says which count trained from which step, and a run pinned to it repeats every digit."""
    previous = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # fit_threads_to_machine leaves a chosen count alone
    torch.set_num_threads(1)
    try:
        runs = [sft(tiny_model_dir, tmp_path / name, "train.max_steps=3", "train.learning_rate=1e-3",
                    "train.logging_steps=1") for name in ("a", "b")]
    finally:
        torch.set_num_threads(previous)
    assert [r["cpu_threads"] for r in runs] == [[{"from_step": 0, "threads": 1}]] * 2
    assert runs[0]["final_loss"] == runs[1]["final_loss"] and runs[0]["train_loss"] == runs[1]["train_loss"]
    on_disk = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert on_disk["cpu_threads"] == runs[0]["cpu_threads"]
