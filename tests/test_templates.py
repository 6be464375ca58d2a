import pytest

from coder_align.templates import (
    DEEPSEEK_SYSTEM_PROMPT,
    EOT,
    IGNORE_INDEX,
    TemplateError,
    chat_template,
    render,
    tokenize,
    tokenize_with_model_template,
)

SYSTEM = (
    "You are an AI programming assistant, utilizing the DeepSeek Coder model, developed by DeepSeek "
    "Company, and you only answer questions related to computer science. For politically sensitive "
    "questions, security and privacy issues, and other non-computer science questions, you will refuse to answer."
)

SINGLE = [
    {"role": "user", "content": "Write a function that adds two numbers."},
    {"role": "assistant", "content": "def add(a, b):\n    return a + b"},
]
MULTI = [
    {"role": "user", "content": "Write add."},
    {"role": "assistant", "content": "def add(a, b): return a + b"},
    {"role": "user", "content": "Now subtract."},
    {"role": "assistant", "content": "def sub(a, b): return a - b"},
]


def official_prompt(instruction: str) -> str:
    """The official DeepSeek-Coder finetune_deepseekcoder.py build_instruction_prompt."""
    return f"{SYSTEM}\n### Instruction:\n{instruction.strip()}\n### Response:\n"


def test_system_prompt_is_the_official_one():
    assert DEEPSEEK_SYSTEM_PROMPT == SYSTEM


def test_single_turn_is_byte_identical_to_official_script():
    expected = official_prompt(SINGLE[0]["content"]) + SINGLE[1]["content"] + "\n" + EOT
    assert render(SINGLE) == expected


def test_multi_turn_golden():
    expected = (
        SYSTEM + "\n"
        "### Instruction:\nWrite add.\n### Response:\ndef add(a, b): return a + b\n<|EOT|>\n"
        "### Instruction:\nNow subtract.\n### Response:\ndef sub(a, b): return a - b\n<|EOT|>"
    )
    assert render(MULTI) == expected


def test_generation_prompt_ends_with_response_header_and_newline():
    text = render(SINGLE[:1], add_generation_prompt=True)
    assert text == official_prompt(SINGLE[0]["content"])
    assert text.endswith("### Response:\n")
    follow_up = render(MULTI[:3], add_generation_prompt=True)
    assert follow_up.endswith("<|EOT|>\n### Instruction:\nNow subtract.\n### Response:\n")


def test_system_message_replaces_default_and_empty_system_renders_nothing():
    custom = [{"role": "system", "content": "Be brief."}] + SINGLE
    assert render(custom).startswith("Be brief.\n### Instruction:\n")
    assert SYSTEM not in render(custom)
    assert render(SINGLE, system_prompt="").startswith("### Instruction:\n")


@pytest.mark.parametrize(
    "messages, message",
    [
        ([{"role": "assistant", "content": "x"}], "expected 'user'"),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "expected 'assistant'"),
        ([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}], "only come first"),
        ([{"role": "user"}], "'role' and 'content'"),
        ([], "non-empty"),
    ],
)
def test_invalid_role_orders_are_rejected(messages, message):
    with pytest.raises(TemplateError, match=message):
        render(messages)


def supervised_spans(ids, labels):
    spans, current = [], []
    for token, label in zip(ids, labels):
        if label != IGNORE_INDEX:
            current.append(token)
        elif current:
            spans.append(current)
            current = []
    if current:
        spans.append(current)
    return spans


def test_labels_cover_exactly_each_response_and_its_eot(tokenizer):
    sample = tokenize(MULTI, tokenizer)
    assert len(sample["input_ids"]) == len(sample["labels"])
    assert tokenizer.decode(sample["input_ids"]) == render(MULTI)
    spans = [tokenizer.decode(s) for s in supervised_spans(sample["input_ids"], sample["labels"])]
    assert spans == [MULTI[1]["content"] + "\n" + EOT, MULTI[3]["content"] + "\n" + EOT]
    # labels are not shifted: each supervised label equals the token at that position
    assert all(l == t for t, l in zip(sample["input_ids"], sample["labels"]) if l != IGNORE_INDEX)
    assert sample["input_ids"][-1] == tokenizer.convert_tokens_to_ids(EOT)


def test_overlong_sample_is_dropped_not_cut(tokenizer):
    full = tokenize(SINGLE, tokenizer)
    n = len(full["input_ids"])
    assert tokenize(SINGLE, tokenizer, max_length=n) == full
    assert tokenize(SINGLE, tokenizer, max_length=n - 1) is None


def test_truncate_prompt_keeps_the_whole_response(tokenizer):
    long = [{"role": "user", "content": "context " * 200 + "Now answer."}, SINGLE[1]]
    response_tokens = len(tokenizer(SINGLE[1]["content"] + "\n" + EOT, add_special_tokens=False)["input_ids"])
    sample = tokenize(long, tokenizer, max_length=64, truncate_prompt=True)
    assert len(sample["input_ids"]) == 64
    assert sample["input_ids"][-1] == tokenizer.convert_tokens_to_ids(EOT)
    assert sum(l != IGNORE_INDEX for l in sample["labels"]) == response_tokens
    # a response that alone exceeds the window is still dropped
    assert tokenize(long, tokenizer, max_length=response_tokens - 1, truncate_prompt=True) is None


def test_chat_template_gives_exactly_render(tokenizer, tmp_path):
    for messages in (SINGLE[:1], MULTI[:3], [{"role": "system", "content": "Terse."}] + SINGLE[:1]):
        assert tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == render(
            messages, add_generation_prompt=True
        )
    assert tokenizer.apply_chat_template(MULTI, tokenize=False) == render(MULTI)
    # and it survives save/load, which is what serving stacks read
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.apply_chat_template(MULTI[:3], tokenize=False, add_generation_prompt=True) == render(
        MULTI[:3], add_generation_prompt=True
    )
    assert EOT in reloaded.all_special_tokens


def test_chat_template_with_bos_and_custom_system(tokenizer):
    from transformers.utils.chat_template_utils import render_jinja_template

    template = chat_template(system_prompt="Custom.", bos_token="<s>")
    rendered, _ = render_jinja_template(
        conversations=[MULTI[:3]], chat_template=template, add_generation_prompt=True, bos_token="<s>"
    )
    assert rendered[0] == render(MULTI[:3], add_generation_prompt=True, system_prompt="Custom.", bos_token="<s>")


def test_model_template_masks_only_assistant_turns(tokenizer):
    from transformers import AutoTokenizer

    from coder_align.models import resolve_model_path

    chatml = AutoTokenizer.from_pretrained(resolve_model_path("embedded"))  # SmolLM2's own ChatML template
    sample = tokenize_with_model_template(MULTI, chatml)
    spans = [chatml.decode(s) for s in supervised_spans(sample["input_ids"], sample["labels"])]
    assert spans == [MULTI[1]["content"] + "<|im_end|>\n", MULTI[3]["content"] + "<|im_end|>\n"]
    assert chatml.decode(sample["input_ids"]) == chatml.apply_chat_template(MULTI, tokenize=False)
