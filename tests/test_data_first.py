"""Issue 27, items 1-2: every stage checks its config, files and rows before any model (or GGUF
conversion) loads, and a refused run leaves nothing behind in its output directory."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def no_model(monkeypatch):
    """Loading any model, tokenizer or GGUF conversion fails loudly (not as a user error)."""
    import transformers

    from coder_align.models import loading

    def refuse(*args, **kwargs):
        raise AssertionError("a model, tokenizer or GGUF conversion was loaded before the data was checked")

    monkeypatch.setattr(loading, "convert_gguf", refuse)
    for cls in (transformers.AutoTokenizer, transformers.AutoModelForCausalLM,
                transformers.AutoModelForSequenceClassification):
        monkeypatch.setattr(cls, "from_pretrained", refuse)


@pytest.fixture(autouse=True)
def restore_environment(monkeypatch):
    """cli.main marks the environment for the processes it starts; undone after each test."""
    monkeypatch.setenv("CODER_ALIGN_QUIET_KNOWN_WARNINGS", "0")


def run_cli(*argv: str) -> int:
    from coder_align.cli import main

    return main(list(argv))


def typo(tmp_path) -> str:
    return str(tmp_path / "trian.jsonl")  # a data file that is not there


STAGES = {
    "sft": lambda t: ["sft", "model.path=embedded", f"data.path={typo(t)}", f"train.output_dir={t / 'out'}"],
    "pretrain": lambda t: ["pretrain", "model.path=embedded", f"data.path={typo(t)}",
                           f"train.output_dir={t / 'out'}"],
    "grpo": lambda t: ["grpo", "model.path=embedded", f"data.path={typo(t)}", f"train.output_dir={t / 'out'}",
                       "grpo.num_generations=4"],
    "rft": lambda t: ["rft", "model.path=embedded", f"data.path={typo(t)}", f"output_dir={t / 'out'}"],
    "rm train": lambda t: ["rm", "train", "model.path=embedded", f"data.path={typo(t)}",
                           f"train.output_dir={t / 'out'}"],
    "rm data": lambda t: ["rm", "data", "--model", "embedded", "--tasks", typo(t), "--out", str(t / "out" / "r.jsonl")],
    "eval run": lambda t: ["eval", "run", "--model", "embedded", "--tasks", typo(t), "--mode", "instruct",
                           "--out", str(t / "out")],
    "data difficulty": lambda t: ["data", "difficulty", "--model", "embedded", "--tasks", typo(t),
                                  "--out", str(t / "out" / "kept.jsonl")],
}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_typo_in_the_data_path_fails_before_any_model_loads(stage, tmp_path, no_model, capsys):
    assert run_cli(*STAGES[stage](tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "trian.jsonl" in err and ("not found" in err or "No such file" in err), err
    assert not (tmp_path / "out").exists()  # refused: nothing written


def test_sft_checks_every_row_before_the_tokenizer(tmp_path, no_model, capsys):
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n" + json.dumps({"instruction": "c"}) + "\n")
    assert run_cli("sft", "model.path=embedded", f"data.path={data}", f"train.output_dir={tmp_path / 'out'}") == 2
    err = capsys.readouterr().err
    assert f"{data}:2" in err and "output" in err
    assert not (tmp_path / "out").exists()


def test_grpo_checks_the_sandbox_before_the_tokenizer(tmp_path, no_model, monkeypatch, capsys):
    data = tmp_path / "tasks.jsonl"
    data.write_text(json.dumps({"prompt": "Write one().", "tests": ["assert one() == 1"]}) + "\n")
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # no bwrap
    assert run_cli("grpo", "model.path=embedded", f"data.path={data}", f"train.output_dir={tmp_path / 'out'}",
                   "grpo.num_generations=4") == 2
    assert "bubblewrap" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_eval_refused_without_a_sandbox_leaves_its_output_dir_as_it_was(tmp_path, monkeypatch, capsys):
    task = tmp_path / "toy.jsonl"
    task.write_text(json.dumps({"task_id": "a", "instruction": "Write one().", "tests": ["assert one() == 1"]}) + "\n")
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    out = tmp_path / "existing"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for target in (out, tmp_path / "new"):
        assert run_cli("eval", "run", "--tasks", str(task), "--model", str(tmp_path / "no-model"),
                       "--mode", "instruct", "--out", str(target)) == 2
        assert "cannot score here" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert not (tmp_path / "new").exists()


def test_a_training_run_refused_after_its_config_was_written_takes_it_back(tmp_path, capsys):
    """A model directory that does not load is found only after the output directory was
    prepared: the config written there goes, the user's own files (and directory) stay. A path
    that does not exist at all is refused before anything is written."""
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n")
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    out = tmp_path / "existing"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for model, message in ((broken, "cannot load model"), (tmp_path / "no-model", "model path not found")):
        for target in (out, tmp_path / "new"):
            assert run_cli("sft", f"model.path={model}", f"data.path={data}", f"train.output_dir={target}") == 2
            assert message in capsys.readouterr().err
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
        assert not (tmp_path / "new").exists()


def test_remove_unused_outputs_keeps_a_config_that_was_there_before(tmp_path):
    from coder_align.training.output_dir import note_output_dir, remove_unused_outputs

    out = tmp_path / "run"
    out.mkdir()
    (out / "coder_align_config.yaml").write_text("old: 1\n")
    note_output_dir(out)
    (out / "coder_align_config.yaml").write_text("new: 1\n")  # overwritten, as a resume does
    assert remove_unused_outputs() == []
    assert (out / "coder_align_config.yaml").is_file()
