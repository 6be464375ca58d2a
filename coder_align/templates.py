"""The DeepSeek-Coder-Instruct template: one definition for training, saving and serving.

A single-turn sample renders byte-identically to the official fine-tuning script's
`prompt + output + "\\n<|EOT|>"`:

    {system}\\n### Instruction:\\n{user}\\n### Response:\\n{assistant}\\n<|EOT|>

Later turns follow after a newline. `CHAT_TEMPLATE` is the same template in Jinja; it is
written into every saved tokenizer so that `apply_chat_template` at serving time gives
exactly what `render` gave at training time. The published HF template differs (no
newline after the generation prompt's `### Response:`, "Deepseek" spelling), which is
why this module does not reuse it.

`tokenize` builds labels by construction: each piece (prompt markup, response) is
tokenized on its own and the ids are concatenated, so a label can never be off by one
because a prompt tokenized differently inside the whole text.
"""

from __future__ import annotations

from typing import Any

EOT = "<|EOT|>"
IGNORE_INDEX = -100

DEEPSEEK_SYSTEM_PROMPT = (
    "You are an AI programming assistant, utilizing the DeepSeek Coder model, developed by "
    "DeepSeek Company, and you only answer questions related to computer science. For "
    "politically sensitive questions, security and privacy issues, and other non-computer "
    "science questions, you will refuse to answer."
)

def system_prompt_note(prompt: str | None, source: str, key: str = "data.system_prompt") -> dict:
    """What a run's summary says of its system prompt: the text (None: DeepSeek's), why, and how to change it."""
    return {"text": DEEPSEEK_SYSTEM_PROMPT if prompt is None else prompt, "source": source,
            "to_change": f"{key}='Your prompt.' ('' for none)"}


INSTRUCTION_HEADER = "### Instruction:\n"
RESPONSE_HEADER = "### Response:\n"


class TemplateError(ValueError):
    """Messages that the template cannot render (wrong roles or order, empty turns)."""


def validate_messages(messages: list[dict[str, Any]]) -> None:
    """Roles: optional leading system, then user/assistant alternating, starting with user."""
    if not isinstance(messages, list) or not messages:
        raise TemplateError("messages must be a non-empty list")
    start = 0
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise TemplateError(f"messages[{i}] must have 'role' and 'content'")
        if not isinstance(m["content"], str):
            raise TemplateError(f"messages[{i}].content must be a string")
        if m["role"] == "system" and i != 0:
            raise TemplateError(f"messages[{i}]: a system message may only come first")
    if messages[0]["role"] == "system":
        start = 1
    for j, m in enumerate(messages[start:], start):
        expected = "user" if (j - start) % 2 == 0 else "assistant"
        if m["role"] != expected:
            raise TemplateError(f"messages[{j}].role is '{m['role']}', expected '{expected}' (turns alternate user/assistant)")


def _pieces(messages: list[dict[str, Any]], system_prompt: str | None, add_generation_prompt: bool):
    """(text, is_response) pieces in order; is_response pieces carry the loss."""
    validate_messages(messages)
    if messages[0]["role"] == "system":
        system, turns = messages[0]["content"], messages[1:]
    else:
        system, turns = (DEEPSEEK_SYSTEM_PROMPT if system_prompt is None else system_prompt), messages
    prompt = system + "\n" if system else ""
    pieces: list[tuple[str, bool]] = []
    for i, turn in enumerate(turns):
        if turn["role"] == "user":
            prompt += INSTRUCTION_HEADER + turn["content"] + "\n"
        else:
            pieces.append((prompt + RESPONSE_HEADER, False))
            pieces.append((turn["content"] + "\n" + EOT, True))
            # The newline after <|EOT|> separates turns; it is markup, not response.
            prompt = "\n" if i + 1 < len(turns) else ""
    if add_generation_prompt:
        if turns[-1]["role"] != "user":
            raise TemplateError("add_generation_prompt needs the last message to be from the user")
        prompt += RESPONSE_HEADER
    if prompt:
        pieces.append((prompt, False))
    return pieces


def render(
    messages: list[dict[str, Any]],
    add_generation_prompt: bool = False,
    system_prompt: str | None = None,
    bos_token: str = "",
) -> str:
    """The exact text the model trains on (or, with add_generation_prompt, is prompted with).

    `system_prompt` replaces the default DeepSeek prompt when messages have no system turn
    ("" for none). `bos_token` is prepended as text, as a chat template does.
    """
    return bos_token + "".join(text for text, _ in _pieces(messages, system_prompt, add_generation_prompt))


def special_prefix_ids(tokenizer) -> list[int]:
    """Ids the tokenizer puts before text by itself (BOS for DeepSeek/Llama, none for SmolLM2)."""
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    without = tokenizer("a", add_special_tokens=False)["input_ids"]
    n = len(with_special) - len(without)
    return list(with_special[:n]) if n > 0 and with_special[n:] == without else []


def tokenize(
    messages: list[dict[str, Any]],
    tokenizer,
    max_length: int | None = None,
    system_prompt: str | None = None,
    truncate_prompt: bool = False,
) -> dict[str, list[int]] | None:
    """Token ids and labels (-100 outside assistant responses; not shifted).

    Returns None when the sample cannot be trained on within `max_length`: its final
    `<|EOT|>` would be cut, or no label would remain. With `truncate_prompt=True`, prompt
    tokens are removed from the left (after BOS) instead, as long as the last response fits.
    """
    pieces = _pieces(messages, system_prompt, add_generation_prompt=False)
    return _assemble(pieces, tokenizer, max_length, truncate_prompt)


def _assemble(pieces, tokenizer, max_length, truncate_prompt):
    prefix = special_prefix_ids(tokenizer)
    input_ids, labels = list(prefix), [IGNORE_INDEX] * len(prefix)
    for text, is_response in pieces:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        input_ids += ids
        labels += ids if is_response else [IGNORE_INDEX] * len(ids)
    # A trailing non-response piece cannot carry loss; dropping it keeps <|EOT|> last.
    while labels and labels[-1] == IGNORE_INDEX and len(labels) > len(prefix):
        input_ids.pop()
        labels.pop()
    if all(label == IGNORE_INDEX for label in labels):
        return None
    if max_length is not None and len(input_ids) > max_length:
        if not truncate_prompt:
            return None
        overflow = len(input_ids) - max_length
        # Cut right after the BOS prefix, but never into the last response.
        last_response_start = max(i for i in range(len(labels)) if labels[i] == IGNORE_INDEX) + 1
        if len(prefix) + overflow > last_response_start:
            return None
        keep = slice(len(prefix) + overflow, None)
        input_ids = prefix + input_ids[keep]
        labels = [IGNORE_INDEX] * len(prefix) + labels[keep]
        if all(label == IGNORE_INDEX for label in labels):
            return None
    return {"input_ids": input_ids, "labels": labels}


def _jinja_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def chat_template(system_prompt: str | None = None, bos_token: str = "") -> str:
    """Jinja equivalent of `render` (same bytes), for `tokenizer.chat_template`.

    `bos_token` is emitted as text for tokenizers that prepend BOS themselves, because
    serving stacks call the template and then tokenize without special tokens.
    """
    default_system = DEEPSEEK_SYSTEM_PROMPT if system_prompt is None else system_prompt
    bos = "{{ bos_token }}" if bos_token else ""
    return (
        bos
        + "{%- if messages[0]['role'] == 'system' -%}"
        "{%- set system = messages[0]['content'] -%}{%- set turns = messages[1:] -%}"
        "{%- else -%}"
        "{%- set system = " + _jinja_string(default_system) + " -%}{%- set turns = messages -%}"
        "{%- endif -%}"
        "{%- if system -%}{{ system + '\\n' }}{%- endif -%}"
        "{%- for message in turns -%}"
        "{%- if message['role'] == 'user' -%}"
        "{{ '### Instruction:\\n' + message['content'] + '\\n' }}"
        "{%- elif message['role'] == 'assistant' -%}"
        "{{ '### Response:\\n' + message['content'] + '\\n<|EOT|>' }}"
        "{%- if not loop.last -%}{{ '\\n' }}{%- endif -%}"
        "{%- else -%}"
        "{{ raise_exception('Only system, user and assistant roles are supported') }}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '### Response:\\n' }}{%- endif -%}"
    )


def model_template_pieces(messages: list[dict[str, Any]], tokenizer):
    """(text, is_response) pieces from the tokenizer's own chat template (`template: model`).

    Each assistant turn's span is the difference between the conversation rendered up to
    and including it, and the conversation before it with a generation prompt. Templates
    for which that is not a clean string prefix are refused with a clear error.
    """
    validate_messages(messages)
    if not getattr(tokenizer, "chat_template", None):
        raise TemplateError("template: model needs a tokenizer with a chat_template")

    def apply(msgs, gen):
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

    full = apply(messages, False)
    pieces, cursor = [], 0
    for j, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = apply(messages[:j], True)
        through = apply(messages[: j + 1], False)
        if not (full.startswith(through) and through.startswith(before) and len(before) >= cursor):
            raise TemplateError(
                "the tokenizer's chat template does not render conversations as growing prefixes; "
                "use template: deepseek"
            )
        pieces.append((full[cursor : len(before)], False))
        pieces.append((through[len(before) :], True))
        cursor = len(through)
    if cursor < len(full):
        pieces.append((full[cursor:], False))
    return pieces


def tokenize_with_model_template(messages, tokenizer, max_length=None, truncate_prompt=False):
    """Like `tokenize`, but with the tokenizer's own chat template; loss on assistant turns only.

    The template's text already contains any BOS it wants, so no prefix ids are added.
    """
    pieces = model_template_pieces(messages, tokenizer)
    bos = tokenizer.bos_token
    if bos and special_prefix_ids(tokenizer) and pieces and pieces[0][0].startswith(bos):
        # Avoid a double BOS: _assemble adds the tokenizer's own prefix ids.
        pieces[0] = (pieces[0][0][len(bos) :], pieces[0][1])
    return _assemble(pieces, tokenizer, max_length, truncate_prompt)
