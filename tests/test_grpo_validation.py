"""Validation pass@1 during GRPO training (training/validation.py): the callback's arithmetic
with a fake generator and judge, the summary's best step and checkpoint, the plot, the config
checks, and real runs on the tiny random Llama through both generation paths."""

import json
from types import SimpleNamespace

import pytest

from coder_align.config import ConfigError
from coder_align.training.plots import rewards_figure
from coder_align.training.validation import (
    PASS_AT_1, Validation, check_held_out, read_validation_tasks, validation_summary,
)

from test_grpo_train import grpo, write_rows

VALIDATION_ROWS = [
    {"task_id": 900, "prompt": "Write a Python function triple(x) returning 3 * x.", "tests": ["assert triple(2) == 6"]},
    {"task_id": 901, "prompt": "Write a Python function first(xs) -> xs[0].", "tests": ["assert first([4]) == 4"]},
    {"task_id": 902, "prompt": "Write a Python function is_even(n).", "tests": ["assert is_even(2)"]},
]


def state(step, max_steps=5, main=True):
    return SimpleNamespace(global_step=step, max_steps=max_steps, is_world_process_zero=main)


def test_pass_at_1_counts_unavailable_apart_and_runs_every_n_steps_and_at_the_last():
    tasks = [{"task_id": str(i), "prompt": f"p{i}"} for i in range(4)]
    calls, logged = [], []

    def generate(rows, trainer):
        calls.append(trainer)
        return [f"completion {row['task_id']}" for row in rows]

    def judge(completions, rows):
        assert completions == [f"completion {r['task_id']}" for r in rows]
        return [1.0, 0.0, None, 1.0]  # passed, failed, unavailable (sandbox down), passed

    validation = Validation("the trainer", tasks, generate, judge, every=2, log_metrics=logged.append)
    ran = [step for step in range(1, 6) if validation.step_end(state(step)) is not None]
    assert ran == [2, 4, 5]  # every 2 steps, and the last step (5)
    assert calls == ["the trainer"] * 3 and len(logged) == 3
    metrics = logged[0]
    assert metrics[PASS_AT_1] == pytest.approx(2 / 3)  # the unavailable verdict is not a failure
    assert (metrics["validation/passed"], metrics["validation/failed"], metrics["validation/unavailable"],
            metrics["validation/tasks"]) == (2.0, 1.0, 1.0, 4.0)
    assert validation.step_end(state(4, main=False)) is None  # only the main process validates


def test_each_task_s_completion_and_verdict_is_recorded_per_step(tmp_path):
    tasks = [{"task_id": "a"}, {"task_id": "b"}]
    record = tmp_path / "validation.jsonl"
    validation = Validation(None, tasks, lambda rows, t: ["ok", "bad"], lambda c, r: [1.0, None], every=1,
                            log_metrics=lambda m: None, record_to=record)
    for step in (1, 2):
        validation.step_end(state(step, max_steps=2))
    rows = [json.loads(line) for line in record.read_text().splitlines()]
    assert rows == [{"step": step, "task_id": task, "verdict": verdict, "completion": completion}
                    for step in (1, 2) for task, verdict, completion in (("a", 1.0, "ok"), ("b", None, "bad"))]


def test_the_best_step_is_recorded_for_the_trainer_s_checkpoint_rotation():
    scores = iter([[0.0], [1.0], [1.0], [0.0], [None]])
    validation = Validation(None, [{"task_id": "1"}], lambda rows, t: ["x"], lambda c, r: next(scores), 1,
                            lambda metrics: None)
    trainer_state = state(1, max_steps=5)
    trainer_state.best_metric = trainer_state.best_global_step = None
    for step in range(1, 6):
        trainer_state.global_step = step
        validation.step_end(trainer_state)
    # the earliest of the best (2, not the tie at 3); a later worse or unjudged validation keeps it
    assert (trainer_state.best_metric, trainer_state.best_global_step) == (1.0, 2)


def test_no_judged_task_logs_no_pass_at_1():
    logged = []
    validation = Validation(None, [{"task_id": "1"}], lambda rows, t: ["x"], lambda c, r: [None], 1, logged.append)
    validation.step_end(state(1))
    assert PASS_AT_1 not in logged[0] and logged[0]["validation/unavailable"] == 1.0


def test_summary_names_the_best_step_and_the_best_saved_checkpoint(tmp_path):
    def entry(step, passed, failed, unavailable=0):
        judged = passed + failed
        out = {"step": step, "validation/passed": passed, "validation/failed": failed,
               "validation/unavailable": unavailable, "validation/tasks": judged + unavailable}
        if judged:
            out[PASS_AT_1] = passed / judged
        return out

    history = [{"step": 1, "reward": 0.1}, entry(1, 1, 3), entry(2, 3, 1), entry(3, 2, 2), entry(4, 0, 0, 4),
               entry(5, 3, 1)]
    for step in (1, 3, 5):  # checkpoints saved at steps 1, 3 and 5
        (tmp_path / f"checkpoint-{step}").mkdir()
    summary = validation_summary(history, tmp_path, every=1, tasks=4)
    assert [h["step"] for h in summary["history"]] == [1, 2, 3, 4, 5]
    assert summary["history"][3] == {"step": 4, "pass@1": None, "passed": 0, "failed": 0, "unavailable": 4}
    assert summary["best_step"] == 2 and summary["best_pass@1"] == 0.75  # earliest of the ties (2 and 5)
    assert summary["best_checkpoint"] == str(tmp_path / "checkpoint-5")  # step 2 was not saved
    assert summary["best_checkpoint_pass@1"] == 0.75


def test_rewards_plot_shows_validation_pass_at_1_beside_the_rates():
    history = [{"step": 1, "reward": 0.2, "code/pass_rate": 0.1}, {"step": 1, PASS_AT_1: 0.25},
               {"step": 2, "reward": 0.3, "code/pass_rate": 0.2}, {"step": 2, PASS_AT_1: 0.5}]
    fig = rewards_figure(history, {"unit_test": 1.0})
    lines = {line.get_label(): line for ax in fig.axes for line in ax.get_lines()}
    line = lines["validation pass@1 (greedy, held-out tasks)"]
    assert list(line.get_xdata()) == [1, 2] and list(line.get_ydata()) == [0.25, 0.5]


def test_validation_tasks_refused_when_trained_on(tmp_path):
    tasks = read_validation_tasks(write_rows(tmp_path / "val.jsonl", VALIDATION_ROWS))
    assert [t["task_id"] for t in tasks] == ["900", "901", "902"]
    assert len(read_validation_tasks(str(tmp_path / "val.jsonl"), limit=2)) == 2
    with pytest.raises(ConfigError, match="also training tasks"):
        check_held_out("val.jsonl", tasks, tasks[:1], 0)
    check_held_out("val.jsonl", tasks, [], 3)  # MBPP validation ids trained on: not these tasks
    with pytest.raises(ConfigError, match="validation ids"):
        check_held_out("mbpp-validation", tasks, [], 3)


def test_default_validation_tasks_are_mbpp_s_validation_split(monkeypatch, tmp_path):
    from coder_align import benchmarks

    mbpp = benchmarks.find_data(benchmarks.MBPP_FILE)
    if mbpp is not None:
        tasks = read_validation_tasks("mbpp-validation")
        ids = {int(t["task_id"]) for t in tasks}
        assert len(tasks) == 43 and ids <= set(benchmarks.validation_split())
    monkeypatch.setattr(benchmarks, "mbpp_source", lambda source=None: benchmarks.MBPP_HUB)
    with pytest.raises(ConfigError, match="needs the MBPP file"):
        read_validation_tasks("mbpp-validation")


@pytest.mark.parametrize("backend", ["eval_generator", "trl"])
def test_run_logs_validation_and_summary_names_best_step(tiny_model_dir, tmp_path, backend):
    out = tmp_path / "run"
    summary = grpo(tiny_model_dir, write_rows(tmp_path / "rows.jsonl"), out, "train.max_steps=2",
                   "train.save_steps=1", f"grpo.rollout_backend={backend}", "grpo.validation_every=1",
                   f"grpo.validation_tasks={write_rows(tmp_path / 'val.jsonl', VALIDATION_ROWS)}")
    log_history = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    logged = [h for h in log_history if "validation/tasks" in h]
    assert [h["step"] for h in logged] == [1, 2]
    # and each validated step keeps its own training entry (rewards, loss), not merged into the next
    assert [h["step"] for h in log_history if "loss" in h and "reward" in h] == [1, 2]
    for h in logged:  # a random model: every task judged (the sandbox works here) and failed
        assert h[PASS_AT_1] == 0.0 and h["validation/tasks"] == 3.0 and h["validation/unavailable"] == 0.0
    validation = summary["validation"]
    assert [h["step"] for h in validation["history"]] == [1, 2] and validation["tasks"] == 3
    assert validation["best_step"] == 1 and validation["best_checkpoint"] == str(out / "checkpoint-1")
    recorded = [json.loads(line) for line in (out / "validation.jsonl").read_text().splitlines()]
    assert [(r["step"], r["task_id"]) for r in recorded] == [(s, str(t["task_id"])) for s in (1, 2) for t in VALIDATION_ROWS]
    assert all(r["verdict"] == 0.0 for r in recorded)
    assert (out / "rewards.png").is_file()


def test_a_long_run_keeps_the_best_checkpoint_past_save_total_limit(tiny_model_dir, tmp_path, monkeypatch):
    """With save_total_limit=2 the Trainer keeps the last two checkpoints, unless it knows the
    best one: the validation at step 1 is the best (later ones score lower), so checkpoint-1 stays."""
    import coder_align.grpo as grpo_stage

    scores = iter([1.0, 0.0, 0.0, 0.0])
    monkeypatch.setattr(grpo_stage, "judge_validation", lambda completions, tasks: [next(scores)] + [0.0] * (len(tasks) - 1))
    out = tmp_path / "run"
    summary = grpo(tiny_model_dir, write_rows(tmp_path / "rows.jsonl"), out, "train.max_steps=4",
                   "train.save_steps=1", "train.save_total_limit=2", "grpo.validation_every=1",
                   f"grpo.validation_tasks={write_rows(tmp_path / 'val.jsonl', VALIDATION_ROWS)}")
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-4"]  # not 3 and 4
    assert summary["validation"]["best_checkpoint"] == str(out / "checkpoint-1")


def test_validation_settings_out_of_range_are_refused():
    from coder_align.config import load_config
    from coder_align.grpo import GRPOConfig

    assert load_config(GRPOConfig, None, []).grpo.validation_every == 0  # off unless asked for
    for bad in ("grpo.validation_every=-1", "grpo.validation_limit=0"):
        with pytest.raises(ConfigError):
            load_config(GRPOConfig, None, [bad])


def test_the_sandbox_judges_validation_completions_and_an_outage_is_unavailable(monkeypatch, tmp_path):
    from coder_align import sandbox
    from coder_align.grpo import judge_validation

    tasks = read_validation_tasks(write_rows(tmp_path / "val.jsonl", VALIDATION_ROWS))[:2]
    right = "```python\ndef triple(x):\n    return 3 * x\n```"
    assert judge_validation([right, "```python\ndef first(xs):\n    return 0\n```"], tasks) == [1.0, 0.0]

    def down(*args, **kwargs):
        raise OSError("bubblewrap: cannot run")

    monkeypatch.setattr(sandbox, "check_many", down)
    assert judge_validation([right, right], tasks) == [None, None]  # never a failure
