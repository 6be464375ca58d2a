"""Tokenize conversations for SFT, dropping (and counting) what cannot be trained on."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from dataclasses import dataclass, field

from coder_align.data.records import MAX_EXAMPLES, read_conversations
from coder_align.fim import apply_fim
from coder_align.templates import IGNORE_INDEX, special_prefix_ids, tokenize, tokenize_with_model_template


@dataclass
class SFTDataStats:
    rows_read: int = 0
    rows_used: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> rows
    dropped_examples: list[str] = field(default_factory=list)  # the first dropped rows, "file:line: reason"
    truncated: int = 0
    code_rows: int = 0  # plain code documents (FIM-able), the rest are conversations
    files: dict = field(default_factory=dict)  # path -> {"rows_read", "weight", "rows_weighted"}, with data.mix
    tokens: int = 0
    supervised_tokens: int = 0

    def as_dict(self) -> dict:
        return {
            "rows_read": self.rows_read,
            "rows_used": self.rows_used,
            "rows_dropped": sum(self.dropped.values()),
            "dropped_by_reason": dict(sorted(self.dropped.items())),
            "dropped_examples": list(self.dropped_examples),
            "rows_prompt_truncated": self.truncated,
            "code_rows": self.code_rows,
            "tokens": self.tokens,
            "supervised_tokens": self.supervised_tokens,
            **({"files": self.files} if self.files else {}),
        }


def tokenize_conversation(messages, tokenizer, data_config):
    """Ids and labels for one conversation under the configured template, or None to drop it."""
    truncate = data_config.overlong == "truncate_prompt"
    if data_config.template == "model":
        return tokenize_with_model_template(messages, tokenizer, data_config.max_length, truncate)
    return tokenize(messages, tokenizer, data_config.max_length, data_config.system_prompt, truncate)


def tokenize_code_document(text, tokenizer, data_config, rng):
    """A plain code row: FIM at `fim_rate` (so an instruct model keeps infilling), loss on every
    token as in pretraining, EOS at the end. None when it does not fit `max_length`."""
    text = apply_fim(text, rng, data_config.fim_rate, data_config.fim_spm_rate)
    ids = special_prefix_ids(tokenizer) + tokenizer(text, add_special_tokens=False)["input_ids"]
    ids.append(tokenizer.eos_token_id)
    if data_config.max_length is not None and len(ids) > data_config.max_length:
        return None
    prefix = len(special_prefix_ids(tokenizer))
    return {"input_ids": ids, "labels": [IGNORE_INDEX] * prefix + ids[prefix:]}


def weighted(items: list, weight: float, rng: random.Random) -> list:
    """`items` used `weight` times: whole copies, then a random share for the fraction.

    >>> len(weighted(list(range(10)), 2.5, random.Random(0))), weighted([1, 2], 1.0, random.Random(0))
    (25, [1, 2])
    """
    whole, fraction = int(weight), weight - int(weight)
    return items * whole + rng.sample(items, round(fraction * len(items)))


def read_sources(data_config, stats: SFTDataStats) -> list:
    """(messages or code text, where) of `data.path` and the `data.mix` files, each weighted."""
    sources = {data_config.path: 1.0, **data_config.mix}
    rng = random.Random(f"mix-{data_config.seed}")  # apart from the FIM draws, which stay as without a mix
    conversations = []
    for path, weight in sources.items():
        rows, read_stats = read_conversations(path, data_config.split, data_config.on_invalid, data_config.max_rows)
        stats.rows_read += read_stats.rows_read
        stats.dropped.update({f"invalid:{k}": v for k, v in read_stats.invalid.items()})
        stats.dropped_examples += read_stats.examples[:MAX_EXAMPLES - len(stats.dropped_examples)]
        used = weighted(rows, weight, rng) if weight != 1.0 else rows
        if len(sources) > 1:
            stats.files[path] = {"rows_read": read_stats.rows_read, "weight": weight, "rows_weighted": len(used)}
        conversations += used
    return conversations


def read_sft_rows(data_config) -> tuple[list, SFTDataStats]:
    """Read and validate `data_config.path` (and `data.mix`) without a tokenizer, so a stage
    can refuse bad data before any model (or GGUF conversion) loads."""
    stats = SFTDataStats()
    return read_sources(data_config, stats), stats


def build_sft_examples(data_config, tokenizer, rows: tuple[list, SFTDataStats] | None = None
                       ) -> tuple[list[dict], SFTDataStats]:
    """Tokenize the rows `read_sft_rows` read (read here when `rows` is None); every dropped
    row is counted by reason."""
    conversations, stats = rows if rows is not None else read_sft_rows(data_config)

    def drop(reason: str, where: str) -> None:
        stats.dropped[reason] += 1
        if len(stats.dropped_examples) < MAX_EXAMPLES:
            stats.dropped_examples.append(f"{where}: {reason}")

    examples = []
    rng = random.Random(data_config.seed)
    for messages, where in conversations:
        if isinstance(messages, str):
            example = tokenize_code_document(messages, tokenizer, data_config, rng)
            if example is None:
                drop("too_long", where)
                continue
            stats.code_rows += 1
            _count(stats, example, examples)
            continue
        full = tokenize_conversation(messages, tokenizer, dataclasses.replace(data_config, max_length=None))
        if full is None:
            drop("no_labels", where)
            continue
        example = full
        if data_config.max_length is not None and len(full["input_ids"]) > data_config.max_length:
            example = tokenize_conversation(messages, tokenizer, data_config)
            if example is None:
                # Keeping it would train on a response whose <|EOT|> was cut off.
                drop("too_long", where)
                continue
            stats.truncated += 1
        _count(stats, example, examples)
    return examples, stats


def _count(stats, example, examples):
    stats.rows_used += 1
    stats.tokens += len(example["input_ids"])
    stats.supervised_tokens += sum(1 for label in example["labels"] if label != IGNORE_INDEX)
    examples.append(example)
