"""GRPO rollout tokens/s against the evaluation generator's, same model, prompts and machine, one run.

    python benchmarks/grpo_rollout_speed.py --prompts 8 --generations 8 --max-new-tokens 160

The model is the embedded SmolLM2-135M-Instruct (as `benchmarks/eval_speed.py` loads it),
trained as GRPO trains it (float32, LoRA r=16 unless `--peft none`). Prompts are the first
`--prompts` MBPP training tasks (`data_templates/mbpp_train.jsonl`), each sampled
`--generations` times at temperature 1.0, rendered with the run's chat template.

- `eval`: `evaluation.generation.generate_with_clipping`, as `eval run`, RFT and the
  difficulty filter generate (continuous batching, bf16 where native, a process per core),
  from the model loaded once.
- `rollout`: `evaluation.policy_generation.PolicyGenerator`, what `grpo.rollout_backend=eval_generator`
  runs: the same batching and processes on the policy's current weights; each repeat hands
  the weights over first (`update`, LoRA merged) and that time counts.
- `trl` (`--with-trl`): TRL's default path, `generate` on the float32 training policy in one
  batch (what the stage did before).
- `paged` (`--with-paged`): transformers' continuous batching, `generate_batch` (TRL's
  `use_transformers_paged`), bf16 where native, in this process.

Tokens are counted by re-tokenizing each completion's text, the same way for every
generator. Prints tokens/s per generator and repeat, their medians, the ratio rollout/eval,
and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load(peft: str):
    from coder_align.config import ModelConfig, PeftConfig
    from coder_align.data.grpo_rows import read_tasks
    from coder_align.models.loading import load_model, load_tokenizer
    from coder_align.run_dir import read_run

    run = read_run("embedded", None, None)
    tokenizer = load_tokenizer(run.tokenizer, run.template, run.system_prompt)
    policy = load_model(ModelConfig(path=run.weights, dtype="float32", gradient_checkpointing=False), tokenizer,
                        PeftConfig(method=peft, r=16, alpha=32, dropout=0.0), training=True, template=run.template,
                        train_new_tokens=False)
    tasks, _ = read_tasks(str(ROOT / "data_templates/mbpp_train.jsonl"), fmt="mbpp", task_ids="511-974",
                          training=True)
    return run, tokenizer, policy, tasks


def count(tokenizer, texts: list[str]) -> int:
    return sum(len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts)


def time_eval(run, tokenizer, texts, args) -> tuple[int, float]:
    from coder_align.evaluation.generation import (
        GenerationSettings, GeneratorSpec, generate_with_clipping, load_generator,
    )

    spec = GeneratorSpec(run=run)
    generator, _ = load_generator(spec)
    settings = GenerationSettings(n=args.generations, temperature=1.0, top_p=1.0, max_new_tokens=args.max_new_tokens,
                                  batch_size=args.batch_size, seed=0)
    started = time.perf_counter()
    out, _ = generate_with_clipping(spec, generator, texts, settings, [], add_special=False)
    seconds = time.perf_counter() - started
    return count(tokenizer, [t for group in out for t in group]), seconds


def time_rollout(generator, policy, tokenizer, ids, args, seed) -> tuple[int, float]:
    from coder_align.evaluation.policy_generation import Sampling
    from coder_align.models.loading import stop_token_ids

    sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=1.0, top_p=1.0, batch_size=args.batch_size,
                        stop_ids=tuple(stop_token_ids(tokenizer, "deepseek")), pad_id=tokenizer.pad_token_id)
    started = time.perf_counter()
    generator.update(policy)  # the per-step handover counts
    out = generator.generate([i for i in ids for _ in range(args.generations)], sampling, seed)
    seconds = time.perf_counter() - started
    return count(tokenizer, tokenizer.batch_decode(out, skip_special_tokens=True)), seconds


def time_trl(policy, tokenizer, ids, args) -> tuple[int, float]:
    import torch
    from transformers import GenerationConfig

    rows = [i for i in ids for _ in range(args.generations)]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, do_sample=True, temperature=1.0, top_p=1.0,
                              pad_token_id=pad, eos_token_id=policy.generation_config.eos_token_id)
    started = time.perf_counter()
    with torch.no_grad():
        out = policy.generate(input_ids=input_ids, attention_mask=mask, generation_config=config)
    seconds = time.perf_counter() - started
    return count(tokenizer, tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)), seconds


def time_paged(run, tokenizer, ids, args) -> tuple[int, float]:
    """transformers' continuous batching (`generate_batch`, TRL's `use_transformers_paged`), bf16 where native."""
    import torch
    from transformers import GenerationConfig

    from coder_align.config import ModelConfig
    from coder_align.evaluation.generation import generation_dtype
    from coder_align.models.loading import load_model

    model = load_model(ModelConfig(path=run.weights, dtype=generation_dtype("auto"), gradient_checkpointing=False),
                       tokenizer, None, training=False, template=run.template)
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, do_sample=True, temperature=1.0, top_p=1.0,
                              pad_token_id=tokenizer.pad_token_id, eos_token_id=model.generation_config.eos_token_id)
    started = time.perf_counter()
    with torch.no_grad():
        out = model.generate_batch([i for i in ids for _ in range(args.generations)], generation_config=config,
                                   progress_bar=False)
    seconds = time.perf_counter() - started
    texts = tokenizer.batch_decode([o.generated_tokens for o in out.values()], skip_special_tokens=True)
    return count(tokenizer, texts), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--peft", default="lora", choices=["lora", "none"])
    parser.add_argument("--with-trl", action="store_true", help="also time TRL's default generate path")
    parser.add_argument("--with-paged", action="store_true", help="also time transformers' generate_batch")
    args = parser.parse_args()

    from coder_align.evaluation.policy_generation import PolicyGenerator

    run, tokenizer, policy, tasks = load(args.peft)
    texts = [tokenizer.apply_chat_template(t["prompt"], tokenize=False, add_generation_prompt=True)
             for t in tasks[:args.prompts]]
    ids = [tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    generator = PolicyGenerator(policy)
    rates: dict[str, list[float]] = {"eval": [], "rollout": [], "trl": [], "paged": []}
    loads = []
    for repeat in range(args.repeats):
        order = ["eval", "rollout"] if repeat % 2 == 0 else ["rollout", "eval"]
        order += ["trl"] * args.with_trl + ["paged"] * args.with_paged
        for name in order:
            loads.append(os.getloadavg()[0])
            if name == "eval":
                tokens, seconds = time_eval(run, tokenizer, texts, args)
            elif name == "rollout":
                tokens, seconds = time_rollout(generator, policy, tokenizer, ids, args, seed=repeat)
            elif name == "trl":
                tokens, seconds = time_trl(policy, tokenizer, ids, args)
            else:
                tokens, seconds = time_paged(run, tokenizer, ids, args)
            rates[name].append(tokens / seconds)
            print(f"{name:8s} repeat {repeat}: {tokens} tokens in {seconds:.1f} s = {tokens / seconds:.1f} tokens/s "
                  f"(load average {loads[-1]:.1f})", flush=True)
    generator.close()
    medians = {k: statistics.median(v) for k, v in rates.items() if v}
    print(json.dumps({"median_tokens_per_s": {k: round(v, 1) for k, v in medians.items()},
                      "ratio_rollout_over_eval": round(medians["rollout"] / medians["eval"], 2),
                      **{f"ratio_{k}_over_eval": round(medians[k] / medians["eval"], 2)
                         for k in ("trl", "paged") if k in medians},
                      "load_average": [round(x, 1) for x in loads], "cpus": os.cpu_count(),
                      "args": vars(args)}, indent=1))


if __name__ == "__main__":
    main()
