"""Repository-level pretraining corpus (DeepSeek-Coder style) and the FIM transform.

- ``build_corpus(repos, out, ...)``: walk, filter, dedup, decontaminate, order files by
  dependency and write one JSONL sample per connected component (build.py).
- ``repo.order_files(files, seed)``: the reference ordering algorithm on its own.
- ``fim.apply_fim(text, rng, ...)``: fill-in-the-middle, used by pretraining and SFT.

``build_corpus`` and ``order_files`` are imported on first use, so importing the FIM
transform does not load datasketch or the tree-sitter grammars.
Not here: tokenization, packing and training (``coder_align/pretrain.py``).
"""

from coder_align.corpus.fim import FIM_BEGIN, FIM_END, FIM_HOLE, apply_fim, split_fim

__all__ = ["build_corpus", "order_files", "apply_fim", "split_fim", "FIM_BEGIN", "FIM_HOLE", "FIM_END"]


def __getattr__(name: str):
    if name == "build_corpus":
        from coder_align.corpus.build import build_corpus
        return build_corpus
    if name == "order_files":
        from coder_align.corpus.repo import order_files
        return order_files
    raise AttributeError(f"module 'coder_align.corpus' has no attribute {name!r}")
