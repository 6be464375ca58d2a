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
])
def test_user_errors_are_one_line_and_exit_2(tmp_path, make_args, expected):
    (tmp_path / "bad.jsonl").write_text('{"instruction": "x", "output": "y"}\n{bad json\n')
    (tmp_path / "empty.jsonl").write_text('{"instruction": "x", "output": ""}\n')
    proc = run("sft", *make_args(tmp_path), f"train.output_dir={tmp_path / 'out'}")
    assert proc.returncode == 2
    # progress logging may come first; the error is the last line, alone, with no traceback
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and [l for l in lines if "error" in l.lower()] == lines[-1:], proc.stderr
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
