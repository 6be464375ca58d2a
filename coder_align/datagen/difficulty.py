"""The difficulty filter: keep the training tasks at a model's frontier, for GRPO.

    coder-align data difficulty --model outputs/sft --tasks data_templates/mbpp_train.jsonl --k 8 --out frontier.jsonl
    coder-align data difficulty --tasks data_templates/mbpp_train.jsonl --out frontier.jsonl model.path=outputs/rft/sft sampling.k=16

GRPO learns from the spread of rewards within a group: a task the model never solves, or
always solves, gives every completion the same reward, so the group has no advantage to
learn from. This samples k answers per task (`self_sampling`), judges them against all the
task's tests, and keeps tasks with 0 < passes < k, written back as the input rows,
unchanged, so `coder-align grpo data.path=frontier.jsonl` reads them as it read the
original. `keep_never=true` also keeps tasks never solved (for a model that solves little,
where the frontier alone is too small; those groups stay flat until the model learns more).

`--judged FILE` classifies on samples an earlier run already judged instead of sampling again:
`rft`'s judged.jsonl, this command's `.judged.jsonl`, a GRPO run's completions.jsonl or eval's
samples_<task>.jsonl (`verdicts.read_judged`). `sampling.k` is then the number of samples
a task needs to be called never or always solved; samples of tasks not in `--tasks` are counted
and left out.

Beside `--out`: `<out>.summary.json` (tasks tried, never/always solved, kept, unavailable,
the histogram of passes per task) and `<out>.judged.jsonl` (every sample and its verdict,
for `verdicts.read_judged`). A task with samples the sandbox could not judge is
classified on its judged samples only when they already disagree; otherwise it is counted
as `undecided` and not kept.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from coder_align import sandbox
from coder_align.config import ConfigError, check_ranges, to_dict
from coder_align.data.records import DataError
from coder_align.datagen.self_sampling import (
    JudgingConfig, SampledModelConfig, SamplingConfig, TaskDataConfig, generator_spec, load_tasks, sample_and_judge,
)
from coder_align.datagen.verdicts import judged_by_task, status_counts, write_judged
from coder_align.run_dir import read_run
from coder_align.sandbox.preflight import require_sandbox
from coder_align.sandbox.remote import SandboxConfig
from coder_align.sandbox.results import UNAVAILABLE

log = logging.getLogger(__name__)


@dataclass
class DifficultyConfig:
    """Keep the tasks a model sometimes solves (0 < passes < k), for GRPO."""

    model: SampledModelConfig = field(default_factory=SampledModelConfig)
    data: TaskDataConfig = field(default_factory=TaskDataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    judging: JudgingConfig = field(default_factory=JudgingConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)  # servers to judge on; none: this machine
    keep_never: bool = False  # also keep tasks never solved (a model that solves little)
    judged_path: str = ""  # judged samples of an earlier run to classify on, instead of sampling
    output_path: str = ""  # the kept rows (JSONL); summary and judged samples go beside it


def frontier(passes: list[int], judged: list[int], k: int, keep_never: bool = False) -> tuple[list[str], dict]:
    """Per task, from its passes and judged samples out of k: its class (`kept`, `never`,
    `always`, `undecided`, `unavailable`) and the counts.

    >>> frontier([0, 3, 8, 2, 0], [8, 8, 8, 4, 0], 8)[0]
    ['never', 'kept', 'always', 'kept', 'unavailable']
    >>> frontier([0, 5], [8, 5], 8, keep_never=True)[0]
    ['kept', 'undecided']
    """
    classes = []
    for p, n in zip(passes, judged):
        if n == 0:
            classes.append("unavailable")
        elif 0 < p < n:
            classes.append("kept")  # mixed verdicts: at the frontier whatever the unjudged ones were
        elif n < k:
            classes.append("undecided")  # all agree, but unjudged samples might not have
        elif p == 0:
            classes.append("kept" if keep_never else "never")
        else:
            classes.append("always")
    never = sum(p == 0 and n == k for p, n in zip(passes, judged))
    summary = {"tasks_tried": len(passes), "kept": classes.count("kept"), "never_solved": never,
               "always_solved": classes.count("always"), "kept_never_solved": never if keep_never else 0,
               "undecided": classes.count("undecided"), "unavailable": classes.count("unavailable"),
               # tasks by number of passing samples (of the judged ones)
               "passes_histogram": {str(i): passes.count(i) for i in range(k + 1)}}
    return classes, summary


def main(config: DifficultyConfig) -> dict:
    """Sample, judge, keep the frontier; returns the summary (also `<out>.summary.json`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not config.data.path:
        raise ConfigError("data.path (--tasks) is required: the task rows with tests")
    if not config.output_path:
        raise ConfigError("output_path (--out) is required: where the kept rows go")
    for group in ("data", "sampling", "judging"):
        check_ranges(getattr(config, group), "DifficultyConfig", prefix=f"{group}.")
    s, d = config.sampling, config.data
    sandbox.remote.configure(config.sandbox)
    tasks, data_stats = load_tasks(d.path, d.task_ids, fmt=d.format, split=d.split, shown_tests=d.shown_tests,
                                   on_invalid=d.on_invalid, max_rows=d.max_rows)
    if not tasks:
        raise DataError(d.path, f"no tasks left ({data_stats})", "no_rows")

    out = Path(config.output_path)
    reused, seconds = {}, {"sampling_seconds": 0.0, "judging_seconds": 0.0}
    if config.judged_path:
        judged, reused = judged_by_task(config.judged_path, tasks)
    else:
        # before the model: sampling for an hour that nothing can judge
        require_sandbox({t["language"] for t in tasks}, "cannot judge samples here")
        run = read_run(config.model.path, d.template, d.system_prompt)
        model = generator_spec(run, config.model, s, str(out.parent))
        judged, seconds = sample_and_judge(model, tasks, s, config.judging)

    passes = [sum(x.passed for x in per) for per in judged]
    n_judged = [sum(x.status != UNAVAILABLE for x in per) for per in judged]
    classes, summary = frontier(passes, n_judged, s.k, config.keep_never)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for task, kind in zip(tasks, classes):
            if kind == "kept":
                f.write(json.dumps(task["row"]) + "\n")
    write_judged(judged_path(out), judged)
    summary.update(
        model=None if config.judged_path else config.model.path, tasks_file=d.path, k=s.k,
        keep_never=config.keep_never, data=data_stats,
        sample_statuses=status_counts(judged),
        samples_clipped=sum(x.clipped for per in judged for x in per),
        task_classes=dict(Counter(classes)), **seconds, reused=reused,
        output=str(out), judged=str(judged_path(out)), config=to_dict(config))
    summary_path(out).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    log.info("kept %d of %d tasks (never solved %d, always %d, undecided %d, unavailable %d)", summary["kept"],
             summary["tasks_tried"], summary["never_solved"], summary["always_solved"], summary["undecided"],
             summary["unavailable"])
    return summary


def summary_path(out: Path) -> Path:
    return out.with_name(out.name + ".summary.json")


def judged_path(out: Path) -> Path:
    return out.with_name(out.name + ".judged.jsonl")
