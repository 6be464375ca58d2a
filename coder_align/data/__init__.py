"""Data: files -> validated rows -> chat messages -> token ids + labels -> batches."""

from coder_align.data.collate import PackingCollator, PaddingCollator
from coder_align.data.records import DataError, read_conversations, row_to_messages
from coder_align.data.sft_dataset import SFTDataStats, build_sft_examples

__all__ = [
    "DataError",
    "PackingCollator",
    "PaddingCollator",
    "SFTDataStats",
    "build_sft_examples",
    "read_conversations",
    "row_to_messages",
]
