"""Import paths of modules that moved in 0.1's redesign, kept working for one release.

`import coder_align.merge` (or `from coder_align.reward_set import RewardSet`) still works and
warns with the new path. The table is the only record of the old layout: no alias files are
left beside the new ones. A path whose module was split names every module its names went to,
searched in order. Remove the table in the release after 0.1.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

MOVED = {
    "coder_align.merge": ("coder_align.models.merge",),
    "coder_align.random_models": ("coder_align.models.random_weights",),
    "coder_align.plots": ("coder_align.training.plots",),
    "coder_align.grpo_trainer": ("coder_align.training.trainers",),
    "coder_align.rm_trainer": ("coder_align.training.trainers",),
    "coder_align.rm_reward": ("coder_align.rewards.reward_model",),
    "coder_align.reward_set": ("coder_align.rewards.reward_set", "coder_align.rewards.registry"),
    "coder_align.preflight": ("coder_align.sandbox.preflight",),
    "coder_align.self_sampling": ("coder_align.datagen.self_sampling", "coder_align.datagen.verdicts"),
    "coder_align.difficulty": ("coder_align.datagen.difficulty",),
    "coder_align.rm_data": ("coder_align.datagen.rm_data",),
    "coder_align.mutants": ("coder_align.datagen.mutants",),
    "coder_align.data.cli": ("coder_align.datagen.cli",),
    "coder_align.data.docstrings": ("coder_align.datagen.docstrings", "coder_align.datagen.function_source"),
    "coder_align.data.licences": ("coder_align.datagen.licences",),
    "coder_align.data.mbpp_sft": ("coder_align.datagen.mbpp_sft",),
    "coder_align.corpus.decontam": ("coder_align.benchmarks.decontam",),
}


class _Alias(types.ModuleType):
    """The old module: its names looked up in the new modules, in order. A module of its own,
    not the new one under a second name (the import system would rewrite the new one's
    `__spec__`)."""

    def __init__(self, name: str, targets: list[types.ModuleType]):
        super().__init__(name, f"moved to {', '.join(t.__name__ for t in targets)}")
        self._targets = targets

    def __getattr__(self, attr: str):
        for target in self._targets:
            if hasattr(target, attr):
                return getattr(target, attr)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r} (it moved to "
                             f"{', '.join(t.__name__ for t in self._targets)})")


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Last on `sys.meta_path`: asked only for a name no real module answers to."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {' and '.join(new)}; the old path works until the next release",
                      FutureWarning, stacklevel=2)
        return _Alias(spec.name, [importlib.import_module(name) for name in new])

    def exec_module(self, module):
        pass  # the target modules ran when they were imported


def install() -> None:
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
