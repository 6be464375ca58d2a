"""run_dir.read_run, and the SFT(LoRA) -> GRPO(adapter) -> merge -> eval round trip on a tiny model.

The round trip uses a non-default system prompt: every later stage must prompt the model
with the bytes SFT trained it on, not DeepSeek's default prompt.
"""

from __future__ import annotations

import json

import pytest
import yaml

from coder_align.config import load_config
from coder_align.run_dir import NEUTRAL_SYSTEM_PROMPT, read_run
from coder_align.templates import DEEPSEEK_SYSTEM_PROMPT, render

SYSTEM = "You are a terse Python tutor."
MESSAGES = [{"role": "user", "content": "Write neg(x)."}]
SFT_ROWS = [{"instruction": "Write neg(x).", "output": "def neg(x):\n    return -x"},
            {"instruction": "Write inc(x).", "output": "def inc(x):\n    return x + 1"}]
GRPO_ROWS = [{"task_id": 1, "messages": MESSAGES, "tests": ["assert neg(2) == -2"]},
             {"task_id": 2, "prompt": "Write inc(x).", "tests": ["assert inc(1) == 2"]}]
COMMON = ["train.report_to=[]", "train.disable_progress_bar=true", "model.gradient_checkpointing=false",
          "train.save_steps=1000", "train.max_steps=1", "train.warmup_steps=0"]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def base_with_eot(tmp_path_factory):
    """A 2-layer random Llama whose vocabulary already has <|EOT|>: its LoRA adapter trains no
    added-token rows, so GRPO may train the adapter further."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from coder_align.models import load_tokenizer

    path = tmp_path_factory.mktemp("base-eot")
    tokenizer = load_tokenizer("embedded")
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                 max_position_embeddings=512, eos_token_id=tokenizer.eos_token_id)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def round_trip(base_with_eot, tmp_path_factory):
    from coder_align.grpo import GRPOConfig
    from coder_align.grpo import main as grpo_main
    from coder_align.models.merge import merge
    from coder_align.sft import SFTConfig
    from coder_align.sft import main as sft_main

    tmp = tmp_path_factory.mktemp("round-trip")
    sft_out, grpo_out = tmp / "sft", tmp / "grpo"
    sft_main(load_config(SFTConfig, None, [
        f"model.path={base_with_eot}", f"data.path={write_jsonl(tmp / 'sft.jsonl', SFT_ROWS)}",
        f"train.output_dir={sft_out}", "peft.method=lora", f"data.system_prompt={SYSTEM}", *COMMON]))
    grpo_main(load_config(GRPOConfig, None, [
        f"model.path={sft_out}", f"data.path={write_jsonl(tmp / 'grpo.jsonl', GRPO_ROWS)}",
        f"train.output_dir={grpo_out}", "grpo.rewards={format: 1.0}", "grpo.num_generations=2",
        "grpo.max_completion_length=4", "train.per_device_train_batch_size=4", *COMMON]))
    merged = merge(grpo_out, tmp / "merged")
    return {"base": base_with_eot, "sft": sft_out, "grpo": grpo_out, "merged": merged, "tmp": tmp}


def test_each_stage_reads_the_same_base_template_and_system_prompt(round_trip):
    base = str(round_trip["base"])
    sft, grpo, merged = (read_run(round_trip[k]) for k in ("sft", "grpo", "merged"))
    assert (sft.stage, sft.weights, sft.adapter, sft.system_prompt) == ("sft", base, str(round_trip["sft"]), SYSTEM)
    # GRPO trained the SFT adapter further: its saved config records the base, not that adapter
    saved = yaml.safe_load((round_trip["grpo"] / "coder_align_config.yaml").read_text())
    assert saved["model"]["path"] == base and saved["data"]["system_prompt"] == SYSTEM
    assert (grpo.stage, grpo.weights, grpo.adapter, grpo.template) == ("grpo", base, str(round_trip["grpo"]), "deepseek")
    assert grpo.system_prompt == SYSTEM and not grpo.adapter_trains_new_tokens
    assert (merged.weights, merged.adapter, merged.system_prompt) == (str(round_trip["merged"]), None, SYSTEM)


def test_eval_prompts_with_the_bytes_training_used(round_trip, monkeypatch):
    from transformers import AutoTokenizer

    from coder_align.evaluate import flat_config, main
    from coder_align.evaluation import generation

    sft_bytes = render(MESSAGES, add_generation_prompt=True, system_prompt=SYSTEM)  # what SFT tokenized
    grpo_tok = AutoTokenizer.from_pretrained(round_trip["grpo"])  # what TRL rendered GRPO prompts with
    assert grpo_tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True) == sft_bytes
    assert SYSTEM in sft_bytes and DEEPSEEK_SYSTEM_PROMPT not in sft_bytes

    seen = []
    original = generation.HFGenerator.generate_with_clipping  # what eval's generate calls

    def recording(self, prompts, *args, **kwargs):
        seen.extend(prompts)
        return original(self, prompts, *args, **kwargs)

    monkeypatch.setattr(generation.HFGenerator, "generate_with_clipping", recording)
    tasks = write_jsonl(round_trip["tmp"] / "task.jsonl", [{"task_id": "neg", "messages": MESSAGES,
                                                            "tests": ["assert neg(2) == -2"]}])
    for model in ("merged", "grpo"):  # full weights, and base + adapter
        seen.clear()
        out = round_trip["tmp"] / f"eval-{model}"
        summary = main(flat_config(model=str(round_trip[model]), tasks=[tasks], mode="instruct", max_new_tokens=2,
                                   out=str(out), backend="transformers", threads=1))
        assert seen == [sft_bytes], model
        assert summary["run"]["system_prompt"] == SYSTEM
        assert yaml.safe_load((out / "eval_config.yaml").read_text())["data"]["system_prompt"] == SYSTEM


def test_an_explicit_system_prompt_still_wins(round_trip):
    assert read_run(round_trip["grpo"], system_prompt="").system_prompt == ""
    assert read_run(round_trip["grpo"], template="model").template == "model"


def test_old_grpo_runs_that_saved_an_adapter_as_model_path_resolve_to_its_base(round_trip, tmp_path):
    import shutil

    old = tmp_path / "old-grpo"
    shutil.copytree(round_trip["grpo"], old)
    saved = yaml.safe_load((old / "coder_align_config.yaml").read_text())
    saved["model"]["path"] = str(round_trip["sft"])  # what grpo.py wrote before read_run
    (old / "coder_align_config.yaml").write_text(yaml.safe_dump(saved))
    assert read_run(old).weights == str(round_trip["base"])
    from coder_align.models.merge import base_model_of

    assert base_model_of(old) == str(round_trip["base"])


def test_vllm_backend_gets_merged_weights_for_an_adapter(round_trip, monkeypatch, tmp_path):
    from coder_align.evaluate import flat_config
    from coder_align.evaluation import generation
    from coder_align.evaluation.config import generator_spec

    got = {}

    class FakeVLLM:
        backend = "vllm"

        def __init__(self, path, tokenizer, stops, dtype):
            got.update(path=path, stops=stops)

    monkeypatch.setattr(generation, "VLLMGenerator", FakeVLLM)
    generation.load_generator(generator_spec(flat_config(model=str(round_trip["grpo"]), backend="vllm",
                                                         out=str(tmp_path))))
    merged = tmp_path / "merged_model"
    assert got["path"] == str(merged) and (merged / "model.safetensors").is_file()
    assert not (merged / "adapter_config.json").exists()


def test_plain_models_have_no_recorded_run(tmp_path):
    run = read_run("embedded")
    assert (run.weights, run.tokenizer, run.adapter, run.stage, run.template, run.system_prompt) == (
        "embedded", "embedded", None, None, "deepseek", NEUTRAL_SYSTEM_PROMPT)
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="names no base model"):
        read_run(tmp_path)
