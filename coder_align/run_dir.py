"""Reading a model path the way every stage needs it: `read_run(path) -> Run`.

A training stage writes an output directory (`training.train_and_save`): weights or a
LoRA adapter, the tokenizer with its chat template, `coder_align_config.yaml` (the resolved
config) and `summary.json`. A later stage -- GRPO, merge, eval -- must load the same base
weights and prompt the model with the same template and system prompt it was trained
with. This module is the one reader of those directories; it also accepts a plain model
(a hub id, a local directory, a `.gguf` file or `embedded`), which has no recorded template.

A stage reads its model path once (`read_run`) and hands the `Run` to every later step:
loading the tokenizer, merging an adapter, generating, saving the resolved config.
`as_run` lets the same functions take a path from a Python user instead.

What it does not do: load weights (`coder_align.models`).

    >>> run = read_run("embedded")
    >>> (run.weights, run.adapter, run.template, run.stage)
    ('embedded', None, 'deepseek', None)
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

CONFIG_FILE = "coder_align_config.yaml"
ADAPTER_CONFIG = "adapter_config.json"
START_MODEL = "start_model"  # where a stage merges an adapter starting point, inside its output directory
VALIDATION_RECORD = "validation.jsonl"  # GRPO: per validated step and task, completion and verdict

# The system prompt of a model nobody chose one for. DeepSeek's own ("...developed by DeepSeek
# Company...", None: `templates.DEEPSEEK_SYSTEM_PROMPT`) only for DeepSeek models: it is untrue of
# any other, and a model tuned with it repeats it.
NEUTRAL_SYSTEM_PROMPT = "You are an AI programming assistant."
# DeepSeek-Coder's BOS token: a DeepSeek tokenizer in a directory with any name
DEEPSEEK_BOS = "begin\u2581of\u2581sentence"


@dataclass
class Run:
    path: str  # what was asked for
    weights: str  # full weights to load: the run itself, or the base an adapter was trained on
    adapter: str | None  # a LoRA/QLoRA adapter directory to put on `weights`
    tokenizer: str  # where the tokenizer (with <|EOT|> and the chat template) is saved
    template: str  # "deepseek" or "model" (the tokenizer's own chat template)
    system_prompt: str | None  # None: DeepSeek's default prompt; "" for none
    stage: str | None  # sft, grpo, pretrain, reward_model; None for a model no stage of ours wrote
    config: dict = field(default_factory=dict)  # the saved resolved config ({} when none)
    adapter_trains_new_tokens: bool = False  # the adapter trains rows of added tokens (e.g. <|EOT|>)
    # why `system_prompt` is what it is: "data.system_prompt", "recorded by the run", or a default
    system_prompt_source: str = ""

    def describe(self) -> dict:
        return {"path": self.path, "weights": self.weights, "adapter": self.adapter, "tokenizer": self.tokenizer,
                "template": self.template, "system_prompt": self.system_prompt,
                "system_prompt_source": self.system_prompt_source, "stage": self.stage}


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def read_run(path: str | Path, template: str | None = None, system_prompt: str | None = None) -> Run:
    """What to load for `path`, and how the model there was prompted in training.

    `template` / `system_prompt` override the recorded ones (None: keep them); a run that
    recorded none gets DeepSeek's template and default system prompt.
    """
    path = str(path)
    folder = Path(path)
    saved = _yaml(folder / CONFIG_FILE)
    data = saved.get("data") or {}
    run = Run(
        path=path, weights=path, adapter=None, tokenizer=path,
        template=template or data.get("template") or "deepseek",
        system_prompt=data.get("system_prompt") if system_prompt is None else system_prompt,
        stage=_stage(folder, saved), config=saved,
        system_prompt_source="data.system_prompt" if system_prompt is not None else "recorded by the run")
    if is_adapter_dir(folder):
        adapter = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        # Our record of the base comes first: peft records the resolved cache directory of
        # `embedded` or a GGUF file, which is machine-specific.
        base = (saved.get("model") or {}).get("path") or adapter.get("base_model_name_or_path")
        if not base:
            raise FileNotFoundError(f"{folder}: {ADAPTER_CONFIG} names no base model and there is no {CONFIG_FILE}")
        if Path(base).resolve() == folder.resolve() or is_adapter_dir(base):
            # Runs written before the saved config recorded the resolved base: GRPO started
            # from an adapter saved that adapter directory as its model.path.
            inner = read_run(base) if Path(base).resolve() != folder.resolve() else None
            base = inner.weights if inner else adapter.get("base_model_name_or_path")
            log.warning("%s: the recorded model.path is an adapter; using its base %s", folder, base)
        run.weights, run.adapter = _findable_base(folder, base), path
        run.adapter_trains_new_tokens = bool(adapter.get("trainable_token_indices"))
        if not (folder / "tokenizer_config.json").is_file():
            run.tokenizer = base
    if system_prompt is None and "system_prompt" not in data:  # neither chosen nor recorded
        run.system_prompt, run.system_prompt_source = default_system_prompt(
            path, run.weights, run.tokenizer, (saved.get("model") or {}).get("path"))
    return run


def _findable_base(folder: Path, base: str) -> str:
    """`base`, or where it is now: a GRPO adapter's base is the `start_model/` merged inside its
    own directory, recorded as an absolute path that breaks when the directory is moved or copied
    to another machine. A base missing here is named in a warning saying what to do."""
    if Path(base).is_absolute() and not Path(base).exists():
        moved = folder / Path(base).name
        if Path(base).name == START_MODEL and (moved / "config.json").is_file():
            return str(moved.resolve())
        log.warning("%s: its base model %s is not on this machine; give the base it was trained on (model.path= "
                    "of the next stage, `coder-align merge %s --base MODEL`, or edit base_model_name_or_path in %s "
                    "for peft)", folder, base, folder, ADAPTER_CONFIG)
    return base


def default_system_prompt(*models) -> tuple[str | None, str]:
    """(prompt, why) for a model nobody chose a prompt for: DeepSeek's (None) when any of `models`
    (paths or hub ids) names DeepSeek or holds a DeepSeek tokenizer, else NEUTRAL_SYSTEM_PROMPT."""
    for model in filter(None, models):
        tokenizer_config = Path(model) / "tokenizer_config.json"
        if "deepseek" in str(model).lower() or (
                tokenizer_config.is_file() and _names_deepseek_bos(tokenizer_config)):
            return None, "default for a DeepSeek model: DeepSeek's"
    return NEUTRAL_SYSTEM_PROMPT, "default for a non-DeepSeek model: a neutral one"


def as_run(run_or_path: Run | str | Path) -> Run:
    """A `Run` as it is, or the run at a path, read once."""
    return run_or_path if isinstance(run_or_path, Run) else read_run(run_or_path)


def _names_deepseek_bos(tokenizer_config: Path) -> bool:
    text = tokenizer_config.read_text(encoding="utf-8", errors="replace")
    return DEEPSEEK_BOS in text or DEEPSEEK_BOS.encode("ascii", "backslashreplace").decode() in text


def _yaml(path: Path) -> dict:
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _stage(folder: Path, saved: dict) -> str | None:
    summary = folder / "summary.json"
    if summary.is_file():
        try:
            stage = json.loads(summary.read_text(encoding="utf-8")).get("stage")
        except (json.JSONDecodeError, AttributeError):
            stage = None
        if stage:
            return stage
    if not saved:
        return None
    # a saved config without a summary (a run stopped before its end): its groups say which stage
    return ("grpo" if "grpo" in saved else "reward_model" if "rm" in saved else "pretrain" if "rope" in saved
            else "sft")
