"""Issue 26: every task pool used for training (RFT, GRPO, difficulty, reward-model data, the
MBPP SFT rows) leaves out the validation split and whatever shares a 10-gram with a benchmark,
counted in its summary; and no committed training-side file holds a flagged task that
RESULTS.md does not name."""

import gzip
import json
from pathlib import Path

import pytest

from coder_align import benchmarks

REPO = Path(__file__).resolve().parents[1]
MBPP_TRAIN = REPO / "data_templates" / "mbpp_train.jsonl"
RESULTS = REPO / "benchmarks" / "results"
# The tasks of data_templates/mbpp_train.jsonl that the SFT rows' 10-gram rule flags against
# MBPP's test split (the list): 7 in the validation split, 9 in the training split.
FLAGGED = {558, 562, 569, 574, 592, 598, 600, 608, 731, 747, 756, 762, 767, 787, 794, 803}
FLAGGED_TRAIN = {608, 731, 747, 756, 762, 767, 787, 794, 803}
# training tasks that share a 10-gram with the validation split (625 ~ 591, 784 ~ 594; 767 and
# 803 also match it but are flagged above): a validation number must not be inflated by them
NEAR_VALIDATION = {625, 784}
VALIDATION = set(benchmarks.validation_split())

# Committed training-side files made before the rule, and the flagged / validation tasks they
# hold. Their cells cannot be rerun on this machine now; benchmarks/RESULTS.md names each one.
# A new file, or another id in one of these, fails the test: rerun with the new pools instead.
COMMITTED_AFFECTED = {
    "benchmarks/data/sft_embedded/mbpp_sft.jsonl": (NEAR_VALIDATION, 36),
    "benchmarks/results/rft/judged.jsonl.gz": (FLAGGED | NEAR_VALIDATION, 43),
    "benchmarks/results/rft/rft_rows.jsonl": ({600, 787, 794}, 8),
    "benchmarks/results/grpo/frontier.jsonl": ({600, 787, 794}, 8),
    "benchmarks/results/grpo/completions.jsonl.gz": ({600, 787, 794}, 8),
    "benchmarks/results/grpo-rft/frontier.jsonl": ({787, 803}, 8),
    "benchmarks/results/grpo-rft/completions.jsonl.gz": ({787, 803}, 8),
}
needs_mbpp = pytest.mark.skipif(benchmarks.find_data(benchmarks.MBPP_FILE) is None,
                                reason="decontamination needs a local MBPP file")


def training_side_files() -> list[Path]:
    """Every file a committed stage trained on or trained toward: SFT data, RFT samples and
    rows, GRPO frontiers and completions (eval samples and the reward-model study's held-out
    samples are measured on, not trained on)."""
    names = ("judged.jsonl.gz", "rft_rows.jsonl", "frontier.jsonl", "completions.jsonl.gz")
    found = [p for p in RESULTS.rglob("*") if p.name in names]
    return sorted(found + list((REPO / "benchmarks" / "data").rglob("*.jsonl")))


def task_numbers(path: Path) -> set[int]:
    opener = gzip.open if path.suffix == ".gz" else open
    ids = set()
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            number = str(json.loads(line).get("task_id", "")).rsplit("/", 1)[-1]
            if number.isdigit():
                ids.add(int(number))
    return ids


@needs_mbpp
def test_training_pools_leave_out_flagged_and_validation_tasks():
    from coder_align.datagen.self_sampling import load_tasks

    tasks, stats = load_tasks(str(MBPP_TRAIN))
    ids = {int(t["task_id"]) for t in tasks}
    assert not ids & (FLAGGED | NEAR_VALIDATION | VALIDATION)
    assert len(tasks) == 163 - 43 - 11 == stats["rows_used"]
    assert stats["held_out_validation"] == 43
    d = stats["decontamination"]
    assert d["removed"] == 11 and {int(x.split()[0]) for x in d["removed_tasks"]} == FLAGGED_TRAIN | NEAR_VALIDATION
    assert d["benchmarks"] == {"HumanEval": 328, "MBPP test split": 1290, "MBPP validation split": 215}


@needs_mbpp
def test_grpo_reads_the_same_pool():
    from coder_align.data.grpo_rows import read_tasks

    tasks, stats = read_tasks(str(MBPP_TRAIN), training=True)
    assert not {int(t["task_id"]) for t in tasks} & (FLAGGED | NEAR_VALIDATION | VALIDATION)
    assert stats.as_dict()["decontamination"]["removed"] == 11
    # not a training read (eval, the reward-model study's held-out tasks): nothing left out
    assert read_tasks(str(MBPP_TRAIN))[1].rows_used == 163


@needs_mbpp
def test_naming_validation_ids_is_on_the_record():
    from coder_align.datagen.self_sampling import load_tasks

    tasks, stats = load_tasks(str(MBPP_TRAIN), task_ids="554-558")
    assert [t["task_id"] for t in tasks] == ["554", "555", "556", "557"]  # 558 is contaminated
    assert stats["validation_trained_on"] == 5 and stats["decontamination"]["removed"] == 1  # 558 named, then removed


@needs_mbpp
def test_mbpp_sft_rows_hold_no_validation_or_flagged_task(tmp_path):
    from coder_align.datagen.mbpp_sft import MbppSftConfig, mbpp_rows

    rows, summary = mbpp_rows(MbppSftConfig())
    ids = {int(r["task_id"].split("/")[1]) for r in rows}
    assert ids and not ids & (FLAGGED | NEAR_VALIDATION | VALIDATION)
    assert summary["decontamination"]["removed"] == 11


def test_no_flagged_task_in_a_training_side_file_but_those_results_name():
    found = {}
    for path in training_side_files():
        ids = task_numbers(path)
        flagged, validation = ids & (FLAGGED | NEAR_VALIDATION), len(ids & VALIDATION)
        if flagged or validation:
            found[str(path.relative_to(REPO))] = (flagged, validation)
    assert found == COMMITTED_AFFECTED
    results = (REPO / "benchmarks" / "RESULTS.md").read_text()
    for name in COMMITTED_AFFECTED:
        assert name.removeprefix("benchmarks/") in results, f"RESULTS.md must name {name} as affected"


def test_a_pool_that_could_not_be_checked_says_so(monkeypatch):
    from coder_align.data import grpo_rows

    def missing(**kwargs):
        raise FileNotFoundError("decontamination needs MBPP: mbpp_sanitized.jsonl not found")

    monkeypatch.setattr(grpo_rows, "load_test_split_index", missing)
    grpo_rows._test_split_index.cache_clear()
    try:
        tasks, stats = grpo_rows.read_tasks(str(MBPP_TRAIN), training=True)
    finally:
        grpo_rows._test_split_index.cache_clear()
    d = stats.as_dict()["decontamination"]
    assert d["removed"] is None and "needs MBPP" in d["benchmarks"]["unavailable"]  # unchecked, never "0 removed"
    assert len(tasks) == 120 and stats.held_out_validation == 43  # the validation split is held out all the same
