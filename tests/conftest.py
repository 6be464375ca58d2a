"""Shared fixtures: the embedded tokenizer and a tiny random Llama saved with it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DATA_TEMPLATES = REPO_ROOT / "data_templates"

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def cli_command(*args: str) -> list[str]:
    """`coder-align ARGS` through this interpreter, so tests use this checkout's code."""
    return [sys.executable, "-m", "coder_align.cli", *args]


def cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="session")
def tokenizer():
    """The embedded SmolLM2 tokenizer with <|EOT|> and the DeepSeek chat template."""
    from coder_align.models import load_tokenizer

    return load_tokenizer("embedded")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    """A 2-layer random Llama (untied head) saved with the tokenizer: real files, tiny shapes."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(
        vocab_size=len(tokenizer) - 1,  # one short, so loading must grow it for <|EOT|>
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    from transformers import AutoTokenizer

    # Save the plain tokenizer (without <|EOT|>) so loading exercises adding it.
    from coder_align.models import resolve_model_path

    AutoTokenizer.from_pretrained(resolve_model_path("embedded")).save_pretrained(path)
    return path
