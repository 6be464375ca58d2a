"""benchmarks/results_table.py: the multilingual cell is DeepSeek's figure (the mean of the
eight languages' pass@1), and only when all eight were judged."""

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
