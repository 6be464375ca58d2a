"""Repository-level pretraining corpus (DeepSeek-Coder style).

- ``build_corpus(repos, out, ...)``: walk, filter, dedup, decontaminate, order files by
  dependency and write one JSONL sample per connected component (build.py plans the build
  and runs it through datatrove's executors: local processes, Slurm or Ray; pipeline.py holds
  the stages).
- ``repo.order_files(files, seed)``: the reference ordering algorithm on its own.

``build_corpus`` and ``order_files`` are imported on first use, so importing this package
does not load datasketch or the tree-sitter grammars.
Not here: the FIM transform (``coder_align/fim.py``: pretraining, SFT and eval use it, the
corpus build does not; its old names here are deprecated aliases), tokenization, packing
and training (``coder_align/pretrain.py``).
"""

import warnings

__all__ = ["build_corpus", "order_files"]
_MOVED_TO_FIM = ("apply_fim", "split_fim", "FIM_BEGIN", "FIM_HOLE", "FIM_END")


def __getattr__(name: str):
    if name in _MOVED_TO_FIM:
        import coder_align.fim

        warnings.warn(f"coder_align.corpus.{name} moved to coder_align.fim.{name}", DeprecationWarning, stacklevel=2)
        return getattr(coder_align.fim, name)
    if name == "build_corpus":
        from coder_align.corpus.build import build_corpus
        return build_corpus
    if name == "order_files":
        from coder_align.corpus.repo import order_files
        return order_files
    raise AttributeError(f"module 'coder_align.corpus' has no attribute {name!r}")
