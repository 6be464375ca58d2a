"""`coder-align`: user errors are one line and exit 2; --debug or CODER_ALIGN_DEBUG shows the traceback;
bugs keep theirs."""

import subprocess
import sys
import types

import pytest

from coder_align import cli
from coder_align.config import ConfigError

from conftest import cli_command, cli_env


def run(*args, **env):
    return subprocess.run(cli_command(*args), capture_output=True, text=True, env={**cli_env(), **env}, timeout=300)


@pytest.mark.parametrize("make_args, expected", [
    (lambda tmp: ["data.path=/nonexistent.jsonl"], "coder-align sft: error: /nonexistent.jsonl: file not found"),
    (lambda tmp: ["data.pth=x.jsonl"], "coder-align sft: error: defaults + command-line overrides: "
                                       "unknown key 'data.pth'; did you mean 'data.path'?"),
    (lambda tmp: [f"data.path={tmp / 'bad.jsonl'}"], "bad.jsonl:2: invalid JSON"),
    (lambda tmp: [f"data.path={tmp / 'empty.jsonl'}", "data.on_invalid=skip"],
     "empty.jsonl: no trainable rows left"),
    (lambda tmp: ["data.path=data_templates/alpaca.jsonl", "model.path=/no/such/model"],
     "coder-align sft: error: model path not found: /no/such/model"),
    (lambda tmp: ["data.path=data_templates/alpaca.jsonl", "model.path=nobody-xyz/no-such-model"],
     "coder-align sft: error: cannot load model 'nobody-xyz/no-such-model': "),
])
def test_user_errors_are_one_line_and_exit_2(tmp_path, make_args, expected):
    (tmp_path / "bad.jsonl").write_text('{"instruction": "x", "output": "y"}\n{bad json\n')
    (tmp_path / "empty.jsonl").write_text('{"instruction": "x", "output": ""}\n')
    proc = run("sft", *make_args(tmp_path), f"train.output_dir={tmp_path / 'out'}", HF_HUB_OFFLINE="1")
    assert proc.returncode == 2
    # progress logging may come first; the error is the last line, alone, with no traceback
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and [l for l in lines if l.startswith("coder-align")] == lines[-1:], proc.stderr
    assert lines[-1].startswith("coder-align sft: error: ") and expected in lines[-1]


def test_debug_flag_and_env_var_show_the_traceback(tmp_path):
    for proc in (run("sft", "data.path=/nonexistent.jsonl", "--debug"),
                 run("sft", "data.path=/nonexistent.jsonl", CODER_ALIGN_DEBUG="1")):
        assert proc.returncode != 0
        assert "Traceback (most recent call last)" in proc.stderr and "DataError" in proc.stderr


def _fake_command(monkeypatch, error: Exception):
    module = types.ModuleType("coder_align_fake_command")

    def fake_cli(argv):
        raise error

    module.cli = fake_cli
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli.COMMANDS, "fake", (module.__name__, "cli", "a test command"))


def test_unexpected_exceptions_keep_their_traceback(monkeypatch, capsys):
    _fake_command(monkeypatch, ZeroDivisionError("a bug"))
    with pytest.raises(ZeroDivisionError):
        cli.main(["fake"])


def test_multi_line_user_error_is_joined_into_one_line(monkeypatch, capsys):
    _fake_command(monkeypatch, ConfigError("first line\n  second line"))
    assert cli.main(["fake"]) == 2
    assert capsys.readouterr().err == "coder-align fake: error: first line second line\n"
    monkeypatch.setenv("CODER_ALIGN_DEBUG", "1")
    with pytest.raises(ConfigError):
        cli.main(["fake"])


def test_version_and_help_with_defaults(capsys):
    from coder_align import __version__
    from coder_align.evaluate import _parser

    assert cli.main(["--version"]) == 0 and capsys.readouterr().out == f"coder-align {__version__}\n"
    proc = run("sft", "--help")
    assert proc.returncode == 0
    for line in ("  train.learning_rate=1.0e-05  (> 0)", "  data.max_length=1024  (>= 2)", "  peft.method=none"):
        assert line in proc.stdout.splitlines(), line
    run_help = " ".join(_parser()._subparsers._group_actions[0].choices["run"].format_help().split())  # unwrapped
    assert "(default: 0.0)" in run_help and "(default: humaneval,mbpp,infilling)" in run_help


def test_ctrl_c_is_one_line_with_a_resume_hint(monkeypatch, capsys):
    _fake_command(monkeypatch, KeyboardInterrupt())
    monkeypatch.setitem(cli.COMMANDS, "sft", cli.COMMANDS["fake"])
    assert cli.main(["sft"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == ("coder-align sft: interrupted. Rerun the same command to resume from the last checkpoint "
                   "(train.save_steps).")


def test_unwritable_output_dir_fails_before_the_model_loads(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = run("sft", "data.path=data_templates/alpaca.jsonl", f"train.output_dir={blocker / 'out'}",
               "model.path=/no/such/model-dir-that-would-fail-later")
    # the model path is checked when the tokenizer loads, first; with a real model the output
    # directory is checked right after the data, before the model loads
    assert proc.returncode == 2
    proc = run("sft", "data.path=data_templates/alpaca.jsonl", f"train.output_dir={blocker / 'out'}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"coder-align sft: error: train.output_dir {blocker / 'out'} "
                                                           "is not writable")
    assert "Loading weights" not in proc.stderr


def test_a_run_that_failed_before_training_leaves_no_output_dir(tmp_path):
    from coder_align import training
    from coder_align.config import load_config
    from coder_align.sft import SFTConfig

    config = load_config(SFTConfig, None, [f"train.output_dir={tmp_path / 'new'}"])
    training.prepare_output_dir(config, tmp_path / "new")
    assert (tmp_path / "new" / "coder_align_config.yaml").is_file()
    kept = load_config(SFTConfig, None, [f"train.output_dir={tmp_path / 'kept'}"])
    training.prepare_output_dir(kept, tmp_path / "kept")
    (tmp_path / "kept" / "runs").mkdir()  # training had begun
    assert training.remove_unused_outputs() == [tmp_path / "new"]
    assert not (tmp_path / "new").exists() and (tmp_path / "kept" / "runs").is_dir()


def test_overwrite_clears_the_per_step_records_a_new_run_would_append_to(tmp_path):
    from coder_align import training
    from coder_align.config import load_config
    from coder_align.grpo import GRPOConfig

    out = tmp_path / "run"
    out.mkdir()
    for record in ("completions.jsonl", "validation.jsonl"):
        (out / record).write_text('{"step": 1}\n')
    config = load_config(GRPOConfig, None, [f"train.output_dir={out}", "train.overwrite=true"])
    training.prepare_output_dir(config, out)
    assert not (out / "completions.jsonl").exists() and not (out / "validation.jsonl").exists()
