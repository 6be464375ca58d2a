"""Torch threads on a shared CPU: every core (torch's default) against the free ones
(`coder_align/models/threads.py`), same generation, one run.

    python benchmarks/torch_threads.py --busy 2 --repeats 3

Each measurement runs in a fresh process: the embedded SmolLM2-135M-Instruct in float32, one
short warm-up, then `model.generate` on `--prompts` MBPP prompts in one batch, greedy,
exactly `--new-tokens` tokens each (EOS ignored, so both sides do the same work). Side A uses
`--threads-a` threads (default: every usable core, what torch picks by itself); side B the
threads `models.threads.cpu_threads()` picks for the load at that moment (or `--threads-b`).
They run A B A B ...

`--busy N` starts N processes that spin for the whole run: the other jobs of a shared machine,
made here so the figure can be re-run on a quiet machine too. Whatever else runs adds to them;
the load average is printed beside every measurement. Prints seconds per run, the medians and
the ratio A/B.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure(threads: int | None, prompts: int, new_tokens: int) -> dict:
    """One side, in this (fresh) process: seconds for the timed generate."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from coder_align.data.grpo_rows import read_tasks
    from coder_align.models.loading import resolve_model_path
    from coder_align.models.threads import cpu_threads

    chosen = threads or cpu_threads()
    torch.set_num_threads(chosen)
    path = resolve_model_path("embedded")
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tasks, _ = read_tasks(str(ROOT / "data_templates/mbpp_train.jsonl"), fmt="mbpp", task_ids="601-974")
    texts = [tokenizer.apply_chat_template(t["prompt"], tokenize=False, add_generation_prompt=True)
             for t in tasks[:prompts]]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    settings = dict(do_sample=False, pad_token_id=tokenizer.pad_token_id or 0)
    with torch.inference_mode():
        model.generate(**batch, max_new_tokens=4, min_new_tokens=4, **settings)  # warm-up
        load = os.getloadavg()[0]
        started = time.perf_counter()
        out = model.generate(**batch, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **settings)
        seconds = time.perf_counter() - started
    tokens = (out.shape[1] - batch["input_ids"].shape[1]) * out.shape[0]
    return {"threads": chosen, "seconds": round(seconds, 2), "tokens": tokens, "load": round(load, 2)}


def spin() -> None:
    while True:
        pass


def run_side(threads: int | None, args) -> dict:
    command = [sys.executable, __file__, "--worker", str(threads or 0), "--prompts", str(args.prompts),
               "--new-tokens", str(args.new_tokens)]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # the side decides
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    from coder_align.models.threads import usable_cores

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads-a", type=int, default=None, help="default: every usable core (torch's own choice)")
    p.add_argument("--threads-b", type=int, default=None, help="default: models.threads.cpu_threads() at the time")
    p.add_argument("--busy", type=int, default=0, help="spinning processes started for the run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker is not None:
        print(json.dumps(measure(args.worker or None, args.prompts, args.new_tokens)))
        return

    spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.busy)]
    for s in spinners:
        s.start()
    time.sleep(20 if spinners else 0)  # let the 1-minute load average see them before side B reads it
    threads_a = args.threads_a or usable_cores()
    results = {"A": [], "B": []}
    try:
        for i in range(args.repeats):
            for side, threads in (("A", threads_a), ("B", args.threads_b)):
                r = run_side(threads, args)
                results[side].append(r)
                print(f"repeat {i + 1} {side}: {r['threads']} threads, {r['seconds']:.1f} s for {r['tokens']} tokens "
                      f"(load {r['load']})", flush=True)
    finally:
        for s in spinners:
            s.terminate()
    a = statistics.median(r["seconds"] for r in results["A"])
    b = statistics.median(r["seconds"] for r in results["B"])
    threads_b = sorted({r["threads"] for r in results["B"]})
    print(f"{usable_cores()} usable cores, {args.busy} spinning processes started")
    print(f"A ({threads_a} threads): median {a:.1f} s; B ({'/'.join(map(str, threads_b))} threads, as the load "
          f"picks): median {b:.1f} s; A/B {a / b:.2f}x")


if __name__ == "__main__":
    main()
