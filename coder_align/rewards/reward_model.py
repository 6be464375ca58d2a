"""A trained reward model as a GRPO reward, and the scoring both training and the reward share.

    grpo.rewards='{unit_test: 0.5, reward_model: 0.5}' grpo.reward_kwargs='{reward_model: {path: outputs/rm}}'

`reward_model_reward(completions, prompts, path=...)` has TRL's reward shape: it loads the
reward model saved by `coder-align rm train` once per process (cached by path and device),
renders each prompt + completion with the template and system prompt the reward model was
trained with (which are the policy's: see the stage `coder_align/reward_model.py`), and scores them in batches on
the model's device (the GPU when there is one). With `transform="sigmoid"` (the default) a
score is in (0, 1), on the scale of `unit_test`, so the two combine by weight; "raw" gives the
logit. GRPO then normalises the weighted sum within each group like any reward.

Also here: `score_ids` (batched forward passes of a sequence-classification model) and the
two measures the stage reports, `auc` and `pairwise_accuracy`.

    >>> auc([0.9, 0.8, 0.1, 0.3], [True, False, False, False])
    1.0
    >>> pairwise_accuracy([(2.0, 1.0), (0.0, 1.0), (1.0, 1.0)])
    0.5

Not here: training (the stage, `coder_align/reward_model.py`), judging code (`coder_align.sandbox`).
"""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path

from coder_align.config import ConfigError
from coder_align.data.rm_rows import prompt_messages
from coder_align.models.loading import (
    fit_embeddings, load_tokenizer, resolve_dtype, resolve_model_path, score_head_expected,
)
from coder_align.rewards.execution import completion_text
from coder_align.run_dir import read_run
from coder_align.templates import special_prefix_ids, tokenize, tokenize_with_model_template

log = logging.getLogger(__name__)


def auc(scores: list[float], labels: list[bool]) -> float | None:
    """Area under the ROC curve: the chance that a random positive scores above a random
    negative, ties counting half (Mann-Whitney U). None without both classes."""
    positives = sum(1 for y in labels if y)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):  # average ranks over ties
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, y in zip(ranks, labels) if y)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def pairwise_accuracy(pair_scores: list[tuple[float, float]]) -> float | None:
    """Share of (passing, failing) pairs the model orders right; a tie counts half (chance is 0.5)."""
    if not pair_scores:
        return None
    return sum(1.0 if good > bad else 0.5 if good == bad else 0.0 for good, bad in pair_scores) / len(pair_scores)


def score_ids(model, ids: list[list[int]], pad_token_id: int, batch_size: int = 8) -> list[float]:
    """One score per token-id list; batches of similar length, right-padded (the head reads each
    row's last non-pad token, as in training)."""
    import torch

    device = next(model.parameters()).device
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    scores = [0.0] * len(ids)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            width = max(len(ids[i]) for i in idx)
            input_ids = torch.full((len(idx), width), pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                input_ids[row, :len(ids[i])] = torch.tensor(ids[i])
                mask[row, :len(ids[i])] = 1
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
            for row, value in zip(idx, logits[:, 0].float().tolist()):  # (B, 1) -> B
                scores[row] = value
    model.train(was_training)
    return scores


def encode(messages: list[dict], completion: str, tokenizer, template: str, system_prompt: str | None,
           max_length: int | None, overlong: str = "drop") -> list[int] | None:
    """Token ids of prompt + completion exactly as the policy's template renders them (pieces
    tokenized separately, as SFT does), or None when over `max_length` and not truncatable."""
    conversation = [*messages, {"role": "assistant", "content": completion}]
    truncate = overlong == "truncate_prompt"
    if template == "model":
        out = tokenize_with_model_template(conversation, tokenizer, max_length, truncate)
    else:
        out = tokenize(conversation, tokenizer, max_length, system_prompt, truncate)
    return out["input_ids"] if out else None


class RewardModelScorer:
    """A saved reward model (full weights or LoRA adapter) with the tokenizer and template it was trained with."""

    def __init__(self, path: str | Path, device: str | None = None):
        import torch

        self.path = str(path)
        run = read_run(self.path)
        if run.stage != "reward_model":
            raise FileNotFoundError(f"{path}: not a reward model directory (no summary.json or "
                                    "coder_align_config.yaml of `coder-align rm train`)")
        data = run.config.get("data") or {}
        self.template, self.system_prompt = run.template, run.system_prompt
        self.max_length = data.get("max_length")
        self.tokenizer = load_tokenizer(run.tokenizer, run.template, run.system_prompt)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_reward_model(run, self.tokenizer, self.device)
        self.truncated = 0  # rows longer than max_length, scored on their last max_length tokens

    def score(self, prompts: list, completions: list, batch_size: int = 8) -> list[float]:
        prefix = special_prefix_ids(self.tokenizer)
        ids = []
        for prompt, completion in zip(prompts, completions):
            messages = prompt_messages(_prompt_of(prompt), "reward_model prompt")
            row = encode(messages, completion_text(completion), self.tokenizer, self.template, self.system_prompt,
                         None)
            if self.max_length and len(row) > self.max_length:
                # a score is needed for every completion: keep its end (the head reads the last token)
                row = prefix + row[len(row) - self.max_length + len(prefix):]
                self.truncated += 1
            ids.append(row)
        return score_ids(self.model, ids, self.tokenizer.pad_token_id, batch_size)


def _prompt_of(prompt):
    """TRL passes conversational prompts as message lists; a plain string is a user turn."""
    return prompt if isinstance(prompt, (str, list)) else str(prompt)


def load_reward_model(run, tokenizer, device: str):
    """The sequence-classification model of a reward-model run, for inference on `device`."""
    from transformers import AutoModelForSequenceClassification

    dtype = resolve_dtype("auto")
    if run.adapter:
        from peft import PeftModel

        with score_head_expected():  # the adapter brings the trained head
            base = AutoModelForSequenceClassification.from_pretrained(resolve_model_path(run.weights),
                                                                      num_labels=1, dtype=dtype)
        fit_embeddings(base, tokenizer)  # the base lacks <|EOT|>; its row comes from the adapter
        base.config.pad_token_id = tokenizer.pad_token_id
        model = PeftModel.from_pretrained(base, run.adapter)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(run.weights, dtype=dtype)
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device).eval()


_SCORERS: dict[tuple[str, str | None], RewardModelScorer] = {}
_LOCK = threading.Lock()


def scorer(path: str, device: str | None = None) -> RewardModelScorer:
    """The reward model at `path`, loaded once per process."""
    key = (str(Path(path).resolve()), device)
    with _LOCK:
        if key not in _SCORERS:
            log.info("loading the reward model %s", path)
            _SCORERS[key] = RewardModelScorer(path, device)
        return _SCORERS[key]


def reward_model_reward(completions, prompts=None, path: str | None = None, batch_size: int = 8,
                        transform: str = "sigmoid", device: str | None = None, **kwargs) -> list[float | None]:
    """The reward model's score of each (prompt, completion): sigmoid(logit) by default, the
    logit with `transform="raw"`. `path`: a `coder-align rm train` output directory."""
    validate_kwargs({"path": path, "transform": transform})
    if prompts is None:
        raise ValueError("reward_model needs the prompts (TRL passes them as `prompts`)")
    if len(prompts) != len(completions):
        raise ValueError(f"prompts: expected one per completion ({len(completions)}), got {len(prompts)}")
    scores = scorer(path, device).score(prompts, completions, batch_size)
    if transform == "sigmoid":
        return [1.0 / (1.0 + math.exp(-s)) for s in scores]
    return scores


def validate_kwargs(kwargs: dict) -> None:
    """Checked when GRPO builds its rewards, before any model loads (RewardSet calls this)."""
    path = kwargs.get("path")
    if not path:
        raise ConfigError("reward_model needs the reward model's directory: "
                          "grpo.reward_kwargs='{reward_model: {path: outputs/rm}}'")
    if not Path(path).is_dir():
        raise ConfigError(f"grpo.reward_kwargs.reward_model.path: {path} is not a directory "
                          "(train one with `coder-align rm train`)")
    if kwargs.get("transform", "sigmoid") not in ("sigmoid", "raw"):
        raise ConfigError(f"grpo.reward_kwargs.reward_model.transform must be sigmoid or raw, "
                          f"got {kwargs['transform']!r}")


reward_model_reward.validate_kwargs = validate_kwargs
