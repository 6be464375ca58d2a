"""Issue 27, items 4, 7 and 8: a system prompt that fits the base model, progress and summaries
that say what they count, and torch threads sized for a shared machine."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from coder_align.config import load_config
from coder_align.run_dir import NEUTRAL_SYSTEM_PROMPT, read_run
from coder_align.templates import DEEPSEEK_SYSTEM_PROMPT

COMMON = ["train.report_to=[]", "train.disable_progress_bar=true", "model.gradient_checkpointing=false",
          "train.save_steps=1000", "train.warmup_steps=0", "train.logging_steps=1"]


@pytest.fixture(scope="module")
def sft_run(tiny_model_dir, tmp_path_factory):
    from coder_align.sft import SFTConfig, main

    tmp = tmp_path_factory.mktemp("sft")
    data = tmp / "rows.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Write f{i}().", "output": f"def f{i}():\n    return {i}"})
                            + "\n" for i in range(4)))
    out = tmp / "out"
    summary = main(load_config(SFTConfig, None, [f"model.path={tiny_model_dir}", f"data.path={data}",
                                                 f"train.output_dir={out}", "train.max_steps=3",
                                                 "train.per_device_train_batch_size=1", *COMMON]))
    return out, summary


# --- item 4: the system prompt -----------------------------------------------------------------

def test_a_non_deepseek_model_is_not_told_it_was_made_by_deepseek(sft_run):
    out, summary = sft_run
    saved_template = json.loads((out / "tokenizer_config.json").read_text()).get("chat_template") or (
        (out / "chat_template.jinja").read_text())
    assert "DeepSeek Company" not in saved_template and NEUTRAL_SYSTEM_PROMPT in saved_template
    note = summary["system_prompt"]
    assert note["text"] == NEUTRAL_SYSTEM_PROMPT and "non-DeepSeek" in note["source"]
    assert "data.system_prompt=" in note["to_change"]
    # recorded with the run, so the next stage prompts as SFT trained
    assert read_run(out).system_prompt == NEUTRAL_SYSTEM_PROMPT


def test_deepseek_models_keep_deepseeks_prompt(tmp_path):
    assert read_run("deepseek-ai/deepseek-coder-6.7b-base").system_prompt is None  # None: DeepSeek's
    local = tmp_path / "my-finetune"  # a DeepSeek tokenizer in a folder with any name
    local.mkdir()
    (local / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<\uff5cbegin\u2581of\u2581sentence\uff5c>"}))
    assert read_run(local).system_prompt is None
    assert read_run("embedded").system_prompt == NEUTRAL_SYSTEM_PROMPT
    assert read_run("embedded", system_prompt="").system_prompt == ""  # a chosen one wins


def test_eval_summary_names_the_prompt(tmp_path):
    from coder_align.templates import system_prompt_note

    assert system_prompt_note(None, "x")["text"] == DEEPSEEK_SYSTEM_PROMPT


# --- item 7: smoothed final loss, eval progress over all processes -------------------------------

def test_the_summary_has_a_smoothed_final_loss_beside_the_last_batch(sft_run):
    _, summary = sft_run
    assert summary["final_loss_smoothed_over"] == "mean of the last 3 logged losses"
    # 3 steps, each logged: the smoothed figure is their mean, which is also the Trainer's train_loss
    assert summary["final_loss_smoothed"] == pytest.approx(summary["train_loss"], abs=1e-3)
    assert summary["final_loss"] is not None


def test_loss_png_plots_the_smoothed_loss():
    from coder_align.training.plots import loss_figure

    history = [{"step": i, "loss": v, "learning_rate": 1e-4} for i, v in enumerate([2.0, 0.5, 0.1, 0.9], 1)]
    fig = loss_figure(history, "t")
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "mean of the last 4 logged losses" in labels
    dashed = next(line for line in fig.axes[0].get_lines() if line.get_label().startswith("mean"))
    assert dashed.get_ydata()[-1] == pytest.approx(0.875)


def test_eval_progress_counts_every_process(tiny_model_dir, caplog):
    from coder_align.evaluation.config import eval_config, generator_spec
    from coder_align.evaluation.generation import GenerationSettings, generate, load_generator

    config = eval_config(None, [f"model.path={tiny_model_dir}", "generation.processes=2", "generation.threads=1"])
    spec = generator_spec(config)
    generator, _ = load_generator(spec)
    prompts = [f"def f{i}():" for i in range(5)]
    with caplog.at_level(logging.INFO, logger="coder_align.evaluation.generation"):
        generate(spec, generator, prompts, GenerationSettings(max_new_tokens=3, batch_size=2), [], True)
    counts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("generated ")]
    assert counts and counts[-1] == "generated 5/5 completions", counts
    assert all(c.endswith("/5 completions") for c in counts), counts  # never a process's own share


# --- item 8: threads on a shared machine ------------------------------------------------------

def test_threads_follow_the_free_cores_not_the_machine(monkeypatch):
    from coder_align.models import threads

    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(threads, "own_load", lambda: 0.0)
    for load, expected in ((0.1, 4), (1.6, 2), (9.0, 1)):
        monkeypatch.setattr(threads.os, "getloadavg", lambda load=load: (load, load, load))
        assert threads.cpu_threads() == expected
    monkeypatch.setattr(threads, "own_load", lambda: 2.0)  # this process's own work is not another job
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (2.0, 2.0, 2.0))
    assert threads.cpu_threads() == 4


def test_training_and_generation_use_one_thread_on_a_busy_two_core_machine(monkeypatch):
    from types import SimpleNamespace

    from coder_align.evaluation.generation import GeneratorSpec, plan_processes
    from coder_align.models import threads
    from coder_align.sft import SFTConfig
    from coder_align.training.arguments import training_arguments

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (7.0, 7.0, 7.0))
    monkeypatch.setattr(threads, "own_load", lambda: 0.0)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        args = training_arguments(SFTConfig().train, False)
        assert torch.get_num_threads() == 1
        assert args.dataloader_pin_memory is False  # and no pin_memory warning on a CPU
        generator = SimpleNamespace(backend="transformers", model=torch.nn.Linear(2, 2))
        assert plan_processes(GeneratorSpec(run=None, processes=1), generator, 4) == (1, 1)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's choice stands
        torch.set_num_threads(2)
        assert threads.fit_threads_to_machine() is None and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


PARENT = """
import os, sys, time, multiprocessing
from concurrent.futures import ProcessPoolExecutor
from coder_align.evaluation.generation import _share_progress

if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    counter = context.Value("l", 0)
    with ProcessPoolExecutor(1, mp_context=context, initializer=_share_progress,
                             initargs=(counter, 1, os.getpid())) as pool:
        print(pool.submit(os.getpid).result(), flush=True)  # the child, initialised as eval's are
        pool.submit(time.sleep, 120)
        time.sleep(120)
"""


def test_generation_processes_end_when_their_parent_is_killed(tmp_path):
    """A killed eval (kill, the OOM killer, a session ending) took none of its spawned
    generation processes with it: they went on generating their share for nobody."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()

    def alive(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/status") as status:
                return "\nState:\tZ" not in status.read()
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(child):
        os.kill(child, signal.SIGKILL)
        pytest.fail("the generation process outlived its killed parent")
