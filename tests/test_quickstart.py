"""The embedded default model through the real SFT entry points."""

import json
import subprocess

import pytest

from conftest import REPO_ROOT, cli_command, cli_env


def test_embedded_model_lora_steps_and_stop_at_eot(tmp_path):
    out = tmp_path / "embedded"
    cmd = cli_command("sft", "--config", "configs/sft/quickstart-cpu.yaml", f"train.output_dir={out}",
                      "train.max_steps=2", "train.report_to=[]", "max_new_tokens=48")
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=cli_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "embedded" and summary["steps"] == 2
    assert "### Instruction:" in result.stdout and f"output in {out}" in result.stdout
    # the instruct model, prompted with our template, answers and ends on <|EOT|>
    assert summary["samples"][0]["stopped_at_eot"], summary["samples"]
    assert "def " in summary["samples"][0]["response"]


@pytest.mark.slow
def test_make_quickstart_config_end_to_end(tmp_path):
    """What `make quickstart` runs, in full: the loss falls and the answer stops at <|EOT|>."""
    out = tmp_path / "quickstart"
    cmd = cli_command("sft", "--config", "configs/sft/quickstart-cpu.yaml", f"train.output_dir={out}")
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=cli_env(), capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_loss"] < 0.8 * summary["first_loss"]
    assert all(s["stopped_at_eot"] for s in summary["samples"])
    assert (out / "loss.png").is_file() and (out / "adapter_model.safetensors").is_file()
