"""Rejection-sampling fine-tuning: which samples become rows, the config it hands to SFT, the
refusal of held-out tasks, and a run end to end on the tiny random model (sampling stubbed
with known right and wrong answers; judging and training real)."""

from __future__ import annotations

import json

import pytest

from coder_align.config import ConfigError, load_config
from coder_align.data.records import DataError
from coder_align.datagen import self_sampling
from coder_align.datagen.verdicts import JudgedSample, read_judged
from coder_align.rft import RFTConfig, code_key, fine_tune_config, main, select, sft_row
from coder_align.run_dir import read_run
from coder_align.sandbox import SandboxUnavailable, find_bwrap

from conftest import DATA_TEMPLATES

MBPP_TRAIN = DATA_TEMPLATES / "mbpp_train.jsonl"
needs_sandbox = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap not installed")


def judged(code: str, passed=True, status="ok", clipped=False, completion=None) -> JudgedSample:
    return JudgedSample("7", [{"role": "user", "content": "Write f."}], completion or f"```python\n{code}```\n",
                        code, passed, status, 1.0 if passed else 0.0, clipped)


def test_select_keeps_distinct_passing_finished_answers_up_to_m():
    samples = [judged("def f(x):\n    return x\n"),
               judged("def f( x ):\n    return (x)  # same program\n"),
               judged("def f(x):\n    return x + 0\n", passed=False, status="wrong_answer"),
               judged("def f(x):\n    y = x\n    return y\n", clipped=True),
               judged("x", passed=False, status="unavailable"),
               judged("def f(x):\n    return +x\n"),
               judged("def f(x):\n    return 1 * x\n")]
    kept, dropped = select(samples, max_per_task=2)
    assert [s.code for s in kept] == [samples[0].code, samples[5].code]
    assert dropped == {"duplicate": 1, "failed": 1, "clipped": 1, "unavailable": 1, "over_max_per_task": 1}
    assert len(select(samples, 5, keep_clipped=True)[0]) == 4
    rambling = judged("def f(x):\n    return x\n", completion="```python\ndef f(x):\n    return x\n```\n```\nmore\n```")
    assert select([rambling, samples[5]], 2, one_block=True) == ([samples[5]], {"not_one_block": 1})
    assert code_key("a = 1\n\n  # c\n", "whitespace") != code_key("a=1", "whitespace")


def test_sft_rows_keep_the_answer_as_generated_but_one_newline():
    row = sft_row(judged("def f(): pass\n", completion="Sure:\n```python\ndef f(): pass\n```\n"))
    assert row["messages"] == [{"role": "user", "content": "Write f."},
                               {"role": "assistant", "content": "Sure:\n```python\ndef f(): pass\n```"}]
    from coder_align.templates import render

    # the rendered row ends as the model's own generation did before <|EOT|>
    assert render(row["messages"]).endswith("### Response:\nSure:\n```python\ndef f(): pass\n```\n<|EOT|>")


def test_fine_tune_config_defaults_to_the_sampled_model_and_its_template(tmp_path):
    config = load_config(RFTConfig, None, ["model.path=embedded", f"output_dir={tmp_path / 'r'}",
                                           "sft.train.learning_rate=1e-4"])
    sft = fine_tune_config(config, read_run("embedded"))
    assert sft.model.path == "embedded" and sft.train.output_dir == str(tmp_path / "r" / "sft")
    assert sft.train.learning_rate == 1e-4 and sft.data.template == "deepseek"
    run = read_run("embedded", system_prompt="")
    assert fine_tune_config(config, run).data.system_prompt == ""
    other = load_config(RFTConfig, None, ["sft.data.template=model"])
    with pytest.raises(ConfigError, match="sft.data.template='model' differs from the template the model was sampled"):
        fine_tune_config(other, read_run("embedded"))
    with pytest.raises(ConfigError, match="sft.data.path is set by rft"):
        main(load_config(RFTConfig, None, ["sft.data.path=x.jsonl"]))


def test_held_out_tasks_are_refused_before_any_model_loads(tmp_path):
    with pytest.raises(ConfigError, match="includes MBPP test-split ids"):
        main(load_config(RFTConfig, None, ["data.task_ids=500-600", f"output_dir={tmp_path}"]))
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"task_id": 42, "text": "Write f.", "test_list": ["assert f() == 1"]}) + "\n")
    with pytest.raises(DataError, match=r"tasks.jsonl:1: MBPP task 42 is in MBPP's test split"):
        main(load_config(RFTConfig, None, [f"data.path={tasks}", "data.task_ids=null", f"output_dir={tmp_path}"]))


def answers(tasks) -> tuple[list[list[str]], list[list[bool]]]:
    """Per task: the reference twice (once reformatted: a duplicate), a wrong answer, and a
    clipped right one; the third task only wrong answers."""
    out, clipped = [], []
    for i, task in enumerate(tasks):
        ref = task["row"]["code"]
        wrong = "```python\ndef nothing():\n    return None\n```\n"
        if i == 2:
            out.append([wrong, wrong, wrong, wrong])
        else:
            out.append([f"Here:\n```python\n{ref}\n```\n", f"```python\n{ref}\n\n\n# again\n```", wrong,
                        f"```python\n{ref}\n```\nand more"])
        clipped.append([False, False, False, True])
    return out, clipped


@needs_sandbox
def test_rft_end_to_end_trains_a_checkpoint_on_the_kept_rows(tiny_model_dir, tmp_path, monkeypatch):
    calls = []

    def fake_sample(model, tasks, sampling, run=None):
        calls.append((model.run.path, sampling.k, model.run.template))
        return answers(tasks)

    monkeypatch.setattr(self_sampling, "sample", fake_sample)
    extra = tmp_path / "extra.jsonl"
    extra.write_text("".join(json.dumps({"instruction": f"Say {i}.", "output": str(i)}) + "\n" for i in range(5)))
    out = tmp_path / "rft"
    overrides = [f"model.path={tiny_model_dir}", f"data.path={MBPP_TRAIN}", "data.max_rows=3", "sampling.k=4",
                 f"output_dir={out}", f"data.extra_sft_path={extra}", "data.extra_sft_rows=2",
                 "sft.data.max_length=512", "sft.train.max_steps=2", "sft.train.warmup_steps=0",
                 "sft.train.report_to=[]", "sft.train.disable_progress_bar=true",
                 "sft.model.gradient_checkpointing=false", "sft.train.save_steps=1000"]
    summary = main(load_config(RFTConfig, None, overrides))
    assert calls == [(str(tiny_model_dir), 4, "deepseek")]

    rows = [json.loads(line) for line in (out / "rft_rows.jsonl").read_text().splitlines()]
    # the default task ids are MBPP's train split (601-974): 554, 555 are validation tasks
    assert [r["task_id"] for r in rows] == ["602", "603"]  # one per task: the rest duplicate, wrong or clipped
    first = next(row for row in map(json.loads, MBPP_TRAIN.read_text().splitlines()) if row["task_id"] == 602)
    reference = first["code"]
    # the answer as generated, less the newline the template puts before <|EOT|>
    assert rows[0]["messages"][-1] == {"role": "assistant", "content": f"Here:\n```python\n{reference}\n```"}
    assert rows[0]["messages"][0]["content"].startswith("Write a python function to find the first repeated character")
    assert (summary["tasks_tried"], summary["tasks_with_pass"], summary["rows_kept"]) == (3, 2, 2)
    assert summary["dropped"] == {"duplicate": 2, "failed": 6, "clipped": 2}
    assert summary["statuses"]["ok"] == 6 and summary["unavailable"] == 0 and summary["extra_rows"] == 2
    assert len(read_judged(out / "judged.jsonl")) == 12
    mixed = [json.loads(line) for line in (out / "sft_rows.jsonl").read_text().splitlines()]
    assert len(mixed) == 4 and sum("instruction" in r for r in mixed) == 2

    sft_dir = out / "sft"
    assert summary["sft"]["steps"] == 2 and summary["sft"]["data"]["rows_used"] == 4
    for name in ("model.safetensors", "tokenizer.json", "coder_align_config.yaml", "summary.json"):
        assert (sft_dir / name).is_file(), name
    assert read_run(str(sft_dir)).stage == "sft"
    saved = json.loads((out / "summary.json").read_text())
    assert saved["stage"] == "rft" and saved["config"]["keep"]["max_per_task"] == 2

    # expert iteration (issue 28): round 2 samples the round-1 model on the same tasks and keeps
    # what passes of its own answers, with the template it was trained on
    calls.clear()
    round_two = [o for o in overrides if not o.startswith(("model.path=", "output_dir="))]
    second = main(load_config(RFTConfig, None, round_two + [f"model.path={sft_dir}", f"output_dir={tmp_path / 'r2'}"]))
    assert calls == [(str(sft_dir), 4, "deepseek")]
    assert second["model"] == str(sft_dir) and second["rows_kept"] == 2
    assert read_run(str(tmp_path / "r2" / "sft")).stage == "sft"

    # a rerun with the same sampling settings reuses the verdicts; other settings are refused
    monkeypatch.setattr(self_sampling, "sample", lambda *a, **k: pytest.fail("sampled again"))
    again = main(load_config(RFTConfig, None, overrides + ["keep.max_per_task=1", "sft.train.max_steps=3",
                                                           "sft.train.overwrite=true"]))
    assert again["reused_samples"] and again["rows_kept"] == 2 and again["sft"]["steps"] == 3
    with pytest.raises(ConfigError, match="sft_rows.jsonl: the rows to fine-tune on changed since"):
        main(load_config(RFTConfig, None, overrides + ["data.extra_sft_rows=3", "sft.train.max_steps=3"]))
    with pytest.raises(ConfigError, match=r"holds the samples of an RFT run with other settings \(sampling.k: 4 -> 2"):
        main(load_config(RFTConfig, None, overrides + ["sampling.k=2"]))


@needs_sandbox
def test_rft_counts_unjudged_samples_and_stops_when_nothing_was_judged(tiny_model_dir, tmp_path, monkeypatch):
    from coder_align import sandbox
    from coder_align.sandbox.results import TestReport as Report

    monkeypatch.setattr(self_sampling, "sample", lambda model, tasks, sampling, run=None: answers(tasks))
    real = sandbox.check_many

    def first_unjudged(jobs, **kwargs):
        reports = real(jobs, **kwargs)
        return [Report(False, 0, 0, "unavailable", error="server died")] + reports[1:]

    monkeypatch.setattr(sandbox, "check_many", first_unjudged)
    base = [f"model.path={tiny_model_dir}", f"data.path={MBPP_TRAIN}", "data.max_rows=3", "sampling.k=4",
            "sft.train.max_steps=1", "sft.train.report_to=[]", "sft.train.disable_progress_bar=true",
            "sft.model.gradient_checkpointing=false", "sft.train.save_steps=1000"]
    summary = main(load_config(RFTConfig, None, base + [f"output_dir={tmp_path / 'a'}"]))
    # the first task's first (right) answer went unjudged: its duplicate is kept instead
    assert summary["unavailable"] == 1 and summary["dropped"]["unavailable"] == 1 and summary["rows_kept"] == 2
    assert "duplicate" not in summary["dropped"] or summary["dropped"]["duplicate"] == 1

    monkeypatch.setattr(sandbox, "check_many", lambda jobs, **kw: [Report(False, 0, 0, "unavailable") for _ in jobs])
    with pytest.raises(SandboxUnavailable, match="judged none of 12 samples"):
        main(load_config(RFTConfig, None, base + [f"output_dir={tmp_path / 'b'}"]))
    assert not (tmp_path / "b" / "judged.jsonl").exists()
