"""Issue 27, item 5: the CLI hides warnings known to be harmless, narrowly by message, keeps every
other one, and the library used from Python leaves warnings alone."""

from __future__ import annotations

import subprocess
import sys

from conftest import cli_env

EMIT = """
import logging, warnings
warnings.simplefilter("default")  # show each warning, as a fresh interpreter would once
{setup}
for category, text in [
    (FutureWarning, "`is_gradient_checkpointing` is deprecated and will be removed in v6."),
    (UserWarning, "'pin_memory' argument is set as true but no accelerator is found, then device pinned memory won't be used."),
    (UserWarning, "Setting `save_embedding_layers` to `True` as the embedding layer has been resized during finetuning."),
    (UserWarning, "a real warning about pin_memory"),
]:
    warnings.warn(text, category)
logging.getLogger("bitsandbytes.backends.cpu.ops").warning("Failed to load CPU gemm_4bit_forward from kernels-community: x")
logging.getLogger("bitsandbytes.backends.cpu.ops").warning("a real bitsandbytes problem")
logging.getLogger("DeepSpeed").warning("Setting accelerator to CPU. If you have GPU or other accelerator, ...")
"""

KNOWN = ["is_gradient_checkpointing", "'pin_memory' argument", "save_embedding_layers", "gemm_4bit_forward",
         "Setting accelerator to CPU"]
REAL = ["a real warning about pin_memory", "a real bitsandbytes problem"]


def stderr_of(setup: str, env_extra: dict | None = None) -> str:
    env = {k: v for k, v in cli_env().items() if k != "CODER_ALIGN_QUIET_KNOWN_WARNINGS"}
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-c", EMIT.format(setup=setup)], capture_output=True, text=True,
                          env=env, timeout=120, check=True)
    return proc.stderr


def test_the_cli_hides_known_harmless_warnings_and_keeps_real_ones():
    err = stderr_of("from coder_align.cli import quiet_known_noise; quiet_known_noise()")
    assert not [k for k in KNOWN if k in err], err
    assert all(r in err for r in REAL), err


def test_processes_the_cli_starts_are_quiet_too():
    # eval's generation workers call this first (evaluation.generation._generate_shard)
    setup = "from coder_align.cli import quiet_if_started_by_cli; quiet_if_started_by_cli()"
    err = stderr_of(setup, {"CODER_ALIGN_QUIET_KNOWN_WARNINGS": "1"})
    assert not [k for k in KNOWN if k in err] and all(r in err for r in REAL), err
    err = stderr_of(setup)  # the same call from Python, not under the CLI: nothing hidden
    assert all(k in err for k in KNOWN + REAL), err


def test_the_library_from_python_leaves_warnings_alone():
    err = stderr_of("import coder_align, coder_align.sft, coder_align.cli")
    assert all(k in err for k in KNOWN + REAL), err
