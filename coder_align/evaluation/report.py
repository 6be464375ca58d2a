"""What a run leaves behind: samples JSONL, summary.json, report.md, a bar chart; and
`compare` of two runs (per-problem wins and losses, a grouped bar chart).

Not here: scoring (scoring.py). Matplotlib is imported only when a chart is drawn.
"""

from __future__ import annotations

import json
from pathlib import Path

METRICS = ("pass@1", "pass@10", "pass@100", "exact_match")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def headline(summary: dict) -> dict[str, float]:
    """{"humaneval pass@1": 0.12, ...} over every task in a run summary."""
    out = {}
    for name, task in summary.get("tasks", {}).items():
        for metric in METRICS:
            if metric in task:
                out[f"{name} {metric}"] = task[metric]
    return out


def markdown_report(summary: dict) -> str:
    lines = [f"# Evaluation of `{summary.get('model', '?')}`", "",
             f"mode per task: {summary.get('modes', {})}; n={summary.get('n')}, "
             f"temperature={summary.get('temperature')}, backend={summary.get('backend')}", "",
             "| task | problems | samples | " + " | ".join(f"{m} %" for m in METRICS) + " | generation s | scoring s |",
             "|---|---|---|" + "---|" * len(METRICS) + "---|---|"]
    for name, task in summary.get("tasks", {}).items():
        # null: samples the sandbox could not judge (see status counts)
        cells = [("null" if task[m] is None else f"{100 * task[m]:.1f}") if m in task else "-" for m in METRICS]
        lines.append(f"| {name} | {task['problems_scored']}/{task['problems']} | {task['samples']} | "
                     + " | ".join(cells) + f" | {task.get('generation_seconds', '-')} | {task.get('scoring_seconds', '-')} |")
    lines += ["", "pass@k and exact match in percent of problems, 0-100 (summary.json holds them as fractions, "
              "0-1); null: some samples could not be judged. Status counts per task:", ""]
    for name, task in summary.get("tasks", {}).items():
        lines.append(f"- {name}: {task.get('status_counts', {})}"
                     + (f"; unknown task ids: {task['unknown_task_ids']}" if task.get("unknown_task_ids") else ""))
    return "\n".join(lines) + "\n"


def headline_counts(summary: dict) -> dict[str, int]:
    """{"humaneval pass@1": problems scored, ...}: what each headline number is a share of."""
    return {f"{name} {metric}": task.get("problems_scored", 0)
            for name, task in summary.get("tasks", {}).items() for metric in METRICS if metric in task}


def _bars(ax, series: dict[str, dict[str, float | None]], counts: dict[str, int] | None = None) -> None:
    """Grouped bars on a fixed 0-100 axis, each labelled with its value: a 0 still shows "0.0",
    a null (unjudged samples) says so, a metric a run lacks says "missing" (never drawn as 0)."""
    import numpy as np

    metrics = sorted({m for values in series.values() for m in values})
    width = 0.8 / max(1, len(series))
    for i, (label, values) in enumerate(series.items()):
        xs = np.arange(len(metrics)) + i * width
        heights = [100 * values[m] if values.get(m) is not None else np.nan for m in metrics]
        bars = ax.bar(xs, heights, width, label=label)
        for x, m, h, bar in zip(xs, metrics, heights, bars):
            text = f"{h:.1f}" if not np.isnan(h) else ("null (unjudged)" if m in values else "missing")
            ax.text(x, (0 if np.isnan(h) else h) + 1.5, text, ha="center", va="bottom", fontsize=7)
    ticks = [f"{m}\n({counts[m]} problems)" if counts and m in counts else m for m in metrics]
    ax.set_xticks(np.arange(len(metrics)) + width * (len(series) - 1) / 2, ticks, rotation=20, ha="right",
                  fontsize=8)
    ax.set_ylim(0, 115)  # fixed, so runs compare by eye; headroom for the value labels
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("% of problems")
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=7, loc="upper right")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_chart(series: dict[str, dict[str, float]], path: Path, title: str, counts: dict[str, int] | None = None):
    """Grouped bars: one group per metric ("task metric"), one bar per series (run), see `_bars`."""
    plt = _pyplot()
    n = len({m for values in series.values() for m in values})
    fig, ax = plt.subplots(figsize=(max(4.5, 1.5 * n + 2), 4))
    _bars(ax, series, counts)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)  # the closed Figure stays inspectable
    return fig


def compare_chart(result: dict, series: dict[str, dict[str, float]], path: Path,
                  counts: dict[str, int] | None = None):
    """Left: both runs' headline metrics. Right: per task, how many problems B wins, ties and
    loses against A (a problem's pass rate over its samples)."""
    plt = _pyplot()
    n = len({m for values in series.values() for m in values})
    fig, (ax, ax_wl) = plt.subplots(1, 2, figsize=(max(4.5, 1.5 * n + 2) + 4.5, 4),
                                    gridspec_kw={"width_ratios": [max(n, 1), 2]})
    _bars(ax, series, counts)
    ax.set_title("A vs B", fontsize=10)
    tasks = list(result["tasks"])
    left = [0] * len(tasks)
    for key, label, color in (("b_wins", "B better", "tab:green"), ("ties", "tie", "lightgray"),
                              ("b_losses", "B worse", "tab:red")):
        values = [result["tasks"][t][key] for t in tasks]
        bars = ax_wl.barh(tasks, values, left=left, color=color, label=label)
        for bar, v in zip(bars, values):
            if v:
                ax_wl.text(bar.get_x() + bar.get_width() / 2, bar.get_y() + bar.get_height() / 2, str(v),
                           ha="center", va="center", fontsize=8)
        left = [a + b for a, b in zip(left, values)]
    ax_wl.set_xlabel("problems (in both runs)")
    ax_wl.set_title("per problem: B against A", fontsize=10)
    ax_wl.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return fig


def load_run(run: str | Path) -> dict:
    path = Path(run)
    path = path / "summary.json" if path.is_dir() else path
    if not path.exists():
        raise FileNotFoundError(f"{path}: no summary.json (is this an `eval run` output directory?)")
    return json.loads(path.read_text(encoding="utf-8"))


def compare_runs(run_a: str | Path, run_b: str | Path, out: Path | None = None) -> dict:
    """Per task: headline metrics of both runs and per-problem wins / losses / ties of B over A
    (a problem's pass rate over its samples)."""
    a, b = load_run(run_a), load_run(run_b)
    result = {"run_a": str(run_a), "run_b": str(run_b), "tasks": {},
              # a task one run lacks is not compared (and never drawn as 0)
              "only_in_a": sorted(set(a.get("tasks", {})) - set(b.get("tasks", {}))),
              "only_in_b": sorted(set(b.get("tasks", {})) - set(a.get("tasks", {})))}
    for name in sorted(set(a.get("tasks", {})) & set(b.get("tasks", {}))):
        pa, pb = a["tasks"][name]["per_problem"], b["tasks"][name]["per_problem"]
        wins = losses = ties = 0
        for tid in set(pa) & set(pb):
            ra, rb = pa[tid]["passed"] / pa[tid]["n"], pb[tid]["passed"] / pb[tid]["n"]
            wins += rb > ra
            losses += rb < ra
            ties += rb == ra
        result["tasks"][name] = {
            "common_problems": len(set(pa) & set(pb)), "b_wins": wins, "b_losses": losses, "ties": ties,
            **{f"{m} a": a["tasks"][name][m] for m in METRICS if m in a["tasks"][name]},
            **{f"{m} b": b["tasks"][name][m] for m in METRICS if m in b["tasks"][name]}}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        # two runs of one model differ by directory (mode, checkpoint), so label with both
        label = lambda tag, run, s: f"{tag}: {Path(run).name} ({s.get('model', '?')})"  # noqa: E731
        compare_chart(result, {label("A", run_a, a): headline(a), label("B", run_b, b): headline(b)},
                      out / "compare.png", {**headline_counts(a), **headline_counts(b)})
        (out / "compare.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result
