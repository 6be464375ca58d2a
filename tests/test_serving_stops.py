"""Issue 27, item 3: what a run saves stops at <|EOT|> on the common load paths (transformers on
full weights or a merged adapter, the generation_config.json vLLM and TGI read, peft with the
README's lines), and an adapter whose recorded base moved still finds it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from coder_align.config import load_config
from coder_align.templates import EOT

ROWS = [{"instruction": "Write neg(x).", "output": "def neg(x):\n    return -x"}]
COMMON = ["train.report_to=[]", "train.disable_progress_bar=true", "model.gradient_checkpointing=false",
          "train.save_steps=1", "train.max_steps=1", "train.warmup_steps=0"]


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    from coder_align.models.merge import merge
    from coder_align.sft import SFTConfig, main

    tmp = tmp_path_factory.mktemp("serving")
    data = tmp / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = {}
    for method in ("none", "lora"):
        out[method] = tmp / method
        main(load_config(SFTConfig, None, [f"model.path={tiny_model_dir}", f"data.path={data}",
                                           f"train.output_dir={out[method]}", f"peft.method={method}", *COMMON]))
    out["merged"] = merge(out["lora"], tmp / "merged")
    return out


def new_tokens(model, tokenizer) -> list[int]:
    """Greedy generation from a random model, steered to two ordinary tokens and then <|EOT|>:
    a model that stops at <|EOT|> returns 3 new tokens, one that does not runs on to 12."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    eot = tokenizer.convert_tokens_to_ids(EOT)
    ordinary = tokenizer.convert_tokens_to_ids("a")

    class Steer(LogitsProcessor):
        def __init__(self, start):
            self.start = start

        def __call__(self, input_ids, scores):
            step = input_ids.shape[1] - self.start
            forced = torch.full_like(scores, -1e9)
            forced[:, eot if step >= 2 else ordinary] = 0
            return forced

    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Write neg(x)."}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    start = ids["input_ids"].shape[1]
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False,
                             logits_processor=LogitsProcessorList([Steer(start)]))
    return out[0, start:].tolist()


@pytest.mark.parametrize("kind", ["none", "merged"])
def test_full_and_merged_weights_stop_at_eot_with_plain_transformers(runs, kind):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(runs[kind])
    model = AutoModelForCausalLM.from_pretrained(runs[kind])
    eot = tokenizer.convert_tokens_to_ids(EOT)
    assert new_tokens(model, tokenizer)[-1] == eot and len(new_tokens(model, tokenizer)) == 3
    # what vLLM and TGI read for their stop tokens
    saved = json.loads((runs[kind] / "generation_config.json").read_text())["eos_token_id"]
    assert eot in (saved if isinstance(saved, list) else [saved])


def test_plain_peft_stops_at_eot_on_a_local_base(runs):
    """No extra line: the adapter records a stopping base (models/stopping_base.py), whose
    generation config peft hands to generation; the base's own weights are linked, not copied."""
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer, GenerationConfig

    adapter = runs["lora"]
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    eot = tokenizer.convert_tokens_to_ids(EOT)
    assert eot in GenerationConfig.from_pretrained(adapter).eos_token_id
    model = AutoPeftModelForCausalLM.from_pretrained(adapter)
    assert new_tokens(model, tokenizer)[-1] == eot and len(new_tokens(model, tokenizer)) == 3

    base = Path(json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"])
    assert base.parent.name == "stopping_bases" and (base / "model.safetensors").is_symlink()
    trained_on = (adapter / "coder_align_config.yaml").read_text()
    assert str((base / "model.safetensors").resolve().parent) in trained_on  # the run's model.path
    # every checkpoint the Trainer saved points there too
    checkpoints = list(adapter.glob("checkpoint-*"))
    assert checkpoints
    for checkpoint in checkpoints:
        assert json.loads((checkpoint / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base)


def test_a_hub_base_and_a_base_that_stops_are_left_as_they_are(tmp_path, tiny_model_dir, monkeypatch):
    from coder_align.models.stopping_base import record_stopping_base

    monkeypatch.setenv("CODER_ALIGN_CACHE", str(tmp_path / "cache"))
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "deepseek-ai/deepseek-coder-6.7b-base"}))
    assert record_stopping_base(hub, [32021, 32014]) is None  # a local path would not load elsewhere

    local = tmp_path / "local"
    local.mkdir()
    (local / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_model_dir)}))
    view = record_stopping_base(local, [7, 0])
    assert view and record_stopping_base(local, [7, 0]) is None  # the view already stops there
    assert json.loads((Path(view) / "generation_config.json").read_text())["eos_token_id"][:2] == [7, 0]


def test_views_of_bases_that_are_gone_are_removed(tmp_path, tiny_model_dir, monkeypatch):
    from coder_align.models.stopping_base import stopping_base

    monkeypatch.setenv("CODER_ALIGN_CACHE", str(tmp_path / "cache"))
    temporary = tmp_path / "temporary-base"
    shutil.copytree(tiny_model_dir, temporary)
    gone = stopping_base(temporary, [7])
    shutil.rmtree(temporary)
    kept = stopping_base(tiny_model_dir, [7])
    assert [p.name for p in (tmp_path / "cache" / "stopping_bases").iterdir()] == [kept.name] and not gone.exists()


def test_a_moved_grpo_adapter_finds_the_start_model_inside_it(tmp_path, caplog):
    from coder_align.run_dir import read_run

    moved = tmp_path / "copied-elsewhere"
    (moved / "start_model").mkdir(parents=True)
    (moved / "start_model" / "config.json").write_text("{}")
    (moved / "adapter_config.json").write_text(json.dumps(
        {"base_model_name_or_path": "/machine/that/trained/outputs/grpo/start_model"}))
    assert read_run(moved).weights == str((moved / "start_model").resolve())

    shutil.rmtree(moved / "start_model")
    with caplog.at_level("WARNING"):
        assert read_run(moved).weights == "/machine/that/trained/outputs/grpo/start_model"
    assert "is not on this machine" in caplog.text and "--base" in caplog.text
