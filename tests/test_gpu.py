"""GPU paths of the stages (`-m gpu`, bundle `train` of scripts/gpu_run.sh): bf16 training,
packing masks in bf16 kernels, ZeRO over NCCL, GRPO generation, batched eval generation.

Skipped without CUDA; CODER_ALIGN_GPU_TESTS_ON_CPU=1 dry-runs them on the CPU.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from coder_align.config import ModelConfig

from conftest import REPO_ROOT
from gpu_support import DATA, device, offline_model_dir, sft_config  # noqa: F401  (fixtures)

pytestmark = pytest.mark.gpu


def test_bf16_full_finetune_loss_falls(offline_model_dir, device, tmp_path):
    from coder_align.sft import main

    out = tmp_path / "bf16"
    # On a CPU dry run the Trainer refuses bf16 mixed precision; the weights are still bf16.
    summary = main(sft_config(offline_model_dir, out, "model.dtype=bfloat16",
                              f"train.precision={'bf16' if device == 'cuda' else 'fp32'}",
                              "train.max_steps=12", "train.learning_rate=3e-3"))
    assert summary["final_loss"] < summary["first_loss"] - 1.0, summary
    if device == "cuda":  # the tiny model's weights, gradients and Adam states hold a few MB
        assert 0 < summary["peak_gpu_memory_gb"] < 10
    else:
        assert summary["peak_gpu_memory_gb"] is None
    saved = json.loads((out / "config.json").read_text())
    assert saved["dtype"] == "bfloat16"  # trained and saved in bf16, not silently upcast


def packed_and_alone(model, a, b, restart_positions=True):
    """Logits of sample b alone, and of b inside the packed row a+b."""
    dev = next(model.parameters()).device
    ids = torch.tensor([a + b], device=dev)
    positions = list(range(len(a))) + list(range(len(b))) if restart_positions else list(range(len(a) + len(b)))
    with torch.no_grad():
        alone = model(torch.tensor([b], device=dev), use_cache=False).logits[0].float()
        packed = model(ids, position_ids=torch.tensor([positions], device=dev), use_cache=False).logits[0, len(a):]
    return alone, packed.float()


ATTENTION = ["sdpa", pytest.param("flash_attention_2", marks=pytest.mark.skipif(
    not torch.cuda.is_available() or __import__("importlib").util.find_spec("flash_attn") is None,
    reason="flash-attn not installed (or no CUDA)"))]


@pytest.mark.parametrize("attn", ATTENTION)
def test_packed_logits_equal_each_sample_alone_in_bf16(offline_model_dir, device, attn):
    from coder_align.models import load_model, load_tokenizer
    from coder_align.sft import check_packing_support

    tokenizer = load_tokenizer(str(offline_model_dir))
    model = load_model(ModelConfig(path=str(offline_model_dir), dtype="bfloat16", attn_implementation=attn),
                       tokenizer, training=False).to(device).eval()
    assert next(model.parameters()).dtype == torch.bfloat16
    check_packing_support(model)  # the stage's own probe: raises if packed samples see each other
    g = torch.Generator().manual_seed(1)
    a, b = (torch.randint(0, len(tokenizer), (n,), generator=g).tolist() for n in (37, 23))
    alone, packed = packed_and_alone(model, a, b)
    scale = alone.abs().max().item()
    assert (alone - packed).abs().max().item() <= 3e-2 * max(1.0, scale)  # bf16 rounding only
    # The control: the same row with positions that do not restart attends across samples.
    # transformers then sees one long causal sequence, so b's logits move far beyond rounding.
    leaked_alone, leaked = packed_and_alone(model, a, b, restart_positions=False)
    assert (leaked_alone - leaked).abs().max().item() > 10 * (alone - packed).abs().max().item() + 1e-3


def deepspeed_launcher():
    found = shutil.which("deepspeed") or os.path.join(os.path.dirname(sys.executable), "deepspeed")
    return found if os.path.exists(found) else None


@pytest.mark.skipif(deepspeed_launcher() is None, reason="deepspeed launcher not installed")
@pytest.mark.parametrize("stage,port", [("zero2", 29531), ("zero3", 29532)])
def test_deepspeed_zero_on_one_gpu_through_the_launcher(offline_model_dir, device, tmp_path, stage, port):
    out = tmp_path / stage
    cmd = [deepspeed_launcher(), "--num_gpus", "1", "--master_port", str(port), str(REPO_ROOT / "coder_align" / "sft.py"),
           f"model.path={offline_model_dir}", f"data.path={DATA}", f"train.output_dir={out}",
           f"train.deepspeed=configs/deepspeed/{stage}.json", "train.max_steps=4", "train.warmup_steps=0",
           "train.learning_rate=1e-3", "train.per_device_train_batch_size=4", "train.report_to=[]",
           "model.dtype=bfloat16", f"train.precision={'bf16' if device == 'cuda' else 'fp32'}",
           "data.max_length=256", "train.disable_progress_bar=true"]
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=400)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    if device == "cuda":
        assert "nccl" in log.lower(), "the process group must be NCCL on a GPU"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["final_loss"] == summary["final_loss"]  # not NaN

    from transformers import AutoModelForCausalLM

    trained = AutoModelForCausalLM.from_pretrained(out)  # ZeRO-3: gathered 16-bit weights, not empty shards
    original = AutoModelForCausalLM.from_pretrained(offline_model_dir)
    w, w0 = trained.model.layers[0].mlp.up_proj.weight, original.model.layers[0].mlp.up_proj.weight
    assert w.shape == w0.shape and not torch.equal(w.float(), w0.float())


def test_grpo_steps_generate_with_transformers(offline_model_dir, device, tmp_path):
    from coder_align.config import load_config
    from coder_align.grpo import GRPOConfig, main

    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"task_id": i, "prompt": f"Write f{i}(x) returning x + {i}.",
                                        "tests": [f"assert f{i}(1) == {1 + i}"]}) + "\n" for i in range(4)))
    out = tmp_path / "grpo"
    # The format reward needs no sandbox (the GPU machine may lack bubblewrap); the wiring is the same.
    summary = main(load_config(GRPOConfig, None, [
        f"model.path={offline_model_dir}", f"data.path={rows}", f"train.output_dir={out}", "train.report_to=[]",
        "train.disable_progress_bar=true", "train.save_steps=1000", "train.max_steps=2", "model.dtype=bfloat16",
        f"train.precision={'bf16' if device == 'cuda' else 'fp32'}", "grpo.num_generations=4",
        "grpo.max_completion_length=24", "train.per_device_train_batch_size=8", "grpo.rewards={format: 1.0}",
        "model.gradient_checkpointing=false"]))
    assert summary["steps"] == 2
    for key in ("timing/generation_s", "timing/reward_s", "timing/step_s", "completions/mean_length"):
        assert summary["last"].get(key) is not None, key
    assert summary["last"]["completions/mean_length"] > 0
    records = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert len(records) == 16 and all(r["rewards"]["format_reward"] in (0.0, 1.0) for r in records)


def test_eval_generation_batched_equals_one_at_a_time(offline_model_dir, device):
    """Left-padded batches must not change greedy answers (fp32, TF32 off: exact)."""
    from coder_align.evaluation.generation import GenerationSettings, HFGenerator
    from coder_align.models import load_model, load_tokenizer, stop_token_ids

    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        tokenizer = load_tokenizer(str(offline_model_dir))
        model = load_model(ModelConfig(path=str(offline_model_dir), dtype="float32"), tokenizer, training=False)
        generator = HFGenerator(model.to(device), tokenizer, stop_token_ids(tokenizer))
        prompts = ["def add(a, b):\n", "# sort a list\ndef sort_list(xs):\n    return",
                   "class Stack:\n    def __init__(self):\n        self.items = []\n    def push(self, x):",
                   "import os\n", "x = [i * i for i in range(10)]\nprint(", "def fib(n):\n    if n < 2:"]
        batched = generator.generate(prompts, GenerationSettings(max_new_tokens=12, batch_size=4), stops=[])
        alone = generator.generate(prompts, GenerationSettings(max_new_tokens=12, batch_size=1), stops=[])
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    assert batched == alone
    assert any(text[0] for text in alone), "the model generated something"
