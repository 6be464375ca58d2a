"""Repository-level pretraining corpus (DeepSeek-Coder style).

- ``build_corpus(repos, out, ...)``: walk, filter, dedup, decontaminate, order files by
  dependency and write one JSONL sample per connected component (build.py plans the build
  and runs it through datatrove's executors: local processes, Slurm or Ray; pipeline.py holds
  the stages, workfiles.py their files, records.py their records, stats and report).
- ``order_files(files, seed)``: the reference ordering algorithm on its own (repo.py).

Importing it loads neither datasketch nor the tree-sitter grammars: both load on first use.

Not here: the FIM transform (``coder_align/fim.py``: pretraining, SFT and eval use it, the
corpus build does not), tokenization, packing and training (``coder_align/pretrain.py``).
"""

from coder_align.corpus.build import build_corpus
from coder_align.corpus.repo import order_files

__all__ = ["build_corpus", "order_files"]
