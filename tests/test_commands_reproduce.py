"""Issue 26: every results cell's command resolves to the config its run recorded.

Evaluation cells: `command.txt` is written by the run (`config.save_config`, from the command
line `coder-align` was given) beside `eval_config.yaml`. Training cells (made before that):
the command RESULTS.md documents for each must resolve to the `config` its summary recorded.
"""

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from coder_align import cli
from coder_align.config import COMMAND_ENV, COMMAND_FILE, load_config, save_config, to_dict
from coder_align.run_dir import START_MODEL

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
# decided when the run starts, from the model's own run directory (run_dir.read_run), not by the command
RUN_RESOLVED = {"data.template", "data.system_prompt"}


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def differences(resolved: dict, recorded: dict) -> dict:
    """Keys whose values differ; keys the record lacks (settings added since the run) and the
    run-resolved ones are left out."""
    a, b = flat(resolved), flat(recorded)
    return {k: (a.get(k), b[k]) for k in b if k not in RUN_RESOLVED and a.get(k) != b[k]}


def command_parts(command: str) -> tuple[str, list[str]]:
    """(stage, arguments after it) of a `coder-align ...` line."""
    words = shlex.split(command)
    assert words[0] == "coder-align", command
    if words[1] in ("eval", "data"):
        return f"{words[1]} {words[2]}", words[3:]
    return words[1], words[2:]


@dataclass
class Settings:
    output_dir: str = ""


def test_cli_writes_the_command_beside_every_saved_config(tmp_path, monkeypatch):
    calls = []

    def fake_stage(argv):  # what a stage does: resolve its config, save it in its output directory
        save_config(Settings(str(tmp_path)), tmp_path / "some_config.yaml")
        calls.append(argv)
        return 0

    monkeypatch.setattr(sys.modules[__name__], "fake_stage", fake_stage, raising=False)
    monkeypatch.setitem(cli.COMMANDS, "fake", (__name__, "fake_stage", "a test stage"))
    monkeypatch.delenv(COMMAND_ENV, raising=False)
    assert cli.main(["fake", "--config", "a b.yaml", "x.y=1"]) == 0
    assert (tmp_path / COMMAND_FILE).read_text() == "coder-align fake --config 'a b.yaml' x.y=1\n"
    assert calls == [["--config", "a b.yaml", "x.y=1"]]
    import os

    assert COMMAND_ENV not in os.environ  # put back: later configs of this process are not stamped
    save_config(Settings("x"), tmp_path / "other" / "c.yaml")
    assert not (tmp_path / "other" / COMMAND_FILE).exists()


def test_every_eval_cell_command_resolves_to_its_recorded_config():
    from coder_align.evaluation.config import eval_config

    cells = sorted(RESULTS.glob("*/*/command.txt"))
    # 5 stages x 3 runs, controls/shipped-own-template, shipped validation + leetcode + multilingual;
    # sft-v2, rft-v2, rft2-v2, grpo-rft-v2, rft-grpo-v2 and grpo2-rft-v2 validation + instruct + base +
    # infill; rft-v2 and grpo-rft-v2 leetcode + multilingual; sft-v2 and rft2-v2 leetcode; sft-v2's cut
    # multilingual-partial (5 of 8 languages) (reproductions/ holds no eval cell of its own: its samples
    # are the committed ones)
    assert len(cells) == 50
    for path in cells:
        stage, args = command_parts(path.read_text().strip())
        assert stage == "eval run", path
        config_file = args[args.index("--config") + 1] if "--config" in args else None
        overrides = [a for a in args if "=" in a]
        resolved = to_dict(eval_config(str(REPO / config_file) if config_file else None, overrides))
        recorded = yaml.safe_load((path.parent / "eval_config.yaml").read_text())
        # output_dir: relative in the command (run in the repository), absolute once the run resolved it
        written, recorded_dir = resolved.pop("output_dir"), recorded.pop("output_dir")
        assert recorded_dir == written or Path(recorded_dir).as_posix().endswith("/" + written), path
        assert differences(resolved, recorded) == {}, path


def _training_cells():
    from coder_align.datagen.difficulty import DifficultyConfig
    from coder_align.grpo import GRPOConfig
    from coder_align.rft import RFTConfig
    from coder_align.sft import SFTConfig

    return {  # cell: (config class, recorded config in, path of its summary)
        "sft": (SFTConfig, "sft/train_summary.json"),
        "rft": (RFTConfig, "rft/rft_summary.json"),
        "grpo frontier": (DifficultyConfig, "grpo/frontier.summary.json"),
        "grpo": (GRPOConfig, "grpo/train_summary.json"),
        "grpo-rft frontier": (DifficultyConfig, "grpo-rft/frontier.summary.json"),
        "grpo-rft": (GRPOConfig, "grpo-rft/train_summary.json"),
        "sft-v2": (SFTConfig, "sft-v2/train_summary.json"),  # issue 26's rules, written by the runs
        "rft-v2": (RFTConfig, "rft-v2/rft_summary.json"),
        "rft2-v2": (RFTConfig, "rft2-v2/rft_summary.json"),  # expert iteration: RFT of rft-v2
        "rft-grpo-v2": (RFTConfig, "rft-grpo-v2/rft_summary.json"),  # expert iteration from GRPO's step 110
        "rft-grpo-v2 frontier": (DifficultyConfig, "rft-grpo-v2/frontier.summary.json"),
        # a run longer than a session: its config as benchmarks/grpo_progress.py read it from the run
        "grpo-rft-v2": (GRPOConfig, "grpo-rft-v2/progress.json"),
        "grpo2-rft-v2": (GRPOConfig, "grpo2-rft-v2/progress.json"),  # round 2 from step 110, moved frontier
    }


def documented_commands() -> dict[str, str]:
    """`<!-- command: CELL -->` followed by an indented `coder-align ...` block in RESULTS.md."""
    lines = (REPO / "benchmarks" / "RESULTS.md").read_text().splitlines()
    found = {}
    for i, line in enumerate(lines):
        if line.strip().startswith("<!-- command:"):
            cell = line.strip().removeprefix("<!-- command:").removesuffix("-->").strip()
            block, j = [], i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            while j < len(lines) and lines[j].strip():
                block.append(lines[j].strip().removesuffix("\\").strip())
                j += 1
            found[cell] = " ".join(block)
    return found


@pytest.mark.parametrize("cell", list(_training_cells()))
def test_documented_training_commands_resolve_to_the_recorded_configs(cell):
    from coder_align.datagen.cli import DIFFICULTY_FLAGS

    cls, summary = _training_cells()[cell]
    command = documented_commands().get(cell)
    assert command, f"RESULTS.md documents no command for {cell} (<!-- command: {cell} -->)"
    stage, args = command_parts(command)
    config_file, overrides, flags, i = None, [], {}, 0
    while i < len(args):
        if args[i] == "--config":
            config_file, i = args[i + 1], i + 2
        elif args[i].startswith("--"):
            key = DIFFICULTY_FLAGS[args[i][2:].replace("-", "_")][0]
            flags[key], i = args[i + 1], i + 2
        else:
            overrides.append(args[i])
            i += 1
    overrides = [f"{k}={v}" for k, v in flags.items()] + overrides
    resolved = to_dict(load_config(cls, str(REPO / config_file) if config_file else None, overrides))
    recorded = json.loads((RESULTS / summary).read_text())["config"]
    # a LoRA starting point is merged once into <output_dir>/start_model, and the run records the
    # weights it loaded (grpo.resolved_config): the command's adapter directory resolved by the run
    merged = f"{(resolved.get('train') or {}).get('output_dir')}/{START_MODEL}"
    if str(recorded.get("model", {}).get("path", "")).endswith("/" + merged):
        recorded["model"]["path"] = resolved["model"]["path"]
    assert differences(resolved, recorded) == {}
