"""Typed configs: dataclasses are the schema, YAML files and `key=value` overrides fill them.

Every stage declares one dataclass with nested groups (model, data, peft, train...).
`parse_args(SFTConfig, argv)` reads `--config file.yaml` and dotted overrides such as
`data.path=my.jsonl train.learning_rate=2e-4`; an unknown key or a value of the wrong
type is a `ConfigError` that names the key and where it came from.

One name per idea across stages (`max_rows`, `max_length`, `fim_spm_rate`, ...). A group
that renamed a key lists `ALIASES = {"old": "new"}` (a ClassVar): the old key still works,
with a FutureWarning naming the new one.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import types
import typing
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, Union

import yaml

# in their own module so that the sandbox's settings can declare ranges without yaml
from coder_align.ranges import FRACTION, NON_NEGATIVE, ONE_OR_MORE, POSITIVE, Range  # noqa: F401

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override does not fit the schema."""




def check_ranges(config: Any, source: str = "config", prefix: str = "") -> None:
    """Every numeric field of `config` (not of its groups) against its class's RANGES."""
    for name, allowed in getattr(type(config), "RANGES", {}).items():
        value = getattr(config, name)
        if value is not None and not isinstance(value, bool) and value not in allowed:
            raise ConfigError(f"{source}: '{prefix}{name}' = {value!r} is out of range; allowed: {allowed}")


def from_dict(cls: type[T], data: dict | None, source: str = "config", prefix: str = "") -> T:
    """Build `cls` from a (nested) dict, rejecting unknown keys and wrong types."""
    data = _apply_aliases(cls, dict(data or {}), source, prefix)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(fields), n=1)
        hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; known keys: {', '.join(fields)}"
        raise ConfigError(f"{source}: unknown key '{prefix}{key}'{hint}")
    kwargs = {}
    for name, value in data.items():
        value = _over_stage_defaults(fields[name], hints[name], value, source, f"{prefix}{name}.")
        kwargs[name] = _coerce(value, hints[name], source, f"{prefix}{name}")
    config = cls(**kwargs)
    check_ranges(config, source, prefix)
    return config


def _over_stage_defaults(field: dataclasses.Field, tp: Any, value: Any, source: str, prefix: str) -> Any:
    """A group given as a dict fills in what it names over the field's own default instance: a stage's
    `train` defaults (GRPO's learning rate and batch, its output directory) hold when a YAML file or
    a `train.x=` override sets other train keys, instead of falling back to TrainConfig's."""
    if not (isinstance(value, dict) and dataclasses.is_dataclass(tp)
            and field.default_factory is not dataclasses.MISSING):
        return value
    base = field.default_factory()
    given = _apply_aliases(tp, dict(value), source, prefix)
    return {**{f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.init}, **given}


def _apply_aliases(cls: type, data: dict, source: str, prefix: str) -> dict:
    """Deprecated key names -> today's, with a warning; both at once is an error."""
    for old, new in getattr(cls, "ALIASES", {}).items():
        if old not in data:
            continue
        if new in data:
            raise ConfigError(f"{source}: '{prefix}{old}' is the old name of '{prefix}{new}'; give only '{prefix}{new}'")
        warnings.warn(f"{source}: '{prefix}{old}' is deprecated, use '{prefix}{new}'", FutureWarning, stacklevel=4)
        data[new] = data.pop(old)
    return data


def _coerce(value: Any, tp: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' is a group of settings, got {value!r}")
        return from_dict(tp, value, source, prefix=f"{key}.")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, source, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{source}: '{key}' got {value!r}, expected {tp}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: '{key}' must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str):  # `key=a,b` on the command line
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{key}' expects a list, got {value!r}")
        item = args[0] if args else Any
        return [_coerce(v, item, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' expects a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{source}: '{key}' expects true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{source}: '{key}' expects an integer, got {value!r}")
    if tp is float:
        # YAML 1.1 reads `1e-5` (no dot) as a string, so accept numeric strings.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{source}: '{key}' expects a number, got {value!r}")
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{source}: '{key}' expects a string, got {value!r}")
        return str(value)
    return value


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def settings_differences(saved: dict, current: dict, may_differ: Iterable[str] = (),
                         whole: Iterable[str] = ()) -> list[str]:
    """Dotted keys whose values differ between two resolved configs (`to_dict`), as
    `key: saved -> current`, sorted; keys in `may_differ` are left out, and groups named in
    `whole` (by their own name, at any depth) are compared as one value. What a resumed run
    checks against the run it continues."""
    a, b = _flatten(saved, whole), _flatten(current, whole)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k not in may_differ and a.get(k) != b.get(k)]


def _flatten(data: dict, whole: Iterable[str], prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict) and key not in whole:
            flat.update(_flatten(value, whole, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def set_dotted(data: dict, dotted_key: str, value: Any) -> None:
    *parents, leaf = dotted_key.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{dotted_key}': '{part}' is not a group")
        node = child
    node[leaf] = value


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value (e.g. data.path=my.jsonl)")
    key, raw = text.split("=", 1)
    # YAML parsing gives `true`, `3`, `[a, b]` and `null` their natural types.
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] = ()) -> T:
    """Config from defaults, then the YAML file, then `key=value` overrides."""
    data = load_yaml(path) if path else {}
    source = str(path) if path else "defaults"
    config = from_dict(cls, data, source)  # validate the file on its own first
    if overrides:
        for text in overrides:
            key, value = parse_override(text)
            set_dotted(data, key, value)
        config = from_dict(cls, data, f"{source} + command-line overrides")
    return config


def load_config_with_flags(cls: type[T], path: str | Path | None, overrides: list[str],
                           flags: dict[str, Any], flag_names: dict[str, str]) -> T:
    """`load_config` for a command that also keeps older `--flags` as aliases of keys:
    defaults <- YAML <- flags (`flags`: dotted key -> value) <- `key=value` overrides.
    A flag and the key it stands for given together is an error (`flag_names`: key -> flag)."""
    data = load_yaml(path) if path else {}
    parsed = [parse_override(text) for text in overrides]
    for key, value in flags.items():
        if any(k == key for k, _ in parsed):
            raise ConfigError(f"{flag_names.get(key, key)} and {key}= both given; use one")
        set_dotted(data, key, value)
    for key, value in parsed:
        set_dotted(data, key, value)
    source = (str(path) if path else "defaults") + (" + command line" if flags or overrides else "")
    return from_dict(cls, data, source)


# The `coder-align ...` command line of this process (set by cli.main; a child process it starts
# inherits it). save_config writes it beside the resolved config, so every output directory says
# which command made it, and a test can resolve that command again (issue 26: no hand-written
# command.txt).
COMMAND_ENV = "CODER_ALIGN_COMMAND"
COMMAND_FILE = "command.txt"


def save_config(config: Any, path: str | Path) -> None:
    """The resolved config as YAML at `path`, and, under `coder-align`, the command beside it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False), encoding="utf-8")
    command = os.environ.get(COMMAND_ENV)
    if command:
        (Path(path).parent / COMMAND_FILE).write_text(command + "\n", encoding="utf-8")


def settings_help(cls: type) -> str:
    """Every setting of a config class with its default and range, one per line, for --help."""
    lines = ["settings (key=default), set with key=value or in the --config YAML:"]

    def walk(tp, prefix):
        defaults = tp()
        for f in dataclasses.fields(tp):
            value = getattr(defaults, f.name)
            if dataclasses.is_dataclass(value):
                walk(type(value), f"{prefix}{f.name}.")
                continue
            allowed = getattr(tp, "RANGES", {}).get(f.name)
            shown = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
            lines.append(f"  {prefix}{f.name}={shown}" + (f"  ({allowed})" if allowed else ""))

    walk(cls, "")
    return "\n".join(lines)


def show_defaults(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Append `(default: X)` to every option of `parser` and its subcommands that has a default."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                show_defaults(sub)
        elif (action.default is not None and action.default is not False and action.default != argparse.SUPPRESS
              and action.option_strings):
            if "default:" not in (action.help or ""):
                action.help = f"{action.help or ''} (default: {action.default})".strip()
    return parser


def parse_args(cls: type[T], argv: list[str] | None = None, prog: str | None = None) -> T:
    """`--config FILE key=value ...`; tolerates the `--local_rank` that deepspeed passes."""
    parser = argparse.ArgumentParser(prog=prog, description=(cls.__doc__ or "").strip().splitlines()[0],
                                     epilog=settings_help(cls), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "-c", help="YAML file with settings")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. data.path=my.jsonl")
    args = parser.parse_args(argv)
    return load_config(cls, args.config, args.overrides)


# ---------------------------------------------------------------------------
# Setting groups shared by the training stages (sft, grpo, pretrain).
# ---------------------------------------------------------------------------

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class ModelConfig:
    path: str = "embedded"  # local dir, hub id, .gguf file, or the embedded SmolLM2-135M-Instruct
    dtype: str = "auto"  # auto: bf16 on GPUs that support it, else fp16 on GPU, fp32 on CPU
    attn_implementation: str | None = None  # e.g. sdpa, eager, flash_attention_2
    trust_remote_code: bool = False
    gradient_checkpointing: bool = True


@dataclass
class PeftConfig:
    method: Literal["none", "lora", "qlora"] = "none"  # none = full fine-tuning
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))  # or [all-linear]
    # LoRA only in these transformer blocks (negative: from the top, [-4,-3,-2,-1] = the last four);
    # None: all. The backward pass then stops at the lowest one, which on a CPU is most of a step's
    # cost; the input rows of added tokens (<|EOT|>) then stay frozen copies of EOS.
    layers_to_transform: list[int] | None = None

    RANGES: ClassVar[dict] = {"r": ONE_OR_MORE, "alpha": POSITIVE, "dropout": Range(0, 1, high_open=True)}


@dataclass
class TrainConfig:
    output_dir: str = "outputs/run"
    learning_rate: float = 1e-5  # DeepSeek-Coder-Instruct
    lr_scheduler_type: str = "cosine"
    warmup_steps: int = 100
    num_train_epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto: bf16 where supported
    logging_steps: int = 1
    save_steps: int = 100
    save_total_limit: int | None = 3
    seed: int = 42
    deepspeed: str | None = None  # path to a DeepSpeed JSON (configs/deepspeed/)
    # auto: the last checkpoint in output_dir, if the config saved there matches on everything
    # that shapes training; never (or none): start fresh; or a checkpoint path
    resume: str = "auto"
    overwrite: bool = False  # true: delete output_dir's checkpoints and earlier results, start fresh
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    disable_progress_bar: bool = False

    RANGES: ClassVar[dict] = {
        "learning_rate": POSITIVE, "warmup_steps": NON_NEGATIVE, "num_train_epochs": POSITIVE,
        "max_steps": Range(1, special=(-1,)), "per_device_train_batch_size": ONE_OR_MORE,
        "gradient_accumulation_steps": ONE_OR_MORE, "weight_decay": NON_NEGATIVE, "max_grad_norm": NON_NEGATIVE,
        "logging_steps": ONE_OR_MORE, "save_steps": ONE_OR_MORE, "save_total_limit": ONE_OR_MORE,
        "seed": NON_NEGATIVE,
    }
