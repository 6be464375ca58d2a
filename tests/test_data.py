import json
from dataclasses import replace

import pytest
import torch

from coder_align.data import DataError, PackingCollator, PaddingCollator, build_sft_examples, read_conversations
from coder_align.sft import SFTDataConfig
from coder_align.templates import IGNORE_INDEX

from conftest import DATA_TEMPLATES


def write_lines(path, lines):
    path.write_bytes(b"\n".join(l if isinstance(l, bytes) else l.encode() for l in lines) + b"\n")
    return str(path)


@pytest.mark.parametrize("name", ["instruction_output.jsonl", "alpaca.jsonl", "messages.jsonl", "prompt_completion.jsonl"])
def test_bundled_templates_read_cleanly(name):
    conversations, stats = read_conversations(str(DATA_TEMPLATES / name))
    assert conversations and stats.rows_invalid == 0
    assert all(m[-1]["role"] == "assistant" for m, _ in conversations)


def test_row_formats_become_messages(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [
        json.dumps({"instruction": "  Add.  ", "output": "a + b"}),
        json.dumps({"instruction": "Fix it.", "input": "x = [", "output": "x = []"}),
        json.dumps({"prompt": "Say hi", "completion": "hi"}),
        json.dumps({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "u"},
                                 {"role": "assistant", "content": "a"}]}),
    ])
    conversations, _ = read_conversations(path)
    msgs = [m for m, _ in conversations]
    assert msgs[0] == [{"role": "user", "content": "Add."}, {"role": "assistant", "content": "a + b"}]
    assert msgs[1][0]["content"] == "Fix it.\n\nx = ["
    assert msgs[2][1] == {"role": "assistant", "content": "hi"}
    assert msgs[3][0] == {"role": "system", "content": "S"}
    assert [w for _, w in conversations] == [f"{path}:{i}" for i in (1, 2, 3, 4)]


@pytest.mark.parametrize(
    "line, fragment, reason",
    [
        (b'{"instruction": "a", "output": ', "invalid JSON", "bad_json"),
        (json.dumps({"instruction": "a"}), "missing field 'output'", "missing_output"),
        (json.dumps({"output": "b"}), "missing field 'instruction'", "missing_instruction"),
        (json.dumps({"instruction": "a", "output": "   "}), "field 'output' is empty", "empty_output"),
        (json.dumps({"instruction": "a", "output": 3}), "field 'output' must be a string", "bad_output"),
        (json.dumps({"messages": [{"role": "assistant", "content": "x"}]}), "field 'messages'", "bad_messages"),
        (json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}),
         "messages[1].content", "empty_response"),
        (json.dumps({"code": "raw"}), "unknown row format", "unknown_format"),
        (b'{"instruction": "caf\xe9", "output": "x"}', "not valid UTF-8", "not_utf8"),
        (b"[1, 2]", "JSON object", "bad_json"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, line, fragment, reason):
    good = json.dumps({"instruction": "ok", "output": "fine"})
    path = write_lines(tmp_path / "bad.jsonl", [good, good, line, good])
    with pytest.raises(DataError) as err:
        read_conversations(path)
    assert str(err.value).startswith(f"{path}:3: ")
    assert fragment in str(err.value)
    conversations, stats = read_conversations(path, on_invalid="skip")
    assert len(conversations) == 3
    assert stats.rows_read == 4 and dict(stats.invalid) == {reason: 1}


def test_json_and_parquet_files(tmp_path):
    rows = [{"instruction": f"task {i}", "output": f"answer {i}"} for i in range(3)]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    conversations, _ = read_conversations(str(tmp_path / "d.json"))
    assert [m[1]["content"] for m, _ in conversations] == ["answer 0", "answer 1", "answer 2"]
    (tmp_path / "bad.json").write_text('[{"instruction": "a", "output": "b"},\n {"instruction": "a"}]')
    with pytest.raises(DataError, match=r"bad.json#1: missing field 'output'"):
        read_conversations(str(tmp_path / "bad.json"))

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    conversations, stats = read_conversations(str(tmp_path / "d.parquet"))
    assert stats.rows_read == 3 and conversations[2][0][0]["content"] == "task 2"


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_conversations(str(tmp_path / "nope.jsonl"))
    (tmp_path / "rows.jsonl").write_text("")
    with pytest.raises(DataError, match=r"is a directory; data.path takes one .jsonl, .json or .parquet file "
                                        r"\(e.g. .*rows.jsonl\)"):
        read_conversations(str(tmp_path))


def test_build_counts_dropped_and_truncated_rows(tmp_path, tokenizer):
    long_prompt = "word " * 300
    path = write_lines(tmp_path / "d.jsonl", [
        json.dumps({"instruction": "short", "output": "fine"}),
        json.dumps({"instruction": long_prompt, "output": "fine"}),
        json.dumps({"instruction": "short", "output": "long answer " * 300}),
        json.dumps({"instruction": "x"}),
    ])
    config = SFTDataConfig(path=path, max_length=128, on_invalid="skip")
    examples, stats = build_sft_examples(config, tokenizer)
    assert stats.as_dict()["dropped_by_reason"] == {"invalid:missing_output": 1, "too_long": 2}
    assert stats.rows_read == 4 and stats.rows_used == 1 == len(examples)
    # each dropped row is named by file and line, so it can be found
    named = stats.as_dict()["dropped_examples"]
    assert named[0].startswith(f"{path}:4: ") and "output" in named[0]
    assert named[1:] == [f"{path}:2: too_long", f"{path}:3: too_long"]

    examples, stats = build_sft_examples(replace(config, overlong="truncate_prompt"), tokenizer)
    assert stats.truncated == 1 and stats.rows_used == 2
    assert stats.dropped == {"invalid:missing_output": 1, "too_long": 1}
    assert all(len(e["input_ids"]) <= 128 for e in examples)
    assert stats.tokens == sum(len(e["input_ids"]) for e in examples)


def test_padding_collator():
    batch = PaddingCollator(pad_token_id=0)([
        {"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
        {"input_ids": [8], "labels": [8]},
    ])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_packing_collator_restarts_positions_and_never_labels_a_boundary():
    batch = PackingCollator()([
        {"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
        {"input_ids": [8, 9], "labels": [8, 9]},
    ])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7, IGNORE_INDEX, 9]]
    assert "attention_mask" not in batch


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_logits_equal_each_sample_alone(attn):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, attn_implementation=attn, use_cache=False)
    model = LlamaForCausalLM(config).eval()
    samples = [torch.randint(0, 97, (n,)).tolist() for n in (9, 4, 13)]
    batch = PackingCollator()([{"input_ids": s, "labels": s} for s in samples])
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        start = 0
        for s in samples:
            alone = model(input_ids=torch.tensor([s])).logits[0]
            torch.testing.assert_close(packed[start:start + len(s)], alone, atol=1e-5, rtol=1e-5)
            start += len(s)


def test_packing_probe_refuses_a_model_that_leaks_across_samples():
    from transformers import LlamaConfig, LlamaForCausalLM

    from coder_align.sft import check_packing_support

    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, use_cache=False)
    model = LlamaForCausalLM(config)
    check_packing_support(model)  # transformers keeps packed samples apart: no error

    forward = model.forward

    def leaky_forward(*args, position_ids=None, **kwargs):  # ignores the sample boundaries
        return forward(*args, **kwargs)

    model.forward = leaky_forward
    with pytest.raises(RuntimeError, match="attends across packed samples"):
        check_packing_support(model)


def test_code_rows_become_fim_samples_with_full_loss(tmp_path, tiny_model_dir):
    from coder_align.fim import FIM_BEGIN, split_fim
    from coder_align.models import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir), fim_tokens=True)
    code = "def add(a, b):\n    return a + b\n"
    path = write_lines(tmp_path / "mix.jsonl", [json.dumps({"text": code})] * 20
                       + [json.dumps({"instruction": "Add.", "output": "a + b"})])
    examples, stats = build_sft_examples(SFTDataConfig(path=path, fim_rate=1.0), tokenizer)
    assert stats.code_rows == 20 and stats.rows_used == 21
    text = tokenizer.decode(examples[0]["input_ids"])
    assert text.startswith(FIM_BEGIN) and text.endswith(tokenizer.eos_token)
    parts = split_fim(text[: -len(tokenizer.eos_token)])
    assert parts.prefix + parts.middle + parts.suffix == code
    assert all(l != IGNORE_INDEX for l in examples[0]["labels"])  # pretraining-style loss
    plain, _ = build_sft_examples(SFTDataConfig(path=path, fim_rate=0.0), tokenizer)
    assert tokenizer.decode(plain[0]["input_ids"]) == code + tokenizer.eos_token


def test_mix_uses_each_file_as_often_as_its_weight(tmp_path, tiny_model_dir):
    from coder_align.models import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir), fim_tokens=True)
    chat = write_lines(tmp_path / "chat.jsonl", [json.dumps({"instruction": f"Add {i}.", "output": f"x + {i}"})
                                                 for i in range(4)])
    code = write_lines(tmp_path / "code.jsonl", [json.dumps({"text": f"def f{i}(a, b):\n    return a + b * {i}\n"})
                                                 for i in range(4)])
    mbpp = write_lines(tmp_path / "mbpp.jsonl", [json.dumps({"instruction": f"Sub {i}.", "output": f"x - {i}"})
                                                 for i in range(4)])
    config = SFTDataConfig(path=chat, mix={code: 2, mbpp: 0.5}, fim_rate=1.0)
    examples, stats = build_sft_examples(config, tokenizer)
    assert stats.rows_read == 12 and stats.rows_used == 4 + 8 + 2 and stats.code_rows == 8
    assert stats.as_dict()["files"] == {chat: {"rows_read": 4, "weight": 1.0, "rows_weighted": 4},
                                        code: {"rows_read": 4, "weight": 2, "rows_weighted": 8},
                                        mbpp: {"rows_read": 4, "weight": 0.5, "rows_weighted": 2}}
    code_samples = [tokenizer.decode(e["input_ids"]) for e in examples[4:12]]
    assert len(set(code_samples)) > 4  # a repeated code row gets a FIM split of its own
    again, _ = build_sft_examples(config, tokenizer)
    assert [e["input_ids"] for e in again] == [e["input_ids"] for e in examples]  # seeded
    upweighted, stats = build_sft_examples(SFTDataConfig(path=chat, mix={chat: 3}), tokenizer)
    assert stats.rows_used == 12  # naming data.path in the mix sets its weight


@pytest.mark.parametrize("weight", [0, -1, "two", True])
def test_mix_weights_must_be_positive_numbers(weight):
    from coder_align.config import ConfigError
    from coder_align.sft import check_mix

    with pytest.raises(ConfigError, match="data.mix: the weight of 'a.jsonl' must be a number > 0"):
        check_mix({"a.jsonl": weight})


def test_packing_with_a_row_cap_fills_rows_and_hides_the_padding_segment():
    from transformers import LlamaConfig, LlamaForCausalLM

    samples = [torch.randint(1, 97, (n,)).tolist() for n in (9, 4, 13, 6, 3)]
    batch = PackingCollator(max_row_tokens=16, pad_token_id=0)([{"input_ids": s, "labels": s} for s in samples])
    assert batch["input_ids"].shape == (3, 16)  # 13+3, 9+6, 4 (+12 padding)
    assert int((batch["input_ids"] != 0).sum()) == sum(len(s) for s in samples)
    assert batch["position_ids"][2].tolist() == list(range(4)) + list(range(12))
    assert (batch["labels"][2, 4:] == IGNORE_INDEX).all()

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, use_cache=False)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
        for row, ids in enumerate(batch["input_ids"].tolist()):
            starts = [i for i, p in enumerate(batch["position_ids"][row].tolist()) if p == 0]
            for a, b in zip(starts, starts[1:] + [16]):
                if ids[a] == 0:
                    continue  # the padding segment
                alone = model(input_ids=torch.tensor([ids[a:b]])).logits[0]
                torch.testing.assert_close(logits[row, a:b], alone, atol=1e-5, rtol=1e-5)
