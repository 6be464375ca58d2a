"""Per-language view of a run of DeepSeek-Coder's multilingual HumanEval: a table for
report.md, with DeepSeek's published figures beside ours, and a bar chart.

A language whose samples could not be judged (its toolchain missing here) shows as
unavailable, with the sandbox's reason, and is left out of the average: never a 0.
Not here: scoring (scoring.py), the run's main report (report.py).
"""

from __future__ import annotations

from pathlib import Path

from coder_align.benchmarks.multilingual import PAPER_LANGUAGES, SETTINGS
from coder_align.evaluation.report import bar_chart

# DeepSeek-Coder-Instruct's greedy pass@1 (%) on its multilingual HumanEval, from the
# DeepSeek-Coder repository's README / paper (Table 3): Python, C++, Java, PHP, TS, C#, Bash, JS.
DEEPSEEK_INSTRUCT = {
    "deepseek-coder-1.3b-instruct": dict(zip(PAPER_LANGUAGES, (65.2, 45.3, 51.9, 45.3, 59.7, 55.1, 12.7, 52.2))),
}
DEEPSEEK_INSTRUCT_AVERAGE = {"deepseek-coder-1.3b-instruct": 48.4, "deepseek-coder-6.7b-instruct": 66.1,
                             "deepseek-coder-33b-instruct": 69.2}
LABELS = {"python": "Python", "cpp": "C++", "java": "Java", "php": "PHP", "ts": "TypeScript", "cs": "C#",
          "sh": "Bash", "js": "JavaScript", "go": "Go", "rs": "Rust"}


def language_results(summary: dict) -> dict[str, dict]:
    """{language code: {"pass@1", "problems" (judged), "unavailable_reason"}} for the humaneval-<code> tasks."""
    out = {}
    for code in list(PAPER_LANGUAGES) + [c for c in SETTINGS if c not in PAPER_LANGUAGES]:  # the paper's order
        task = summary.get("tasks", {}).get(f"humaneval-{code}")
        if task is not None:
            # problems judged: a problem with an unjudged sample is not in pass@k
            out[code] = {"pass@1": task.get("pass@1"),
                         "problems": task.get("problems_scored", 0) - task.get("problems_unjudged", 0),
                         "unavailable_reason": task.get("unavailable_reason")}
    return out


def average(results: dict[str, dict]) -> tuple[float | None, list[str]]:
    """Mean pass@1 over the paper's languages that were judged, and the ones that were not
    (missing from the run or unavailable): an average over fewer is not the paper's."""
    judged = [results[c]["pass@1"] for c in PAPER_LANGUAGES if c in results and results[c]["pass@1"] is not None]
    missing = [c for c in PAPER_LANGUAGES if c not in results or results[c]["pass@1"] is None]
    return (sum(judged) / len(judged) if judged else None), missing


def markdown(summary: dict) -> str:
    """The per-language table (empty when the run has no humaneval-<code> task)."""
    results = language_results(summary)
    if not results:
        return ""
    reference = DEEPSEEK_INSTRUCT["deepseek-coder-1.3b-instruct"]
    lines = ["", "## Multilingual HumanEval (DeepSeek-Coder's suite)", "",
             "| language | problems | pass@1 % | DeepSeek-Coder-1.3B-Instruct % |", "|---|---|---|---|"]
    for code, r in results.items():
        value = (f"{100 * r['pass@1']:.1f}" if r["pass@1"] is not None
                 else f"unavailable ({(r['unavailable_reason'] or 'not judged')[:80]})")
        lines.append(f"| {LABELS[code]} | {r['problems']} | {value} | {reference.get(code, '-')} |")
    mean, missing = average(results)
    lines.append(f"| average of the paper's eight | | {'-' if mean is None else f'{100 * mean:.1f}'}"
                 + (f" (without {', '.join(LABELS[c] for c in missing)})" if missing and mean is not None else "")
                 + f" | {DEEPSEEK_INSTRUCT_AVERAGE['deepseek-coder-1.3b-instruct']} |")
    return "\n".join(lines) + "\n"


def chart(summary: dict, path: Path, title: str):
    """Bars per language (0-100, labelled; an unjudged language says so, never drawn as 0), or None."""
    results = language_results(summary)
    if not results:
        return None
    values = {LABELS[code]: r["pass@1"] for code, r in results.items()}
    return bar_chart({title: values}, path, f"{title}: multilingual HumanEval pass@1",
                     {LABELS[code]: r["problems"] for code, r in results.items()})
