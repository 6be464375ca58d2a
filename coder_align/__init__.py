"""coder_align: turn a code base model into an aligned code assistant.

Stages, one entry file each at the top, every one a `main(config)` that reads top to bottom:
`sft`, `pretrain`, `grpo`, `rft`, `reward_model`, `evaluate`. Under them, one package per role
(`rewards`, `sandbox`, `evaluation`, `training`, `models`, `data`, `datagen`, `corpus`,
`benchmarks`), and the foundations every layer uses (`config`, `run_dir`, `templates`, `fim`,
`cli`). Imports run one way, from the stages down; README's "Architecture" has the map.
"""

from coder_align import _moved

__version__ = "0.1.0"

_moved.install()  # old import paths of moved modules warn and keep working for one release
