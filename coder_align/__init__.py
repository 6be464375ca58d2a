"""coder_align: turn a code base model into an aligned code assistant.

Stages (one entry file each, every one a `main(config)`): `sft`, `grpo`, `pretrain`,
`evaluate`. Shared pieces: `templates`, `data`, `models`, `sandbox`, `rewards`.
"""

__version__ = "0.1.0"
