"""benchmarks/results_table.py: the multilingual cell is DeepSeek's figure (the mean of the
eight languages' pass@1), and only when all eight were judged; benchmarks/grpo_progress.py
reads a GRPO run that has not ended."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("results_table", REPO / "benchmarks" / "results_table.py")
results_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_table)

EIGHT = ("python", "cpp", "java", "php", "ts", "cs", "sh", "js")


def _summary(passed: dict[str, tuple[int, int]], unavailable: tuple[str, ...] = ()) -> dict:
    tasks = {}
    for code, (n_passed, problems) in passed.items():
        tasks[f"humaneval-{code}"] = {"pass@1": None if code in unavailable else n_passed / problems,
                                      "problems_scored": problems, "problems_unjudged": problems if code in unavailable else 0,
                                      "unavailable_reason": "no toolchain" if code in unavailable else None}
    return {"tasks": tasks}


def test_the_cell_is_the_mean_of_the_eight_languages_not_the_pooled_rate():
    counts = {code: (0, 160) for code in EIGHT} | {"python": (41, 164), "sh": (2, 158)}
    cell = results_table.multilingual_mean(_summary(counts))
    assert cell["pass@1"] == (41 / 164 + 2 / 158) / 8  # DeepSeek's average, not 43 / 1282
    assert cell["passed"] == 43 and cell["problems"] == sum(n for _, n in counts.values())


def test_no_cell_unless_all_eight_were_judged():
    counts = {code: (1, 160) for code in EIGHT}
    assert results_table.multilingual_mean(_summary(counts, unavailable=("cs",))) is None
    del counts["ts"]
    assert results_table.multilingual_mean(_summary(counts)) is None
    assert results_table.multilingual_mean({"tasks": {"leetcode": {"pass@1": 0.0}}}) is None


def test_every_column_has_a_command_and_a_plot_label():
    from coder_align.evaluation.config import eval_config

    assert len(results_table.PLOT_LABELS) == len(results_table.COLUMNS)
    made = results_table.commands("embedded", Path("benchmarks/results/x"), [])
    assert {run for run, *_ in results_table.COLUMNS} <= set(made)
    for name, argv in made.items():  # each resolves to a valid eval config
        args = argv[argv.index("run") + 1:]
        config_file = args[args.index("--config") + 1] if "--config" in args else None
        eval_config(str(REPO / config_file) if config_file else None, [a for a in args if "=" in a])


def test_grpo_progress_reads_a_run_that_has_not_ended(tmp_path, monkeypatch):
    """benchmarks/grpo_progress.py: the newest checkpoint's log history, per 10-step span, the
    validation history and the best checkpoint still on disk, and the stage's rewards figure."""
    import json
    import subprocess
    import sys

    out = tmp_path / "run"
    history = []
    for step in range(1, 13):
        history.append({"step": step, "loss": 0.1, "reward": 0.5, "rewards/unit_test_reward/mean": step / 12,
                        "groups/dropped_all_failed": 1.0, "code/shown_pass_hidden_fail": 0.25, "step_time": 60.0})
        if step in (5, 10):
            history.append({"step": step, "validation/tasks": 43.0, "validation/passed": 6.0 if step == 5 else 5.0,
                            "validation/failed": 37.0, "validation/unavailable": 0.0,
                            "validation/pass@1": (6.0 if step == 5 else 5.0) / 43})
    for step in (5, 10):
        (out / f"checkpoint-{step}").mkdir(parents=True)
        (out / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps(
            {"global_step": step, "max_steps": 300, "log_history": [h for h in history if h["step"] <= step]}))
    (out / "checkpoint-12").mkdir()
    (out / "checkpoint-12" / "trainer_state.json").write_text(json.dumps(
        {"global_step": 12, "max_steps": 300, "best_global_step": 5, "log_history": history}))
    (out / "coder_align_config.yaml").write_text("grpo:\n  validation_every: 5\n  rewards:\n    unit_test: 1.0\n    format: 0.1\n")
    # task 7 goes from 1 pass in 4 to 4 in 4; step 13 is past the newest checkpoint (a resume forgets it)
    (out / "completions.jsonl").write_text("".join(
        json.dumps({"step": step, "task_id": 7, "rewards": {"unit_test_reward": float(step > 10 or i == 0)}}) + "\n"
        for step in (1, 12, 13) for i in range(4)))
    report = tmp_path / "report"
    printed = subprocess.run([sys.executable, str(REPO / "benchmarks" / "grpo_progress.py"), str(out), "--to", str(report), "--window", "5"],
                             capture_output=True, text=True, check=True).stdout
    progress = json.loads((report / "progress.json").read_text())
    assert progress["checkpoint"] == "checkpoint-12" and len(progress["log_history"]) == len(history)
    assert [s["steps"] for s in progress["spans"]] == ["1-10", "11-12"]
    assert progress["spans"][0]["dropped_all_failed"] == 10 and progress["spans"][0]["shown_pass_hidden_fail"] == 0.25
    assert progress["validation"]["best_step"] == 5 and progress["validation"]["best_checkpoint"] == str(out / "checkpoint-5")
    assert progress["config"]["grpo"]["rewards"] == {"unit_test": 1.0, "format": 0.1}
    learnt = progress["training_tasks"]
    assert learnt["first"] == [1, 4] and learnt["last"] == [4, 4] and learnt["rose"] == ["7"]
    assert "validation at step 10: 5/43" in printed and (report / "rewards.png").is_file()
