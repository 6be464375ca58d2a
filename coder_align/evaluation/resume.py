"""Continuing a stopped evaluation: `eval run ... resume=true` keeps the tasks that an earlier
run with the same settings finished in the same output directory, and generates only the rest.

Why task by task: a task's prompts are generated together (continuous batching mixes rows of
one task only, and sampled runs seed each task's shards the same way), so a kept task is what a
run from scratch would have written, and a stopped run loses at most the task it was in. That
matters for the long suites: DeepSeek's eight languages take 8 to 26 minutes each on a 2-core
CPU, over 90 minutes together.

After each task the run writes `partial_summary.json` (the summary so far); `summary.json`
replaces it at the end, and either one can be resumed from. Before the model loads, resuming
compares the earlier run's resolved settings and its model's files (size and modification time
of each file directly in the model folder) with this run's, and refuses any difference by name:
samples from other settings or other weights would be mixed into one summary. Allowed to differ:
`resume` itself and `data.tasks` (tasks can be added to a run; each task's summary stands alone).
What it cannot see: a model rewritten with the same sizes and times, or a sandbox that changed
between the runs (each kept task's verdicts are the earlier run's).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from coder_align.config import ConfigError, settings_differences

log = logging.getLogger(__name__)

PARTIAL_SUMMARY = "partial_summary.json"
SUMMARY = "summary.json"
MAY_DIFFER = ("resume", "data.tasks")


def model_files(path: str) -> dict[str, list[int]]:
    """Size and mtime of the model's files ({} for a hub id or `embedded`): what tells a
    retrained checkpoint in the same folder from the one an earlier run evaluated."""
    folder = Path(path)
    if folder.is_file():
        files = [folder]
    elif folder.is_dir():
        files = sorted(p for p in folder.iterdir() if p.is_file())
    else:
        files = []
    return {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files}


def kept_tasks(out: Path, config: dict, model: dict, names: list[str]) -> dict[str, dict]:
    """The finished tasks of the earlier run in `out` that this run (`config`, `model`: its
    resolved settings and `model_files`) keeps: task name -> that task's summary. Raises
    ConfigError when the earlier run's settings or model differ."""
    earlier_path = next((out / name for name in (SUMMARY, PARTIAL_SUMMARY) if (out / name).is_file()), None)
    if earlier_path is None:
        log.info("resume: %s holds no earlier run; every task is generated", out)
        return {}
    try:
        earlier = json.loads(earlier_path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ConfigError(f"{earlier_path}: cannot resume, not a summary ({e}); drop resume=true to start over") from e
    differences = settings_differences(earlier.get("config", {}), config, MAY_DIFFER)
    if earlier.get("model_files") != model:
        differences.append(f"the model's files ({earlier.get('model_files')} -> {model})")
    if differences:
        raise ConfigError(f"{earlier_path}: cannot resume, the earlier run differs: {'; '.join(differences)}. "
                          "Use another output_dir, or drop resume=true to start over")
    kept = {}
    for name in names:
        task = earlier.get("tasks", {}).get(name)
        if task is not None and (out / f"samples_{name}.jsonl").is_file():
            kept[name] = task
    log.info("resume: keeping %d finished task(s) from %s (%s); generating %d",
             len(kept), earlier_path, ", ".join(kept) or "none", len(names) - len(kept))
    return kept


def save_partial(out: Path, summary: dict) -> None:
    """The summary so far, written after every task (atomically: a run killed mid-write leaves the last one)."""
    scratch = out / (PARTIAL_SUMMARY + ".tmp")
    scratch.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    scratch.replace(out / PARTIAL_SUMMARY)


def finish(out: Path) -> None:
    """summary.json is written: the partial one is superseded."""
    (out / PARTIAL_SUMMARY).unlink(missing_ok=True)
