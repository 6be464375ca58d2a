"""Where a long GRPO run stands, from its newest checkpoint: what `coder-align grpo` writes
at the end (rewards.png, the validation summary), for a run that has not ended.

    python benchmarks/grpo_progress.py outputs/grpo-embedded-rft-v2 --to benchmarks/results/grpo-rft-v2

A run on this CPU outlives a session and is resumed with its own command (a checkpoint every
`train.save_steps`); when a session ends, the process is killed and writes nothing. Each
checkpoint's `trainer_state.json` holds the whole log history, so this script reads the newest
one and writes, into `--to`:

- `rewards.png`: the stage's own figure (rewards, running mean, rates, validation pass@1);
- `progress.json`: the log history, the validation summary of `training/validation.py`
  (best step, the best checkpoint still on disk), the run's resolved config (as a finished
  run's summary holds it), and the figures printed below;

and prints, per span of `--span` steps: the mean unit-test reward, the groups dropped for no
spread, the reward-hacking signals (shown test passed, hidden failed; `unavailable`), and the
validation pass@1 at each validated step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from transformers.trainer_utils import get_last_checkpoint  # noqa: E402

from coder_align.rewards.reward_set import RewardSet  # noqa: E402
from coder_align.training.plots import plot_rewards  # noqa: E402
from coder_align.training.validation import validation_summary  # noqa: E402

DROPPED = ("groups/dropped_all_failed", "groups/dropped_all_passed", "groups/filled_without_spread")


def spans(train: list[dict], span: int) -> list[dict]:
    """Per span of steps (1-10, 11-20, ...): means of the rates, sums of the counts."""
    rows, by_span = [], {}
    for h in train:
        by_span.setdefault((h["step"] - 1) // span, []).append(h)
    for part in by_span.values():
        rows.append({
            "steps": f"{part[0]['step']}-{part[-1]['step']}",
            "unit_test_reward": round(statistics.mean(h["rewards/unit_test_reward/mean"] for h in part), 3),
            **{key.split("/")[1]: int(sum(h.get(key, 0) for h in part)) for key in DROPPED},
            "shown_pass_hidden_fail": round(statistics.mean(h.get("code/shown_pass_hidden_fail", 0) for h in part), 3),
            "unavailable_share": round(statistics.mean(h.get("code/unavailable_share", 0) for h in part), 3),
            "step_time_s": round(statistics.median(h["step_time"] for h in part if "step_time" in h), 1)
            if any("step_time" in h for h in part) else None,
        })
    return rows


def training_tasks(completions: Path, window: int, last_step: int) -> dict:
    """Per training task, the completions that passed their tests in the first and in the last
    `window` steps (completions.jsonl: every completion the rewards scored, with its step): what
    the policy learnt on the tasks it trains on, beside what validation says it learnt."""
    tasks: dict[str, dict] = {}
    with completions.open(encoding="utf-8") as rows:
        for line in rows:
            row = json.loads(line)
            if row["step"] > last_step:  # written after the newest checkpoint: a resume forgets them
                continue
            part = "first" if row["step"] <= window else "last" if row["step"] > last_step - window else None
            if part:
                counts = tasks.setdefault(str(row["task_id"]), {"first": [0, 0], "last": [0, 0]})[part]
                counts[0] += (row["rewards"].get("unit_test_reward") or 0.0) == 1.0
                counts[1] += 1
    both = {t: c for t, c in tasks.items() if c["first"][1] and c["last"][1]}
    rate = {t: (c["first"][0] / c["first"][1], c["last"][0] / c["last"][1]) for t, c in both.items()}
    return {"window": window, "tasks": tasks,
            "first": [sum(c["first"][i] for c in tasks.values()) for i in (0, 1)],
            "last": [sum(c["last"][i] for c in tasks.values()) for i in (0, 1)],
            "in_both": len(both),
            "rose": sorted(t for t, (first, last) in rate.items() if first <= 0.25 and last >= 0.5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", type=Path, help="the run's train.output_dir")
    parser.add_argument("--to", type=Path, required=True, help="where rewards.png and progress.json go")
    parser.add_argument("--span", type=int, default=10, help="steps per printed row")
    parser.add_argument("--window", type=int, default=20, help="steps at the start and at the end compared per task")
    args = parser.parse_args()

    # the checkpoint train.resume=auto would continue from
    checkpoint = get_last_checkpoint(args.output_dir) if args.output_dir.is_dir() else None
    if checkpoint is None:
        raise SystemExit(f"{args.output_dir}: no checkpoint-N (has the run saved yet?)")
    checkpoint = Path(checkpoint)
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    history = state["log_history"]
    config = yaml.safe_load((args.output_dir / "coder_align_config.yaml").read_text())  # as the run resolved it
    train = [h for h in history if "rewards/unit_test_reward/mean" in h]
    tasks = next((int(h["validation/tasks"]) for h in history if "validation/tasks" in h), 0)
    validation = validation_summary(history, args.output_dir, config["grpo"]["validation_every"], tasks)
    rows = spans(train, args.span)

    args.to.mkdir(parents=True, exist_ok=True)
    # the figure's legend names each reward with its weight, as the run itself does (grpo.main)
    reward_set = RewardSet(config["grpo"]["rewards"])
    plot_rewards(history, args.to / "rewards.png", dict(zip(reward_set.names, reward_set.weights)))
    report = {"checkpoint": checkpoint.name, "global_step": state["global_step"], "max_steps": state["max_steps"],
              "best_global_step": state.get("best_global_step"), "best_metric": state.get("best_metric"),
              "spans": rows, "validation": validation, "config": config, "log_history": history}
    completions = args.output_dir / "completions.jsonl"
    if completions.is_file():
        report["training_tasks"] = learnt = training_tasks(completions, args.window, state["global_step"])
    (args.to / "progress.json").write_text(json.dumps(report, indent=1) + "\n")

    print(f"{args.output_dir}: {checkpoint.name} of {state['max_steps']} steps; "
          f"{len(train)} steps logged with rewards")
    for row in rows:
        print("  " + ", ".join(f"{k} {v}" for k, v in row.items()))
    for h in validation["history"]:
        print(f"  validation at step {h['step']}: {h['passed']}/{tasks} (pass@1 {h['pass@1']:.3f})")
    if "training_tasks" in report:
        first, last = learnt["first"], learnt["last"]
        print(f"training tasks: {first[0]}/{first[1]} completions passed in the first {args.window} steps, "
              f"{last[0]}/{last[1]} in the last {args.window}; of {learnt['in_both']} tasks sampled in both, "
              f"{len(learnt['rose'])} rose from <= 25% to >= 50% ({', '.join(learnt['rose'])})")
    print(f"best validated step {validation['best_step']} ({validation['best_pass@1']}); "
          f"best checkpoint on disk: {validation['best_checkpoint']}")


if __name__ == "__main__":
    main()
