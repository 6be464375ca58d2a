"""benchmarks/gpu_recipes.py on CPU (--tiny), so the GPU benchmark cannot rot between GPU visits,
and the pieces its figures rest on: the 4-bit quantisation of in-memory models, FLOP counts."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "gpu_recipes.py"
spec = importlib.util.spec_from_file_location("gpu_recipes", SCRIPT)
gpu_recipes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_recipes)


def run(tmp_path, *args, timeout=120):
    out = tmp_path / "results.json"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--out", str(out), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)
    return proc, json.loads(out.read_text()) if out.exists() else None


def test_tiny_full_finetune_runs_the_recipe_and_reports_its_figures(tmp_path):
    proc, payload = run(tmp_path, "--configs", "full-1.3b")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [r] = payload["results"]
    assert r["status"] == "ok" and r["config"] == "full-1.3b" and r["device"] == "cpu"
    # the recipe's settings, not defaults: its model, dtype, full fine-tuning, checkpointing
    assert r["model"] == "deepseek-ai/deepseek-coder-1.3b-base" and r["shape"] == "1.3b"
    assert r["dtype"] == "bfloat16" and r["peft"] == "none" and r["gradient_checkpointing"] is True
    assert r["parameters"] == r["trainable_parameters"] > 0
    assert r["tokens_per_second"] == pytest.approx(r["batch_size"] * r["seq"] * r["steps_timed"] / r["seconds"],
                                                   rel=0.01)
    assert all(1.0 < loss < 20.0 for loss in r["losses"])  # ~ln(vocab) for a random model: it really ran
    assert r["mfu"] is None and r["model_tflops_per_second"] > 0  # no bf16 peak is known for a CPU
    assert r["peak_rss_gb"] > 0
    assert "full-1.3b:" in proc.stdout and "tokens/s" in proc.stdout


@pytest.mark.slow
def test_tiny_every_configuration(tmp_path):
    proc, payload = run(tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = {r["config"]: r for r in payload["results"]}
    assert set(results) == set(gpu_recipes.CONFIGS) and all(r["status"] == "ok" for r in results.values())
    assert results["qlora-33b"]["peft"] == "qlora" and results["qlora-33b"]["trainable_parameters"] < \
        results["qlora-33b"]["parameters"]
    packing = results["packing-1.3b"]
    assert packing["modes"]["packing"]["padding_share"] == 0.0 < packing["modes"]["padding"]["padding_share"]
    zero = results["zero2-1.3b"]  # the real stage under the deepspeed launcher
    assert zero["steps"] == 3 and zero["tokens_per_second"] > 0 and zero["rows_used"] == 6
    grpo = results["grpo-1.3b"]["last_step"]
    assert grpo["generation_s"] > 0 and grpo["update_s"] > 0 and grpo["reward_s"] >= 0


def test_a_configuration_over_its_time_cap_is_recorded_and_the_rest_still_run(tmp_path):
    proc, payload = run(tmp_path, "--configs", "qlora-33b,full-1.3b", "--cap", "1")
    assert proc.returncode == 1  # not every configuration succeeded
    statuses = [r["status"] for r in payload["results"]]
    assert statuses == ["timeout", "timeout"]  # one second cannot even import torch: both time out,
    assert payload["results"][0]["cap_seconds"] == 1.0  # and the second still got its turn


def test_a_spent_budget_skips_what_is_left():
    class Args:
        budget, cap = 0, 100

    results = gpu_recipes.run_all(["full-1.3b"], type("A", (Args,), {"out": None, "tiny": True})())
    assert results[0]["status"] == "skipped"


def test_failures_are_told_apart():
    assert gpu_recipes.classify_failure(None, "") == "timeout"
    assert gpu_recipes.classify_failure(1, "torch.OutOfMemoryError: CUDA out of memory. Tried") == "oom"
    assert gpu_recipes.classify_failure(-9, "") == "oom"  # the kernel's OOM killer
    assert gpu_recipes.classify_failure(1, "ValueError: bad") == "error"


def test_peaks_and_model_flops():
    assert gpu_recipes.bf16_peak("NVIDIA H100 PCIe") == 756e12
    assert gpu_recipes.bf16_peak("NVIDIA H100 80GB HBM3") == gpu_recipes.bf16_peak("NVIDIA H200") == 989e12
    assert gpu_recipes.bf16_peak("Intel Xeon") is None
    # DeepSeek-Coder 1.3B at 2048 tokens: ~6 x 1.28e9 + attention
    from coder_align.models.random_weights import llama_config, non_embedding_parameters

    config = llama_config("1.3b")
    with torch.device("meta"):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_config(config)
    n = non_embedding_parameters(model)
    assert 1.25e9 < n < 1.30e9  # 1.346B with the input embedding (32256 x 2048)
    assert gpu_recipes.train_flops_per_token(n, 24, 2048, 2048) == 6 * n + 12 * 24 * 2048 * 2048


def test_in_memory_4bit_quantisation_matches_transformers_loading(tmp_path):
    """The benchmark quantises models that exist only in memory; it must build what
    from_pretrained(BitsAndBytesConfig(nf4, double quant)) builds from the same weights."""
    bnb = pytest.importorskip("bitsandbytes")
    import bitsandbytes.functional as F
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from coder_align.models.random_weights import llama_config, quantize_4bit_, random_model

    config = llama_config("33b", tiny=True)
    random_model(config, torch.bfloat16).save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16, quantization_config=BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16))
    ours = quantize_4bit_(random_model(config, torch.bfloat16))
    quantized = {n: m for n, m in loaded.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    mine = {n: m for n, m in ours.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert set(quantized) == set(mine) and len(mine) == 14 and "lm_head" not in mine  # 7 per layer
    for name, module in mine.items():
        state = module.weight.quant_state
        assert state.quant_type == "nf4" and state.nested  # double quantisation
        reference = quantized[name].weight
        assert torch.equal(F.dequantize_4bit(module.weight.data, state),
                           F.dequantize_4bit(reference.data, reference.quant_state)), name
    assert ours.is_loaded_in_4bit and loaded.is_loaded_in_4bit
    ids = torch.randint(0, config.vocab_size, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, loaded(ids).logits, atol=0.05, rtol=0.02)  # bf16 rounding


def test_quantisation_frees_each_bf16_weight_as_it_goes(monkeypatch):
    """A 33B model is 66 GB in bf16: holding every bf16 weight until the end of quantisation
    would not fit an 80 GB card next to the 4-bit copy."""
    import gc
    import weakref

    bnb = pytest.importorskip("bitsandbytes")
    from coder_align.models.random_weights import llama_config, quantize_4bit_, random_model

    model = random_model(llama_config("33b", tiny=True), torch.bfloat16)
    originals = [weakref.ref(m.weight) for n, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and n != "lm_head"]
    alive_at_each_quantisation = []
    to = bnb.nn.Params4bit.to

    def counting_to(self, *args, **kwargs):
        gc.collect()
        alive_at_each_quantisation.append(sum(r() is not None for r in originals))
        return to(self, *args, **kwargs)

    monkeypatch.setattr(bnb.nn.Params4bit, "to", counting_to)
    quantize_4bit_(model)
    assert len(alive_at_each_quantisation) == len(originals) == 14
    # the k-th quantisation sees only the weights not yet replaced (plus the one in hand)
    assert alive_at_each_quantisation == [len(originals) - k for k in range(len(originals))]
