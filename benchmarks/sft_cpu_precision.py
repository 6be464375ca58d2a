"""CPU seconds per full fine-tuning step of the embedded model: fp32 vs bf16 autocast.

One forward + backward + AdamW step on a fixed packed batch (the first 4 rows of
benchmarks/data/sft_embedded/instruct.jsonl, DeepSeek template, empty system prompt), the two
modes interleaved over repeats. Process CPU time, not wall time, so that a machine shared
with other jobs still gives comparable figures.

    nice -n 10 python benchmarks/sft_cpu_precision.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from coder_align.data import PackingCollator  # noqa: E402
from coder_align.models import load_tokenizer, resolve_model_path  # noqa: E402
from coder_align.templates import tokenize  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer("embedded", system_prompt="")
    data = REPO / "benchmarks" / "data" / "sft_embedded" / "instruct.jsonl"
    rows = [json.loads(line) for line in data.open()][:args.rows]
    examples = [tokenize([{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}],
                         tokenizer, 768, "") for r in rows]
    batch = PackingCollator(768, tokenizer.pad_token_id)(examples)
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path("embedded"), dtype=torch.float32)
    model.resize_token_embeddings(len(tokenizer))
    model.config.use_cache = False
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-7)
    seconds = {"fp32": [], "bf16": []}
    for _ in range(args.repeats):
        for mode in seconds:
            start = time.process_time()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
                loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seconds[mode].append(time.process_time() - start)
    print(f"{batch['input_ids'].numel()} tokens per step, {torch.get_num_threads()} threads")
    for mode, values in seconds.items():
        print(f"{mode}: CPU s per step median {statistics.median(values):.1f} ({', '.join(f'{v:.1f}' for v in values)})")


if __name__ == "__main__":
    main()
