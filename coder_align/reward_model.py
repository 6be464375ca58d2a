"""A reward model trained on execution feedback, the DeepSeek-Coder-V2 way.

    coder-align rm data --model outputs/sft --tasks mbpp-train.jsonl --k 8 --out rm_rows.jsonl
    coder-align rm train --config configs/rm/quickstart-cpu.yaml data.path=rm_rows.jsonl
    deepspeed coder_align/reward_model.py --config configs/rm/embedded.yaml

V2: "some code prompts may have a limited number of test cases ... directly using 0-1 feedback
from the compiler may be noisy and sub-optimal", so a reward model is trained on the compiler's
verdicts and GRPO rewards with it (`reward_model` in `grpo.rewards`, see `rewards/reward_model.py`).

Steps: starting point (any model SFT loads, or an SFT/GRPO output directory, whose template
and system prompt are reused, so the reward model reads prompts exactly as the policy sees
them) -> rows (judged completions, `data/rm_rows.py`) split by task into training and
held-out -> (passing, failing) pairs per task, capped -> tokens (prompt + completion in the
policy's template) -> the same network with a one-output score head (LoRA/QLoRA/DeepSpeed as
in SFT) -> TRL's RewardTrainer: Bradley-Terry loss on pairs, optional pointwise pass/fail
loss -> output directory with weights or adapter, tokenizer, resolved config, summary.json
(held-out pairwise accuracy and pass/fail AUC, before and after training), TensorBoard logs
and accuracy.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run as `deepspeed coder_align/reward_model.py`: import the package, not sibling files.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import logging
from dataclasses import dataclass, field, replace
from typing import ClassVar, Literal

from coder_align.config import (
    NON_NEGATIVE, ONE_OR_MORE, ConfigError, ModelConfig, PeftConfig, Range, TrainConfig, parse_args, to_dict,
)
from coder_align.data import DataError
from coder_align.data.rm_rows import build_pairs, read_rm_rows, split_by_task
from coder_align.datagen import rm_data
from coder_align.models.loading import load_model, load_tokenizer
from coder_align.rewards.reward_model import auc, encode, pairwise_accuracy, score_ids
from coder_align.run_dir import Run, read_run
from coder_align.templates import system_prompt_note
from coder_align.training import (
    START_MODEL, is_main_process, merged_start, prepare_output_dir, train_and_save, training_arguments, write_summary,
)
from coder_align.training.plots import plot_accuracy, smoothed_final

log = logging.getLogger("coder_align.reward_model")


@dataclass
class RMDataConfig:
    path: str = ""  # rows written by `coder-align rm data` (.jsonl / .json / .parquet)
    eval_path: str | None = None  # held-out rows; None: hold out eval_fraction of the tasks in `path`
    eval_fraction: float = 0.1  # share of tasks (whole tasks) held out for accuracy and AUC
    template: Literal["deepseek", "model"] | None = None  # None: the starting point's, else deepseek
    system_prompt: str | None = None  # None: the starting point's, else DeepSeek's for DeepSeek models, else neutral
    max_length: int = 1024  # tokens of prompt + completion
    overlong: Literal["drop", "truncate_prompt"] = "drop"
    on_invalid: Literal["error", "skip"] = "error"
    max_rows: int | None = None  # use at most this many valid rows of `path`
    max_pairs_per_task: int | None = 16  # so that tasks with many samples do not dominate
    # pair only rows written the same way (a reference with its mutants, samples with samples),
    # so that how code looks cannot stand in for whether it works (data/rm_rows.py)
    same_style_pairs: bool = False
    seed: int = 0  # which tasks are held out, which pairs are kept

    RANGES: ClassVar[dict] = {"eval_fraction": Range(0, 1, high_open=True), "max_length": Range(2),
                              "max_rows": ONE_OR_MORE, "max_pairs_per_task": ONE_OR_MORE, "seed": NON_NEGATIVE}


@dataclass
class RMSettings:
    # weight of the pointwise pass/fail loss added to the pairwise one (0: Bradley-Terry only)
    pointwise_weight: float = 0.0
    center_rewards_coefficient: float | None = None  # TRL: pulls mean scores towards 0
    eval_steps: int = 50  # held-out pairwise accuracy every this many steps (accuracy.png)
    eval_batch_size: int = 8

    RANGES: ClassVar[dict] = {"pointwise_weight": NON_NEGATIVE, "center_rewards_coefficient": NON_NEGATIVE,
                              "eval_steps": ONE_OR_MORE, "eval_batch_size": ONE_OR_MORE}


@dataclass
class RewardModelConfig:
    """Reward model on execution feedback (DeepSeek-Coder-V2): pairwise loss on passing vs failing code."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: RMDataConfig = field(default_factory=RMDataConfig)
    peft: PeftConfig = field(default_factory=PeftConfig)
    # per_device_train_batch_size counts pairs (each is two sequences)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        output_dir="outputs/rm", num_train_epochs=1.0, warmup_steps=10, save_steps=200))
    rm: RMSettings = field(default_factory=RMSettings)


def main(config: RewardModelConfig) -> dict:
    """Train, save, and return the run summary (also written to summary.json)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not config.data.path:
        raise ConfigError("data.path is required (rows from `coder-align rm data`)")
    out = Path(config.train.output_dir)

    # --- rows, held-out tasks, pairs: before anything heavy loads, so bad data fails fast ----
    data = load_rows(config.data)
    log.info("rows: %s", data["stats"])
    if not data["train_pairs"]:  # before the tokenizer: a GGUF model converts there
        raise DataError(config.data.path, "no (passing, failing) pair to train on: every task's rows all pass or "
                                          f"all fail ({data['stats']})", "no_pairs")

    from datasets import Dataset
    from transformers import set_seed
    from trl import RewardConfig

    # the trainer subclasses TRL's: imported when training starts, so importing this module stays light
    from coder_align.training.trainers import CodeRewardTrainer

    set_seed(config.train.seed)

    # --- starting point and tokenizer: the policy's run, read once, and its template --------
    start = read_run(config.model.path, config.data.template, config.data.system_prompt)
    weights = str((out / START_MODEL).resolve()) if start.adapter else start.weights  # an adapter: merged once
    tokenizer = load_tokenizer(start.tokenizer, start.template, start.system_prompt)
    resolved = replace(config, model=replace(config.model, path=weights),
                       data=replace(config.data, template=start.template, system_prompt=start.system_prompt))

    # --- tokens: prompt + completion in the policy's template -------------------------------
    encoded = encode_rows(data["train_rows"] + data["eval_rows"], tokenizer, resolved.data)
    train_pairs, train_dropped = tokenized_pairs(data["train_pairs"], encoded)
    eval_pairs, eval_dropped = tokenized_pairs(data["eval_pairs"], encoded)
    if not train_pairs:
        raise DataError(config.data.path, "no (passing, failing) pair to train on: every task's rows all pass or "
                                          f"all fail, or were dropped ({data['stats']})", "no_pairs")
    resume = prepare_output_dir(resolved, out)
    if start.adapter:
        merged_start(start, out / START_MODEL)

    # --- training arguments before the model: ZeRO-3 must partition it while loading ------
    r = config.rm
    evaluating = bool(eval_pairs)
    args = training_arguments(
        config.train, config.model.gradient_checkpointing, args_class=RewardConfig,
        max_length=None,  # over-long rows were dropped (and counted) when tokenized
        center_rewards_coefficient=r.center_rewards_coefficient, per_device_eval_batch_size=r.eval_batch_size,
        eval_strategy="steps" if evaluating else "no", eval_steps=r.eval_steps if evaluating else None)

    # --- model: the policy's network with a score head ------------------------------------
    model = load_model(replace(config.model, path=weights), tokenizer, config.peft, training=True,
                       template=start.template, head="score")
    if hasattr(model, "print_trainable_parameters") and is_main_process():
        model.print_trainable_parameters()
    held_out_rows = [row for row in data["eval_rows"] if encoded.get(id(row)) is not None]
    before = held_out_measures(model, tokenizer, held_out_rows, data["eval_pairs"], encoded, r.eval_batch_size)

    trainer = CodeRewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(train_pairs),
                                eval_dataset=Dataset.from_list(eval_pairs) if evaluating else None,
                                processing_class=tokenizer)
    trainer.pointwise_weight = r.pointwise_weight
    if config.peft.method == "qlora":
        score_head_follows_hidden_states(trainer.model)

    # --- train and save ----------------------------------------------------------------------
    trained = train_and_save(trainer, resolved, tokenizer, out, resume)
    if not trained.is_main:
        return {}
    after = held_out_measures(trainer.model, tokenizer, held_out_rows, data["eval_pairs"], encoded,
                              r.eval_batch_size)
    plot_accuracy(trainer.state.log_history, out / "accuracy.png", after, trained.resumed_from_step)
    data_summary = {**data["stats"], "train_pairs_used": len(train_pairs), "eval_pairs_used": len(eval_pairs),
                    "pairs_dropped_too_long": {"train": train_dropped, "eval": eval_dropped},
                    "rows_too_long": sum(v is None for v in encoded.values())}
    summary = run_summary(config, resolved, start, weights, data_summary, (before, after), trainer, trained)
    write_summary(out, summary)
    return summary


def run_summary(config: RewardModelConfig, resolved: RewardModelConfig, start: Run, weights: str, data: dict,
                measures: tuple, trainer, trained) -> dict:
    before, after = measures
    return {
        "stage": "reward_model",
        "model": config.model.path,
        "start": {**start.describe(), "weights": weights},
        "system_prompt": system_prompt_note(start.system_prompt, start.system_prompt_source)
        if start.template == "deepseek" else None,
        "peft": config.peft.method,
        "data": data,
        "held_out": {"before": before, "after": after,
                     "eval_accuracy": [{"step": h["step"], "accuracy": round(h["eval_accuracy"], 4)}
                                       for h in trainer.state.log_history if "eval_accuracy" in h]},
        "steps": trained.steps,
        "epochs": round(trained.epochs, 3),
        "train_seconds": round(trained.seconds, 2),
        "first_loss": trained.losses[0] if trained.losses else None,
        "final_loss": trained.losses[-1] if trained.losses else None,
        **smoothed_final(trained.losses),
        **trained.provenance(),
        "config": to_dict(resolved),
    }


def score_head_follows_hidden_states(model) -> None:
    """TRL casts every trainable parameter of a 4-bit model to bf16 (the QLoRA paper's advice).
    LoRA layers cast their input to match; the score head (a plain Linear that peft trains in
    full) does not, so it takes the dtype of the hidden states it reads (fp32 on a CPU)."""
    hidden = model.get_input_embeddings().weight.dtype
    for name, parameter in model.named_parameters():
        if parameter.requires_grad and "modules_to_save" in name and parameter.dtype != hidden:
            parameter.data = parameter.data.to(hidden)


def load_rows(d: RMDataConfig) -> dict:
    """Rows of `d.path` (and `d.eval_path`), split by task, with their pairs and every count."""
    rows, stats = read_rm_rows(d.path, d.on_invalid, d.max_rows)
    if d.eval_path:
        train_rows = rows
        eval_rows, eval_stats = read_rm_rows(d.eval_path, d.on_invalid)
        eval_tasks = {row["task"] for row in eval_rows}
        overlap = {row["task"] for row in train_rows} & eval_tasks
        if overlap:
            raise ConfigError(f"data.eval_path shares {len(overlap)} tasks with data.path (e.g. "
                              f"{sorted(overlap)[0]}); held-out accuracy must be on tasks not trained on")
    else:
        train_rows, eval_rows = split_by_task(rows, d.eval_fraction, d.seed)
        eval_stats = None
    train_pairs, train_pair_stats = build_pairs(train_rows, d.max_pairs_per_task, d.seed, d.same_style_pairs)
    # held-out pairs: every kind, so accuracy per kind of pair shows what the model learnt
    eval_pairs, eval_pair_stats = build_pairs(eval_rows, d.max_pairs_per_task, d.seed)
    summary = {"rows": stats.as_dict(), "eval_rows_file": eval_stats.as_dict() if eval_stats else None,
               "train_rows": len(train_rows), "eval_rows": len(eval_rows),
               "train_pairs": train_pair_stats.as_dict(), "eval_pairs": eval_pair_stats.as_dict()}
    return {"train_rows": train_rows, "eval_rows": eval_rows, "train_pairs": train_pairs, "eval_pairs": eval_pairs,
            "stats": summary}


def encode_rows(rows: list[dict], tokenizer, d: RMDataConfig) -> dict[int, list[int] | None]:
    """id(row) -> token ids of prompt + completion in the policy's template (None: too long)."""
    return {id(row): encode(row["prompt"], row["completion"], tokenizer, d.template, d.system_prompt, d.max_length,
                            d.overlong) for row in rows}


def tokenized_pairs(pairs: list[tuple[dict, dict]], encoded: dict) -> tuple[list[dict], int]:
    """RewardTrainer's pre-tokenized pairs; pairs with a row over max_length are dropped and counted."""
    out, dropped = [], 0
    for good, bad in pairs:
        chosen, rejected = encoded[id(good)], encoded[id(bad)]
        if chosen is None or rejected is None:
            dropped += 1
            continue
        out.append({"chosen_ids": chosen, "rejected_ids": rejected})
    return out, dropped


def held_out_measures(model, tokenizer, rows: list[dict], pairs: list[tuple[dict, dict]], encoded: dict,
                      batch_size: int) -> dict | None:
    """Pairwise accuracy on held-out pairs and pass/fail AUC on all held-out rows (None without
    held-out rows, or under ZeRO-3, whose partitioned weights run only inside the engine: then
    the Trainer's `eval_accuracy` is the held-out measure)."""
    base = getattr(model, "module", model)
    if not rows or any(hasattr(p, "ds_id") for p in base.parameters()):
        return None
    scores = score_ids(base, [encoded[id(row)] for row in rows], tokenizer.pad_token_id, batch_size)
    by_row = {id(row): s for row, s in zip(rows, scores)}
    scored = [(g, b) for g, b in pairs if id(g) in by_row and id(b) in by_row]
    pair_scores = [(by_row[id(g)], by_row[id(b)]) for g, b in scored]
    labels = [row["passed"] for row in rows]
    accuracy, area = pairwise_accuracy(pair_scores), auc(scores, labels)
    # per kind of pair: a model that only tells a reference's style from a sample's scores well on
    # "reference > sample" and at chance on "reference > mutant" (same style, one bug apart)
    kinds: dict[str, list] = {}
    for (g, b), pair in zip(scored, pair_scores):
        kinds.setdefault(f"{g['source']} > {b['source']}", []).append(pair)
    return {"pairwise_accuracy": None if accuracy is None else round(accuracy, 4), "pairs": len(pair_scores),
            "auc": None if area is None else round(area, 4), "rows": len(rows), "passed": sum(labels),
            "pairwise_accuracy_by_sources": {kind: {"pairs": len(v), "accuracy": round(pairwise_accuracy(v), 4)}
                                             for kind, v in sorted(kinds.items())}}


def train_cli(argv: list[str]) -> int:
    config = parse_args(RewardModelConfig, argv, prog="coder-align rm train")
    summary = main(config)
    if summary:
        out = Path(config.train.output_dir)
        held = summary["held_out"]
        before, after = held["before"], held["after"]
        if after:
            measured = (f"held-out pairwise accuracy {before['pairwise_accuracy']} -> {after['pairwise_accuracy']} "
                        f"({after['pairs']} pairs), pass/fail AUC {before['auc']} -> {after['auc']} "
                        f"({after['rows']} rows)")
        elif held["eval_accuracy"]:  # ZeRO-3: only the Trainer's evaluation ran
            measured = f"held-out pairwise accuracy (Trainer) {held['eval_accuracy'][-1]['accuracy']}"
        else:
            measured = "no held-out rows (data.eval_fraction=0 and no data.eval_path)"
        print(f"\n{measured}; final loss {summary['final_loss']}; output in {out}:")
        for p in sorted(out.iterdir()):
            print(f"  {p.name}{'/' if p.is_dir() else ''}")
    return 0


USAGE = """usage: coder-align rm {data,train} ...

  data   sample, mutate and judge completions into reward-model rows (coder-align rm data --help)
  train  train a reward model on those rows (coder-align rm train --help)"""


def cli(argv: list[str]) -> int:
    """`coder-align rm data ...` or `coder-align rm train ...`."""
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "train":
        return train_cli(rest)
    if command == "data":
        return rm_data.cli(rest)
    print(f"coder-align rm: error: unknown command '{command}'\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(train_cli(sys.argv[1:]))
