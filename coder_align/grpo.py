"""GRPO with compiler and unit-test rewards, the DeepSeek-Coder-V2 alignment step.

    deepspeed coder_align/grpo.py --config configs/grpo/deepseek-coder-6.7b-lora.yaml
    coder-align grpo --config configs/grpo/quickstart-cpu.yaml
    python -c "from coder_align.grpo import main, GRPOConfig; main(GRPOConfig(...))"

Steps: starting point (an SFT output directory with its template and tokenizer, a LoRA
adapter, or any model) -> tasks (prompt + tests, validated) -> rewards by name and weight
(sandboxed tests, compile, format) -> TRL's GRPOTrainer (no critic; with beta=0 no reference
model either) -> output directory with weights or adapter, tokenizer, resolved config,
summary.json, completions.jsonl, TensorBoard logs and rewards.png.

Where this departs from the V2 paper: the paper trains a reward model on compiler/test
feedback because few tests make 0/1 rewards noisy; here the 0/1 feedback is the reward.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run as `deepspeed coder_align/grpo.py`: import the package, not sibling files.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import json
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Literal

from coder_align.config import ConfigError, ModelConfig, PeftConfig, TrainConfig, parse_args, to_dict
from coder_align.sandbox import remote as sandbox_remote
from coder_align.sandbox.remote import SandboxConfig

log = logging.getLogger("coder_align.grpo")


@dataclass
class GRPODataConfig:
    path: str = ""  # .jsonl / .json / .parquet file, or a hub dataset name
    split: str = "train"
    format: Literal["auto", "rows", "mbpp", "humaneval"] = "auto"  # auto: from the row's fields
    task_ids: str | None = None  # e.g. "511-974": MBPP's validation + training ids, never its test split
    shown_tests: int = 1  # MBPP: asserts shown in the prompt (the paper shows them; 1 names the function)
    language: str = "python"  # for rows without a `language` field
    template: Literal["deepseek", "model"] | None = None  # None: the starting point's, else deepseek
    system_prompt: str | None = None  # None: the starting point's, else DeepSeek's default
    on_invalid: Literal["error", "skip"] = "error"
    max_rows: int | None = None


@dataclass
class GRPOSettings:
    num_generations: int = 8  # completions per prompt: the group the advantage is relative to
    max_completion_length: int = 1024  # generous: truncated code fails its tests
    clipped_ratio_warning: float = 0.2  # warn when more completions than this hit the limit
    temperature: float = 1.0
    top_p: float = 1.0
    beta: float = 0.0  # KL weight; 0 needs no reference model (DAPO, Dr. GRPO)
    epsilon: float = 0.2  # ratio clipping
    num_iterations: int = 1  # updates per generated batch; 1 = on-policy
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo"] = "dapo"
    scale_rewards: Literal["group", "batch", "none"] = "group"
    mask_truncated_completions: bool = False  # true: clipped completions carry no loss (DAPO)
    steps_per_generation: int | None = None  # None: gradient_accumulation_steps
    rewards: dict[str, float] = field(default_factory=lambda: {"unit_test": 1.0})  # name -> weight
    reward_kwargs: dict[str, dict] = field(default_factory=dict)  # e.g. {unit_test: {compile_error_penalty: -0.5}}
    on_reward_error: Literal["error", "skip"] = "error"
    use_vllm: bool = False  # GPU only, needs vllm installed
    vllm_mode: Literal["colocate", "server"] = "colocate"
    vllm_gpu_memory_utilization: float = 0.3
    vllm_server_base_url: str | None = None


@dataclass
class GRPOConfig:
    """GRPO with unit-test and compiler rewards (DeepSeek-Coder-V2 RL recipe)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: GRPODataConfig = field(default_factory=GRPODataConfig)
    peft: PeftConfig = field(default_factory=PeftConfig)
    # per_device_train_batch_size counts completions (prompts x num_generations), as in TRL.
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        output_dir="outputs/grpo", learning_rate=1e-6, lr_scheduler_type="constant", warmup_steps=0,
        num_train_epochs=1.0, per_device_train_batch_size=8, save_steps=50))
    grpo: GRPOSettings = field(default_factory=GRPOSettings)
    # sandbox.endpoints=[http://sb1:8080,...]: rewards judged on sandbox servers (sandbox/remote.py)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)


def main(config: GRPOConfig) -> dict:
    """Train, save, and return the run summary (also written to summary.json)."""
    from transformers import set_seed
    from trl import GRPOConfig as TRLGRPOConfig

    from coder_align.data.grpo_rows import read_tasks, to_dataset
    from coder_align.grpo_rewards import RewardSet
    from coder_align.models import load_model, load_tokenizer
    from coder_align.training import is_main_process, plot_metric, train_and_save, training_arguments, write_summary

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    sandbox_remote.configure(config.sandbox)
    if not config.data.path:
        raise ConfigError("data.path is required (a .jsonl/.json/.parquet file, or a hub dataset name)")
    set_seed(config.train.seed)
    out = Path(config.train.output_dir)

    # --- starting point and tokenizer: the template the model was tuned with -------------
    start = starting_point(config)
    tokenizer = load_tokenizer(start["tokenizer"], start["template"], start["system_prompt"])

    # --- tasks ------------------------------------------------------------------------------
    d = config.data
    tasks, data_stats = read_tasks(d.path, d.split, d.format, d.task_ids, d.shown_tests, d.language,
                                   d.on_invalid, d.max_rows)
    log.info("data: %s", data_stats.as_dict())
    if not tasks:
        raise ValueError(f"{d.path}: no usable rows ({data_stats.as_dict()})")

    # --- rewards ----------------------------------------------------------------------------
    g = config.grpo
    rewards = RewardSet(g.rewards, g.reward_kwargs, g.on_reward_error,
                        record_to=out / "completions.jsonl" if is_main_process() else None)

    # --- training arguments before the model: ZeRO-3 must partition it while loading ------
    args = training_arguments(config.train, config.model.gradient_checkpointing, args_class=TRLGRPOConfig,
                              **trl_arguments(g, rewards.weights))

    # --- model ------------------------------------------------------------------------------
    model_config = replace(config.model, path=start["weights"])
    # Added-token rows stay frozen under LoRA: TRL computes log-probs from lm_head.weight.
    model = load_model(model_config, tokenizer, config.peft, training=True, template=start["template"],
                       train_new_tokens=False)
    if start["adapter"]:
        model = load_adapter(model, start["adapter"])
    if hasattr(model, "print_trainable_parameters") and is_main_process():
        model.print_trainable_parameters()

    trainer = _trainer_class()(model=model, reward_funcs=rewards.functions(), args=args, train_dataset=to_dataset(tasks),
                                 processing_class=tokenizer)
    trainer.clipped_ratio_warning = g.clipped_ratio_warning

    # --- train and save ----------------------------------------------------------------------
    run = train_and_save(trainer, config, tokenizer, out)
    if not run.is_main:
        return {}
    history = [h for h in trainer.state.log_history if "reward" in h]
    component_keys = [f"rewards/{name}/mean" for name in rewards.names]
    plot_metric(trainer.state.log_history, ["reward", *component_keys, "code/pass_rate"], out / "rewards.png",
                "GRPO rewards per step")
    summary = {
        "stage": "grpo",
        "model": config.model.path,
        "start": start,
        "peft": config.peft.method,
        "data": data_stats.as_dict(),
        "rewards": rewards.summary(),
        "steps": run.steps,
        "train_seconds": round(run.seconds, 2),
        "first": first_last(history, 0),
        "last": first_last(history, -1),
        "mean_over_run": {k: mean(h.get(k) for h in history) for k in SUMMARY_KEYS},
        "warnings": trainer.warnings,
        "resumed_from": run.resumed_from,
        "config": to_dict(config),
    }
    write_summary(out, summary)
    return summary


SUMMARY_KEYS = ("reward", "code/pass_rate", "code/compile_rate", "code/unjudged", "frac_reward_zero_std",
                "completions/clipped_ratio", "completions/mean_length", "timing/generation_s", "timing/reward_s",
                "timing/step_s")


def mean(values):
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def first_last(history: list[dict], index: int) -> dict:
    if not history:
        return {}
    return {k: v for k, v in history[index].items() if k in SUMMARY_KEYS or k.startswith("rewards/") or k == "step"}


def starting_point(config: GRPOConfig) -> dict:
    """Where weights, tokenizer and template come from.

    An SFT output directory holds `coder_align_config.yaml`: its template and system prompt
    are reused so that GRPO prompts the model exactly as it was tuned. A LoRA adapter
    directory is loaded on its base model and trained further.
    """
    path = Path(config.model.path)
    start = {"weights": config.model.path, "tokenizer": config.model.path, "adapter": None,
             "template": config.data.template, "system_prompt": config.data.system_prompt}
    if (path / "coder_align_config.yaml").is_file():
        import yaml

        saved = yaml.safe_load((path / "coder_align_config.yaml").read_text(encoding="utf-8")) or {}
        saved_data = saved.get("data") or {}
        if start["template"] is None:
            start["template"] = saved_data.get("template")
        if start["system_prompt"] is None:
            start["system_prompt"] = saved_data.get("system_prompt")
    if (path / "adapter_config.json").is_file():
        adapter = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
        if config.peft.method != "none":
            raise ConfigError(f"model.path {path} is a LoRA adapter, which GRPO trains further; "
                              f"set peft.method=none (got {config.peft.method})")
        if adapter.get("trainable_token_indices"):
            raise ConfigError(
                f"{path}: this adapter trains rows of added tokens (e.g. <|EOT|>), which GRPO cannot (TRL reads "
                f"log-probs from lm_head.weight directly). Merge it first: coder-align merge {path} --out MERGED, "
                "then model.path=MERGED")
        start.update(weights=adapter["base_model_name_or_path"], adapter=str(path))
    start["template"] = start["template"] or "deepseek"
    return start


def load_adapter(model, adapter_dir: str):
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter_dir, is_trainable=True)


def trl_arguments(g: GRPOSettings, reward_weights: list[float]) -> dict:
    """GRPOSettings -> keyword arguments of TRL's GRPOConfig (names checked against TRL 1.16)."""
    extra = {}
    if g.use_vllm:
        import importlib.util

        import torch

        if not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None:
            raise ConfigError("grpo.use_vllm=true needs a GPU and the vllm package (pip install vllm)")
        extra = {"use_vllm": True, "vllm_mode": g.vllm_mode,
                 "vllm_gpu_memory_utilization": g.vllm_gpu_memory_utilization}
        if g.vllm_server_base_url:
            extra["vllm_server_base_url"] = g.vllm_server_base_url
    return dict(
        num_generations=g.num_generations,
        max_completion_length=g.max_completion_length,
        temperature=g.temperature,
        top_p=g.top_p,
        beta=g.beta,
        epsilon=g.epsilon,
        num_iterations=g.num_iterations,
        loss_type=g.loss_type,
        scale_rewards=g.scale_rewards,
        mask_truncated_completions=g.mask_truncated_completions,
        steps_per_generation=g.steps_per_generation,
        reward_weights=reward_weights,
        log_completions=False,  # completions.jsonl (written by RewardSet) holds them with their rewards
        **extra,
    )


def _trainer_class():
    from trl import GRPOTrainer

    class CodeGRPOTrainer(GRPOTrainer):
        """GRPOTrainer plus generation/step timing and a warning when completions get clipped."""

        clipped_ratio_warning = 0.2

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.warnings: list[str] = []

        def _metric(self, name: str, value: float) -> None:
            self._metrics["train" if self.model.training else "eval"][name].append(value)

        def _generate(self, prompts):  # TRL's private hook around transformers/vLLM generation
            started = time.perf_counter()
            result = super()._generate(prompts)
            self._metric("timing/generation_s", time.perf_counter() - started)
            return result

        def training_step(self, *args, **kwargs):
            # Includes generation and rewards when this step starts a new generation batch.
            started = time.perf_counter()
            loss = super().training_step(*args, **kwargs)
            self._metric("timing/step_s", time.perf_counter() - started)
            return loss

        def log(self, logs, start_time=None):
            super().log(logs, start_time)
            clipped = logs.get("completions/clipped_ratio")
            if clipped is not None and clipped > self.clipped_ratio_warning and not self.warnings:
                message = (f"step {self.state.global_step}: {clipped:.0%} of completions hit "
                           f"max_completion_length={self.args.max_completion_length}; truncated code fails its "
                           "tests, so raise grpo.max_completion_length or set grpo.mask_truncated_completions=true")
                self.warnings.append(message)
                log.warning(message)

    return CodeGRPOTrainer


def __getattr__(name):
    # CodeGRPOTrainer is built on first use, so importing this module does not import TRL.
    if name == "CodeGRPOTrainer":
        return _trainer_class()
    raise AttributeError(name)


def cli(argv: list[str]) -> int:
    config = parse_args(GRPOConfig, argv, prog="coder-align grpo")
    summary = main(config)
    if summary:
        out = Path(config.train.output_dir)
        first, last = summary["first"], summary["last"]
        print(f"\nreward {first.get('reward')} -> {last.get('reward')}, pass rate {first.get('code/pass_rate')} -> "
              f"{last.get('code/pass_rate')} over {summary['steps']} steps; output in {out}:")
        for p in sorted(out.iterdir()):
            print(f"  {p.name}{'/' if p.is_dir() else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
