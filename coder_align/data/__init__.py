"""Data: files -> validated rows -> chat messages -> token ids + labels -> batches.

- `records`: reading JSONL / JSON / parquet / hub rows, each error naming file, line and field.
- `sft_dataset`: SFT rows tokenized with the template's loss mask (and FIM for code rows).
- `collate`: padding and padding-free packing collators.
- `grpo_rows`: task rows with tests (GRPO, RFT, the difficulty filter, eval's custom tasks).
- `rm_rows`: reward-model rows and their (passing, failing) pairs.

Not here: making new data (`coder_align.datagen`), the template itself (`coder_align.templates`).
"""

from coder_align.data.collate import PackingCollator, PaddingCollator
from coder_align.data.records import DataError, read_conversations, row_to_messages
from coder_align.data.sft_dataset import SFTDataStats, build_sft_examples, read_sft_rows

__all__ = [
    "DataError",
    "PackingCollator",
    "PaddingCollator",
    "SFTDataStats",
    "build_sft_examples",
    "read_conversations",
    "read_sft_rows",
    "row_to_messages",
]
