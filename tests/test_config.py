import json
from pathlib import Path

import pytest
import yaml

from coder_align.config import ConfigError, load_config, parse_args, save_config
from coder_align.sft import SFTConfig

from conftest import REPO_ROOT

STAGE_SCHEMAS = {
    "sft": "coder_align.sft:SFTConfig",
    "grpo": "coder_align.grpo:GRPOConfig",
    "pretrain": "coder_align.pretrain:PretrainConfig",
    "eval": "coder_align.evaluation.config:EvalConfig",
    "corpus": "coder_align.corpus.cli:CorpusConfig",
    "rft": "coder_align.rft:RFTConfig",
    "rm": "coder_align.reward_model:RewardModelConfig",
}


def schema_for(path: Path):
    import importlib

    stage = path.relative_to(REPO_ROOT / "configs").parts[0]
    module, name = STAGE_SCHEMAS[stage].split(":")
    return getattr(importlib.import_module(module), name)


def test_defaults_follow_the_deepseek_recipe():
    config = SFTConfig()
    assert config.train.learning_rate == 1e-5
    assert config.train.lr_scheduler_type == "cosine"
    assert config.train.warmup_steps == 100
    assert config.train.precision == "auto"
    assert config.model.gradient_checkpointing is True
    assert config.data.max_length == 1024


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  path: a.jsonl\ntrain:\n  learning_rate: 2e-4\n  report_to: []\n")
    config = load_config(SFTConfig, path, ["data.path=b.jsonl", "train.max_steps=7", "peft.method=lora",
                                           "train.learning_rate=1e-5", "peft.target_modules=q_proj,v_proj"])
    assert config.data.path == "b.jsonl"
    assert config.train.max_steps == 7 and config.train.learning_rate == 1e-5
    assert config.peft.method == "lora" and config.peft.target_modules == ["q_proj", "v_proj"]
    assert config.train.report_to == []


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.learnig_rate=1"], "unknown key 'train.learnig_rate'; did you mean 'train.learning_rate'"),
        (["bogus=1"], "unknown key 'bogus'"),
        (["train.max_steps=many"], "'train.max_steps' expects an integer"),
        (["peft.method=prefix"], "'peft.method' must be one of"),
        (["data.packing=maybe"], "'data.packing' expects true/false"),
        (["data.path"], "must look like key=value"),
    ],
)
def test_bad_settings_are_errors(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_config(SFTConfig, None, overrides)


@pytest.mark.parametrize("schema, override, message", [
    ("sft", "train.learning_rate=-1", "'train.learning_rate' = -1.0 is out of range; allowed: > 0"),
    ("sft", "train.per_device_train_batch_size=0", "'train.per_device_train_batch_size' = 0 is out of range; "
                                                   "allowed: >= 1"),
    ("grpo", "grpo.num_generations=0", "'grpo.num_generations' = 0 is out of range; allowed: >= 2"),
    ("sft", "data.max_length=-5", "'data.max_length' = -5 is out of range; allowed: >= 2"),
    ("sft", "train.max_steps=0", "'train.max_steps' = 0 is out of range; allowed: >= 1 or -1"),
    ("sft", "peft.dropout=1", "'peft.dropout' = 1.0 is out of range; allowed: >= 0 and < 1"),
    ("grpo", "grpo.top_p=0", "'grpo.top_p' = 0.0 is out of range; allowed: > 0 and <= 1"),
    ("pretrain", "data.fim_rate=1.5", "'data.fim_rate' = 1.5 is out of range; allowed: >= 0 and <= 1"),
])
def test_numbers_out_of_range_are_one_line_errors_at_parse_time(schema, override, message):
    import importlib

    module, name = STAGE_SCHEMAS[schema].split(":")
    with pytest.raises(ConfigError) as error:
        load_config(getattr(importlib.import_module(module), name), None, [override])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_in_range_edges_are_accepted():
    config = load_config(SFTConfig, None, ["train.max_steps=-1", "train.warmup_steps=0", "peft.dropout=0",
                                           "data.fim_rate=1", "train.save_total_limit=null"])
    assert config.train.max_steps == -1 and config.train.save_total_limit is None


def _numeric_fields(cls, prefix=""):
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _numeric_fields(tp, f"{prefix}{f.name}.")
        elif typing.get_origin(tp) not in (dict, list) and {int, float} & set(typing.get_args(tp) or (tp,)):
            yield cls, f.name, f"{prefix}{f.name}"


@pytest.mark.parametrize("schema", [*STAGE_SCHEMAS.values(), "coder_align.evaluate:EvalConfig",
                                    "coder_align.datagen.difficulty:DifficultyConfig"])
def test_every_numeric_setting_has_a_range(schema):
    import importlib

    module, name = schema.split(":")
    missing = [key for cls, field_name, key in _numeric_fields(getattr(importlib.import_module(module), name))
               if field_name not in getattr(cls, "RANGES", {})]
    assert not missing, f"{schema}: no range for {missing}"


def test_eval_command_line_is_range_checked(capsys):
    from coder_align.evaluate import cli

    assert cli(["run", "--n", "0", "--model", "x"]) == 2
    assert "'generation.n' = 0 is out of range; allowed: >= 1" in capsys.readouterr().err


def test_unknown_key_in_yaml_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  pth: x\n")
    with pytest.raises(ConfigError, match=rf"{path}: unknown key 'model.pth'"):
        load_config(SFTConfig, path)


def test_parse_args_accepts_deepspeed_local_rank_and_round_trips(tmp_path):
    config = parse_args(SFTConfig, ["--local_rank=1", "data.path=x.jsonl"])
    assert config.data.path == "x.jsonl"
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(SFTConfig, tmp_path / "saved.yaml") == config


YAMLS = sorted((REPO_ROOT / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", YAMLS, ids=[str(p.relative_to(REPO_ROOT)) for p in YAMLS])
def test_every_config_file_loads(path):
    config = load_config(schema_for(path), path)
    header = path.read_text().splitlines()[0]
    assert header.startswith("#"), "each recipe starts with a comment showing how to run it"
    if getattr(config, "train", None) and config.train.deepspeed:
        assert (REPO_ROOT / config.train.deepspeed).is_file()


def test_deepspeed_configs_are_valid_and_gather_weights_under_zero3():
    files = sorted((REPO_ROOT / "configs" / "deepspeed").glob("*.json"))
    assert {f.name for f in files} >= {"zero2.json", "zero3.json", "zero3_offload.json"}
    for f in files:
        ds = json.loads(f.read_text())
        assert ds["train_micro_batch_size_per_gpu"] == "auto" and ds["gradient_accumulation_steps"] == "auto"
        zero = ds["zero_optimization"]
        if zero["stage"] == 3:
            assert zero["stage3_gather_16bit_weights_on_model_save"] is True


def test_cli_lists_commands():
    import subprocess

    from conftest import cli_command, cli_env

    out = subprocess.run(cli_command("--help"), capture_output=True, text=True, env=cli_env(), check=True).stdout
    for command in ("sft", "merge", "grpo", "eval", "sandbox", "corpus", "pretrain"):
        assert command in out


def test_one_name_per_idea_with_the_old_names_as_warned_aliases(tmp_path):
    from coder_align.grpo import GRPOConfig
    from coder_align.pretrain import PretrainConfig

    path = tmp_path / "old.yaml"
    path.write_text("data:\n  seq_length: 64\n  spm_rate: 0.25\n  max_documents: 3\n")
    with pytest.warns(FutureWarning, match="'data.seq_length' is deprecated, use 'data.max_length'"):
        config = load_config(PretrainConfig, path)
    assert (config.data.max_length, config.data.fim_spm_rate, config.data.max_rows) == (64, 0.25, 3)
    with pytest.raises(ConfigError, match="old name of 'data.max_length'"):
        load_config(PretrainConfig, None, ["data.seq_length=64", "data.max_length=64"])
    # the same idea has the same key in every stage
    for cls in (SFTConfig, GRPOConfig, PretrainConfig):
        assert "max_rows" in vars(cls().data), cls
    assert hasattr(SFTConfig().data, "fim_spm_rate") and hasattr(PretrainConfig().data, "fim_spm_rate")
    assert hasattr(SFTConfig().data, "max_length") and hasattr(PretrainConfig().data, "max_length")


def test_sft_max_rows_counts_rows_used_as_grpo_does(tmp_path):
    from coder_align.data.grpo_rows import read_tasks
    from coder_align.data.records import read_conversations

    rows = [{"instruction": "", "output": "x"}, {"instruction": "a", "output": "b"}, {"instruction": "c", "output": "d"}]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    conversations, stats = read_conversations(str(path), on_invalid="skip", max_rows=2)
    assert len(conversations) == 2 and stats.rows_read == 3
    grpo_rows = tmp_path / "grpo.jsonl"
    grpo_rows.write_text("".join(json.dumps(r) + "\n" for r in [
        {"prompt": "p"}, {"prompt": "p", "tests": ["assert 1"]}, {"prompt": "q", "tests": ["assert 1"]}]))
    tasks, grpo_stats = read_tasks(str(grpo_rows), on_invalid="skip", max_rows=2)
    assert len(tasks) == 2 and grpo_stats.rows_read == 3


def test_grpo_batch_must_hold_whole_groups():
    from coder_align.grpo import GRPOConfig, check_group_size

    check_group_size(load_config(GRPOConfig, None, ["train.per_device_train_batch_size=8", "grpo.num_generations=4"]))
    with pytest.raises(ConfigError, match=r"6 completions per generation batch, not a multiple of "
                                          r"grpo.num_generations=4"):
        check_group_size(load_config(GRPOConfig, None, ["train.per_device_train_batch_size=6",
                                                        "grpo.num_generations=4"]))


def test_the_embedded_code_recipe_trains_on_committed_decontaminated_files():
    """configs/sft/embedded-code.yaml: its files are in the repository, their summaries show the
    decontamination that was run, and no row is an MBPP test-split task."""
    config = load_config(SFTConfig, REPO_ROOT / "configs" / "sft" / "embedded-code.yaml")
    assert config.data.fim_rate == 0.5 and config.data.template == "deepseek" and config.data.max_length == 768
    for path in [config.data.path, *config.data.mix]:
        assert (REPO_ROOT / path).is_file(), path
    folder = REPO_ROOT / "benchmarks" / "data" / "sft_embedded"
    for name in ("instruct.summary.json", "mbpp_sft.summary.json"):  # code.jsonl's is instruct's
        checked = json.loads((folder / name).read_text())["decontamination"]["benchmarks"]
        assert checked["HumanEval"] == 328 and checked["MBPP test split"] > 0, name
    mbpp_ids = [int(json.loads(line)["task_id"].split("/")[1]) for line in (folder / "mbpp_sft.jsonl").open()]
    assert mbpp_ids and not [i for i in mbpp_ids if 11 <= i <= 510]


def test_a_train_key_keeps_the_stage_s_other_train_defaults(tmp_path):
    """Setting one train key (override or YAML) must not drop GRPO's own train defaults to
    TrainConfig's: `coder-align grpo data.path=... train.max_steps=2` once got a batch of 4
    (not a whole group of 8), SFT's learning rate and outputs/sft."""
    from coder_align.grpo import GRPOConfig

    stage = GRPOConfig().train
    by_override = load_config(GRPOConfig, None, ["train.max_steps=2"]).train
    yaml_file = tmp_path / "g.yaml"
    yaml_file.write_text("train:\n  max_steps: 2\n")
    by_yaml = load_config(GRPOConfig, yaml_file).train
    for train in (by_override, by_yaml):
        assert train.max_steps == 2
        assert (train.per_device_train_batch_size, train.learning_rate, train.output_dir) == \
            (stage.per_device_train_batch_size, stage.learning_rate, stage.output_dir) == (8, 1e-6, "outputs/grpo")
