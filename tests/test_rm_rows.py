"""data/rm_rows.py: reward-model rows checked with file and line, bad rows counted, pairs per task capped."""

import json

import pytest

from coder_align.data.records import DataError
from coder_align.data.rm_rows import build_pairs, read_rm_rows, split_by_task


def row(task, completion, passed, **extra):
    return {"prompt": f"Write task {task}.", "completion": completion, "passed": passed, "task_id": task, **extra}


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("bad, field, reason", [
    ({"completion": "x", "passed": True}, "prompt", "missing_prompt"),
    ({"prompt": "p", "passed": True}, "completion", "missing_completion"),
    ({"prompt": "p", "completion": "x"}, "passed", "missing_passed"),
    ({"prompt": "p", "completion": "x", "passed": "yes"}, "passed", "bad_passed"),
    ({"prompt": "p", "completion": " ", "passed": True}, "completion", "empty_completion"),
    ({"prompt": [{"role": "assistant", "content": "hi"}], "completion": "x", "passed": True}, "prompt", "bad_prompt"),
    ({"prompt": "p", "completion": "x", "passed": True, "tests_passed_fraction": 2}, "tests_passed_fraction",
     "bad_tests_passed_fraction"),
])
def test_a_bad_row_names_file_line_and_field(tmp_path, bad, field, reason):
    path = write(tmp_path / "rows.jsonl", [row("1", "a", True), bad])
    with pytest.raises(DataError, match=rf"rows.jsonl:2: .*'{field}'") as error:
        read_rm_rows(path)
    assert error.value.reason == reason


def test_bad_unjudged_and_repeated_rows_are_skipped_and_counted(tmp_path):
    path = write(tmp_path / "rows.jsonl", [
        row("1", "a", True, source="sample"), row("1", "b", False, source="mutant", status="wrong_answer"),
        row("1", "a", True),  # the same completion again
        row("1", "c", False, status="unavailable"),  # the sandbox did not judge it: no label
        {"prompt": "p", "completion": "x"},  # no verdict
        "not json",
    ])
    rows, stats = read_rm_rows(path, on_invalid="skip")
    assert [r["completion"] for r in rows] == ["a", "b"]
    summary = stats.as_dict()
    assert summary["rows_read"] == 6 and summary["rows_used"] == 2 and summary["rows_skipped"] == 4
    assert summary["skipped_by_reason"] == {"duplicate": 1, "invalid:bad_json": 1, "invalid:missing_passed": 1,
                                            "unjudged": 1}
    assert summary["rows_by_source"] == {"mutant": 1, "sample": 1} and summary["pass_share"] == 0.5
    assert any("rows.jsonl:4" in e and "unavailable" in e for e in summary["skipped_examples"])
    # an unjudged row is skipped even when bad rows stop the run: it is not bad, it has no label
    rows, _ = read_rm_rows(write(tmp_path / "u.jsonl", [row("1", "c", False, status="unavailable")]))
    assert rows == []


def test_pairs_per_task_are_capped_and_one_sided_tasks_counted():
    rows = [row("easy", f"good{i}", True) for i in range(5)] + [row("easy", f"bad{i}", False) for i in range(5)]
    rows += [row("hard", "bad", False), row("hard", "worse", False), row("solved", "good", True)]
    rows += [row("mixed", "good", True, source="reference"), row("mixed", "bad", False, source="mutant")]
    from coder_align.data.rm_rows import validate_row

    rows = [validate_row(r, f"x:{i}") for i, r in enumerate(rows)]
    pairs, stats = build_pairs(rows, max_pairs_per_task=4, seed=0)
    assert all(good["passed"] and not bad["passed"] and good["task"] == bad["task"] for good, bad in pairs)
    assert len([p for p in pairs if p[0]["task"] == "easy"]) == 4 and stats.pairs_over_cap == 25 - 4
    assert stats.as_dict()["one_sided_tasks"] == {"all_fail": 1, "all_pass": 1}
    assert stats.rows_in_one_sided_tasks == 3 and stats.tasks == 4 and stats.tasks_with_pairs == 2
    assert stats.pairs_by_sources["reference > mutant"] == 1
    assert build_pairs(rows, 4, seed=0)[0] == pairs and build_pairs(rows, 4, seed=1)[0] != pairs


def test_same_style_pairs_keep_references_with_mutants_and_samples_with_samples():
    from coder_align.data.rm_rows import validate_row

    rows = [row("t", "ref", True, source="reference"), row("t", "mut", False, source="mutant"),
            row("t", "good sample", True, source="sample"), row("t", "bad sample", False, source="sample"),
            row("t", "bad judged", False, source="judged:completions.jsonl"),
            row("u", "ref", True, source="reference"), row("u", "bad sample", False, source="sample")]
    rows = [validate_row(r, f"x:{i}") for i, r in enumerate(rows)]
    pairs, stats = build_pairs(rows, same_style=True)
    assert sorted((g["completion"], b["completion"]) for g, b in pairs) == [
        ("good sample", "bad judged"), ("good sample", "bad sample"), ("ref", "mut")]
    assert stats.one_sided_tasks == {"no_same_style_pair": 1} and stats.tasks_with_pairs == 1
    assert len(build_pairs(rows)[0]) == 2 * 3 + 1  # without the rule, style-crossing pairs too


def test_held_out_tasks_are_whole_and_stable():
    from coder_align.data.rm_rows import validate_row

    rows = [validate_row(row(str(t), f"c{i}", i % 2 == 0), "x") for t in range(200) for i in range(3)]
    train, held = split_by_task(rows, 0.2, seed=0)
    assert {r["task"] for r in train}.isdisjoint({r["task"] for r in held})
    assert 20 <= len({r["task"] for r in held}) <= 60
    assert split_by_task(rows[:30], 0.2, seed=0)[1] == [r for r in held if r in rows[:30]]  # a task's side is its own
    assert split_by_task(rows, 0.0)[1] == []
