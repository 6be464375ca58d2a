"""QLoRA with bitsandbytes' CUDA kernels (`-m gpu`, bundle `qlora` of scripts/gpu_run.sh).

Skipped without CUDA; CODER_ALIGN_GPU_TESTS_ON_CPU=1 dry-runs them on bitsandbytes' CPU backend.
"""

import pytest
import torch

from coder_align.config import ModelConfig, PeftConfig

from gpu_support import device, offline_model_dir, sft_config  # noqa: F401  (fixtures)

pytestmark = pytest.mark.gpu


def test_qlora_model_is_4bit_on_the_device_and_trains(offline_model_dir, device, tmp_path):
    bnb = pytest.importorskip("bitsandbytes")
    from coder_align.models import load_model, load_tokenizer
    from coder_align.sft import main

    tokenizer = load_tokenizer(str(offline_model_dir))
    model = load_model(ModelConfig(path=str(offline_model_dir), dtype="bfloat16"), tokenizer,
                       PeftConfig(method="qlora", r=8, alpha=16, dropout=0.0), training=True)
    quantized = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(quantized) == 14  # 7 projections x 2 layers
    assert all(m.weight.device.type == device and m.weight.quant_state.quant_type == "nf4" for m in quantized)
    ids = torch.randint(0, len(tokenizer), (2, 32), device=device)
    model.train()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    del model

    summary = main(sft_config(offline_model_dir, tmp_path / "qlora", "peft.method=qlora", "model.dtype=bfloat16",
                              f"train.precision={'bf16' if device == 'cuda' else 'fp32'}", "train.max_steps=10",
                              "train.learning_rate=1e-2"))
    assert summary["final_loss"] < summary["first_loss"] - 0.2, summary
    assert (tmp_path / "qlora" / "adapter_model.safetensors").is_file()
