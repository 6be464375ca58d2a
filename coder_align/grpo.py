"""GRPO with compiler and unit-test rewards, the DeepSeek-Coder-V2 alignment step.

    deepspeed coder_align/grpo.py --config configs/grpo/deepseek-coder-6.7b-lora.yaml
    coder-align grpo --config configs/grpo/quickstart-cpu.yaml
    python -c "from coder_align.grpo import main, GRPOConfig; main(GRPOConfig(...))"

Steps: starting point (an SFT output directory with its template and tokenizer, a LoRA
adapter, or any model) -> tasks (prompt + tests, validated) -> rewards by name and weight
(sandboxed tests, compile, format) -> TRL's GRPOTrainer (no critic; with beta=0 no reference
model either) -> output directory with weights or adapter, tokenizer, resolved config,
summary.json, completions.jsonl, validation.jsonl, TensorBoard logs and rewards.png.

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
from dataclasses import dataclass, field, replace
from typing import ClassVar, Literal

from coder_align import sandbox
from coder_align.config import (
    FRACTION, NON_NEGATIVE, ONE_OR_MORE, POSITIVE, ConfigError, ModelConfig, PeftConfig, Range, TrainConfig,
    parse_args, to_dict,
)
from coder_align.data import DataError
from coder_align.data.grpo_rows import read_tasks, refuse_test_ids, to_dataset
from coder_align.evaluation.policy_generation import PolicyRollouts
from coder_align.models.loading import load_model, load_tokenizer
from coder_align.rewards import JUDGING, RewardSet
from coder_align.rewards.early import EarlyJudge
from coder_align.rewards.execution import unit_test_reward
from coder_align.rewards.signals import shown_tests
from coder_align.run_dir import VALIDATION_RECORD, Run, read_run
from coder_align.sandbox.preflight import require_sandbox
from coder_align.sandbox.remote import SandboxConfig
from coder_align.templates import system_prompt_note
from coder_align.training import (
    START_MODEL, checkpoint_step, is_main_process, merged_start, prepare_output_dir, train_and_save,
    training_arguments, write_summary,
)
from coder_align.training.curriculum import TaskPool
from coder_align.training.plots import plot_rewards
from coder_align.training.rollout import Rollout, TRLGeneration
from coder_align.training.validation import (
    check_held_out, greedy_generation, read_validation_tasks, validation_callback, validation_summary,
)

log = logging.getLogger("coder_align.grpo")


@dataclass
class GRPODataConfig:
    path: str = ""  # .jsonl / .json / .parquet file, or a hub dataset name
    split: str = "train"
    format: Literal["auto", "rows", "mbpp", "humaneval"] = "auto"  # auto: from the row's fields
    task_ids: str | None = None  # e.g. "601-974": MBPP's training ids (never its test split; 511-600 is validation)
    shown_tests: int = 1  # MBPP: asserts shown in the prompt (the paper shows them; 1 names the function)
    language: str = "python"  # for rows without a `language` field
    template: Literal["deepseek", "model"] | None = None  # None: the starting point's, else deepseek
    system_prompt: str | None = None  # None: the starting point's, else DeepSeek's for DeepSeek models, else neutral
    on_invalid: Literal["error", "skip"] = "error"
    max_rows: int | None = None  # use at most this many valid rows (reading stops there)

    RANGES: ClassVar[dict] = {"shown_tests": NON_NEGATIVE, "max_rows": ONE_OR_MORE}


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
    # who generates: eval_generator (the evaluation's continuous batching, bf16 where native, a
    # process per core, on the policy's current weights), trl (TRL's transformers generate),
    # vllm (TRL's vLLM, colocate or server); auto: vllm with use_vllm, trl on a GPU, else eval_generator
    rollout_backend: Literal["auto", "trl", "eval_generator", "vllm"] = "auto"
    rollout_batch_size: int = 16  # eval_generator: rows decoded together per process
    rollout_processes: int | None = None  # eval_generator: None = one per core (small models)
    dynamic_sampling: bool = True  # DAPO: drop groups whose unit-test rewards are all equal, generate fresh tasks
    sampling_rounds: int = 3  # generation rounds a step may take to fill its groups
    retry_after_steps: int = 20  # a task failed by its whole group waits this many steps
    curriculum_from: str | None = None  # judged samples (`data difficulty`'s <out>.judged.jsonl) to start from
    use_vllm: bool = False  # GPU only, needs vllm installed
    vllm_mode: Literal["colocate", "server"] = "colocate"
    vllm_gpu_memory_utilization: float = 0.3
    vllm_server_base_url: str | None = None
    # validation pass@1 during training (training/validation.py): greedy, on tasks no stage trains on
    validation_every: int = 0  # steps between validations (and the last step); 0 = off
    validation_tasks: str = "mbpp-validation"  # MBPP ids 511-600 from the local MBPP file, or a rows file
    validation_limit: int | None = None  # use at most this many validation tasks (e.g. on CPU)

    RANGES: ClassVar[dict] = {
        "num_generations": Range(2),  # the advantage is relative to the group: one sample has no baseline
        "max_completion_length": ONE_OR_MORE, "clipped_ratio_warning": FRACTION,
        "temperature": POSITIVE,  # TRL divides logits by it
        "top_p": Range(0, 1, low_open=True), "beta": NON_NEGATIVE, "epsilon": POSITIVE, "num_iterations": ONE_OR_MORE,
        "steps_per_generation": ONE_OR_MORE, "vllm_gpu_memory_utilization": Range(0, 1, low_open=True),
        "rollout_batch_size": ONE_OR_MORE, "rollout_processes": ONE_OR_MORE, "sampling_rounds": ONE_OR_MORE,
        "retry_after_steps": NON_NEGATIVE, "validation_every": NON_NEGATIVE, "validation_limit": ONE_OR_MORE,
    }


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


def forget_steps_after(path: Path, step: int) -> int:
    """A resumed run redoes the steps after its checkpoint: drop their rows from a per-step
    record (`completions.jsonl`, `validation.jsonl`; a killed run wrote them), so each step
    appears once."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            row_step = json.loads(line).get("step")
        except ValueError:  # a line cut by the kill
            dropped += 1
            continue
        if isinstance(row_step, int) and row_step > step:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        path.write_text("".join(kept), encoding="utf-8")
        log.info("resuming at step %d: dropped %d rows of later steps from %s", step, dropped, path)
    return dropped


def main(config: GRPOConfig) -> dict:
    """Train, save, and return the run summary (also written to summary.json)."""
    from transformers import set_seed
    from trl import GRPOConfig as TRLGRPOConfig

    # the trainer subclasses TRL's: imported when training starts, so importing this module stays light
    from coder_align.training.trainers import CodeGRPOTrainer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    sandbox.remote.configure(config.sandbox)
    if not config.data.path:
        raise ConfigError("data.path is required (a .jsonl/.json/.parquet file, or a hub dataset name)")
    check_group_size(config)
    refuse_test_ids(config.data.task_ids)  # never the MBPP test split; before any model loads
    set_seed(config.train.seed)
    out = Path(config.train.output_dir)

    # --- tasks, rewards and sandbox before the tokenizer: a GGUF model converts there ---------
    d = config.data
    # training=True: MBPP test-split and HumanEval rows are refused, never trained on
    tasks, data_stats = read_tasks(d.path, d.split, d.format, d.task_ids, d.shown_tests, d.language,
                                   d.on_invalid, d.max_rows, training=True)
    log.info("data: %s", data_stats.as_dict())
    if not tasks:
        raise DataError(d.path, f"no usable rows ({data_stats.as_dict()})", "no_rows")
    g = config.grpo
    rewards = RewardSet(g.rewards, g.reward_kwargs, g.on_reward_error,
                        record_to=out / "completions.jsonl" if is_main_process() else None)
    check_sandbox(rewards.names, tasks)
    validation = read_validation_tasks(g.validation_tasks, d.shown_tests, g.validation_limit) \
        if g.validation_every else []
    if validation:
        check_held_out(g.validation_tasks, validation, tasks, data_stats.validation_trained_on)

    # --- starting point and tokenizer: the run read once, prompted as it was tuned -----------
    start = read_run(config.model.path, config.data.template, config.data.system_prompt)
    merge_adapter = adapter_to_merge(start, config.peft.method)
    weights = str((out / START_MODEL).resolve()) if merge_adapter else start.weights
    tokenizer = load_tokenizer(start.tokenizer, start.template, start.system_prompt)
    # saved and compared on resume as resolved: the weights and prompt actually used
    resolved = resolved_config(config, start, weights)
    resume = prepare_output_dir(resolved, out)  # before the model: a wrong resume or directory fails fast
    resumed_at = checkpoint_step(resume)
    if resumed_at is not None and is_main_process():
        for record in ("completions.jsonl", VALIDATION_RECORD):
            forget_steps_after(out / record, resumed_at)
    if merge_adapter:
        merged_start(start, out / START_MODEL)

    # --- training arguments before the model: ZeRO-3 must partition it while loading ------
    args = training_arguments(config.train, config.model.gradient_checkpointing, args_class=TRLGRPOConfig,
                              **trl_arguments(g, rewards.weights))
    model = load_policy(config, start, weights, tokenizer, continue_adapter=bool(start.adapter) and not merge_adapter)
    dataset = to_dataset(with_shown_tests(tasks))
    rollout = make_rollout(g, dataset.to_list(), tokenizer, rewards, config.train.seed)
    trainer = CodeGRPOTrainer(model=model, reward_funcs=rewards.functions(), args=args, train_dataset=dataset,
                              processing_class=tokenizer, rollout_func=rollout)
    trainer.clipped_ratio_warning = g.clipped_ratio_warning
    if validation:
        greedy = greedy_generation(rollout, g.max_completion_length)
        trainer.add_callback(validation_callback(trainer, validation, greedy, judge_validation, g.validation_every,
                                                 out / VALIDATION_RECORD if is_main_process() else None))

    # --- train and save ----------------------------------------------------------------------
    try:
        trained = train_and_save(trainer, resolved, tokenizer, out, resume)
    finally:
        rollout.close()
    if not trained.is_main:
        return {}
    plot_rewards(trainer.state.log_history, out / "rewards.png", dict(zip(rewards.names, rewards.weights)),
                 trained.resumed_from_step)
    summary = run_summary(config, resolved, {**start.describe(), "weights": weights}, data_stats.as_dict(), rewards,
                          trainer, trained)
    if validation:
        summary["validation"] = validation_summary(trainer.state.log_history, out, g.validation_every, len(validation))
    write_summary(out, summary)
    return summary


def adapter_to_merge(start: Run, peft_method: str) -> bool:
    """Whether an adapter starting point is merged into its base first (`merged_start`) and
    trained as `peft.method` says. It is trained further as it is when it can be: with
    `peft.method=none`, unless it trains the rows of added tokens (<|EOT|>): TRL reads
    log-probs from `lm_head.weight` and refuses a wrapped head."""
    return bool(start.adapter) and (peft_method != "none" or start.adapter_trains_new_tokens)


def load_policy(config: GRPOConfig, start: Run, weights: str, tokenizer, continue_adapter: bool):
    """The model GRPO trains: `weights` as `peft.method` says, or the starting adapter trained further."""
    # Added-token rows stay frozen under LoRA: TRL computes log-probs from lm_head.weight.
    model = load_model(replace(config.model, path=weights), tokenizer, config.peft, training=True,
                       template=start.template, train_new_tokens=False)
    if continue_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, start.adapter, is_trainable=True)
    if hasattr(model, "print_trainable_parameters") and is_main_process():
        model.print_trainable_parameters()
    return model


def run_summary(config: GRPOConfig, resolved: GRPOConfig, start: dict, data: dict, rewards: RewardSet, trainer,
                trained) -> dict:
    history = [h for h in trainer.state.log_history if "reward" in h]
    return {
        "stage": "grpo",
        "model": config.model.path,
        "start": start,
        "system_prompt": system_prompt_note(start["system_prompt"], start["system_prompt_source"])
        if start["template"] == "deepseek" else None,
        "peft": config.peft.method,
        "data": data,
        "rewards": rewards.summary(),
        "rollout": trainer.rollout_func.summary(),
        "steps": trained.steps,
        "train_seconds": round(trained.seconds, 2),
        "first": first_last(history, 0),
        "last": first_last(history, -1),
        "mean_over_run": {k: mean(h.get(k) for h in history) for k in SUMMARY_KEYS},
        "warnings": trainer.warnings,
        **trained.provenance(),
        "config": to_dict(resolved),
    }


SUMMARY_KEYS = ("reward", "code/pass_rate", "code/compile_rate", "code/unjudged", "frac_reward_zero_std",
                "completions/clipped_ratio", "completions/mean_length", "timing/generation_s", "timing/reward_s",
                "timing/step_s", "code/unavailable_share", "code/shown_pass_hidden_fail", "groups/dropped_all_passed",
                "groups/dropped_all_failed", "groups/filled_without_spread", "timing/rollout_generation_s",
                "timing/rollout_judge_wait_s", "timing/judge_overlap")


def mean(values):
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def first_last(history: list[dict], index: int) -> dict:
    if not history:
        return {}
    return {k: v for k, v in history[index].items() if k in SUMMARY_KEYS or k.startswith("rewards/") or k == "step"}


def resolved_config(config: GRPOConfig, start: Run, weights: str) -> GRPOConfig:
    """The config saved with the run: the base weights actually loaded (not an adapter
    directory, which `merge` would take for the base) and the template and system prompt
    actually used, so a later stage's `read_run` prompts the model as GRPO did."""
    return replace(config, model=replace(config.model, path=weights),
                   data=replace(config.data, template=start.template, system_prompt=start.system_prompt))


def check_group_size(config: GRPOConfig) -> None:
    """Each generation batch must hold whole groups; TRL checks this only once the model is loaded."""
    import os

    t, g = config.train, config.grpo
    completions = (t.per_device_train_batch_size * (g.steps_per_generation or t.gradient_accumulation_steps)
                   * int(os.environ.get("WORLD_SIZE", "1")))
    if completions % g.num_generations:
        raise ConfigError(
            f"train.per_device_train_batch_size={t.per_device_train_batch_size} x steps per generation x GPUs = "
            f"{completions} completions per generation batch, not a multiple of grpo.num_generations="
            f"{g.num_generations} (each prompt needs a whole group)")


def rollout_backend(g: GRPOSettings) -> str:
    """`grpo.rollout_backend` resolved: auto is vLLM when `use_vllm`, TRL's generate on a GPU,
    else the evaluation generator (measured faster on CPU: benchmarks/grpo_rollout_speed.py)."""
    if g.rollout_backend != "auto":
        return g.rollout_backend
    if g.use_vllm:
        return "vllm"
    import torch

    return "trl" if torch.cuda.is_available() else "eval_generator"


def with_shown_tests(tasks: list[dict]) -> list[dict]:
    """Each task with `shown_tests`, the asserts its prompt shows (MBPP's first): the reward
    logs how often a completion passes those but fails the hidden ones."""
    for task in tasks:
        prompt = task["prompt"]
        text = prompt if isinstance(prompt, str) else "\n".join(str(m.get("content", "")) for m in prompt)
        task["shown_tests"] = shown_tests(text, task["tests"])
    return tasks


def make_rollout(g: GRPOSettings, rows: list[dict], tokenizer, rewards: RewardSet, seed: int) -> Rollout:
    """TRL's rollout_func: the backend's generation, unit tests judged as completions finish,
    groups without reward spread replaced from the curriculum."""
    backend = rollout_backend(g)
    if backend == "eval_generator":
        generation = PolicyRollouts(g.max_completion_length, g.temperature, g.top_p, g.rollout_batch_size,
                                    g.rollout_processes)
    else:
        generation = TRLGeneration(g.num_generations)
    judge = None
    if "unit_test_reward" in rewards.names:
        judge = EarlyJudge(g.reward_kwargs.get("unit_test") or g.reward_kwargs.get("unit_test_reward"))
    pool = TaskPool([row["task_id"] for row in rows], g.retry_after_steps, seed)
    if g.curriculum_from:
        log.info("curriculum from %s: %s", g.curriculum_from, pool.seed_from_judged(g.curriculum_from))
    if g.dynamic_sampling and judge is None:
        log.warning("grpo.dynamic_sampling needs the unit_test reward to judge groups; it is off for this run")

    def tokenize(prompt) -> list[int]:
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False).input_ids

    log.info("rollouts: backend %s, dynamic sampling %s", backend, g.dynamic_sampling and judge is not None)
    return Rollout(rows, tokenize, generation, judge, pool, g.num_generations, g.dynamic_sampling, g.sampling_rounds,
                   backend=backend)


def judge_validation(completions: list[str], tasks: list[dict]) -> list[float | None]:
    """1.0 / 0.0 per validation task from the sandbox (the unit-test reward, as training judges);
    None where it could not judge (unavailable)."""
    return unit_test_reward(completions, [t["tests"] for t in tasks], [t["language"] for t in tasks])


def check_sandbox(reward_names: list[str], tasks: list[dict]) -> None:
    """Refuse to train when the sandbox cannot judge code: every judging reward would be None,
    so no group would carry a signal and the run would spend its steps learning nothing."""
    judging = [name for name in reward_names if name in JUDGING]
    if not judging:
        return
    require_sandbox({task["language"] for task in tasks},
                    f"the sandbox cannot judge code here, so {', '.join(judging)} would score nothing")


def trl_arguments(g: GRPOSettings, reward_weights: list[float]) -> dict:
    """GRPOSettings -> keyword arguments of TRL's GRPOConfig (names checked against TRL 1.16)."""
    extra = {}
    if rollout_backend(g) == "vllm":
        import importlib.util

        import torch

        if not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None:
            raise ConfigError("grpo.rollout_backend=vllm (or grpo.use_vllm=true) needs a GPU and the vllm package "
                              "(pip install vllm)")
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
