"""Fixtures for the GPU tests (`-m gpu`): the device, and a tiny model that needs no hub.

The GPU machine has no embedded GGUF model and no network, so these tests build their own
tokenizer and random model (coder_align.models.random_weights). They skip without CUDA; with
CODER_ALIGN_GPU_TESTS_ON_CPU=1 they dry-run on the CPU, so they are checked between GPU visits.
"""

from __future__ import annotations

import os

import pytest
import torch

from conftest import DATA_TEMPLATES

DATA = str(DATA_TEMPLATES / "instruction_output.jsonl")


@pytest.fixture(scope="session")
def device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if os.environ.get("CODER_ALIGN_GPU_TESTS_ON_CPU") == "1":
        return "cpu"
    pytest.skip("needs a CUDA GPU (CODER_ALIGN_GPU_TESTS_ON_CPU=1 dry-runs the GPU tests on the CPU)")


@pytest.fixture(scope="session")
def offline_model_dir(tmp_path_factory, device):
    """A 2-layer random Llama (DeepSeek-Coder 1.3B's structure, tiny) with a BPE tokenizer trained offline."""
    from coder_align.models.random_weights import save_random_model

    return save_random_model(tmp_path_factory.mktemp("offline-model"), "1.3b", tiny=True, dtype=torch.float32)


def sft_config(model_dir, out, *overrides):
    from coder_align.config import load_config
    from coder_align.sft import SFTConfig

    return load_config(SFTConfig, None, [
        f"model.path={model_dir}", f"data.path={DATA}", f"train.output_dir={out}", "data.max_length=256",
        "train.warmup_steps=0", "train.report_to=[]", "train.disable_progress_bar=true", "train.save_steps=1000",
        "train.per_device_train_batch_size=4", "model.gradient_checkpointing=true", *overrides,
    ])
