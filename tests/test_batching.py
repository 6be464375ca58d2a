"""Continuous batching (evaluation/batching.py) against transformers' own `generate`, and
generation split over processes."""

from __future__ import annotations

import pytest
import torch

from coder_align.evaluation.batching import continuous_generate, pick_tokens

PROMPTS = ["def f(x):\n    return", "import os\nimport sys\n\n\ndef main(argv):\n    '''Entry.'''\n", "x =",
           "class A:\n    def __init__(self):\n        self.a = 1\n", "# sum of a list\n", "print("]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from coder_align.config import ModelConfig
    from coder_align.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = load_model(ModelConfig(path=str(tiny_model_dir), gradient_checkpointing=False), tokenizer, training=False)
    model.eval()
    torch.set_num_threads(1)
    return model, tokenizer


def alone(model, tokenizer, prompt: str, max_new_tokens: int, stop_ids: list[int]) -> list[int]:
    batch = tokenizer([prompt], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop_ids,
                             pad_token_id=tokenizer.pad_token_id)
    return out[0, batch["input_ids"].shape[1]:].tolist()


def test_rows_refilled_mid_batch_give_generate_s_greedy_tokens(tiny):
    """Batch of 2 over 6 prompts: rows stop at different steps (a frequent token is made a
    stop token) and new prompts join a running cache of another length."""
    model, tokenizer = tiny
    ids = [tokenizer(p).input_ids for p in PROMPTS]
    free_run = [alone(model, tokenizer, p, 12, [tokenizer.eos_token_id]) for p in PROMPTS]
    stop = max(set(t for run in free_run for t in run[2:]), key=lambda t: sum(run.count(t) for run in free_run))
    expected = [alone(model, tokenizer, p, 12, [stop]) for p in PROMPTS]
    assert len({len(e) for e in expected}) > 1, "the test needs rows that end at different steps"
    got = continuous_generate(model, ids, max_new_tokens=12, batch_size=2, stop_ids=[stop],
                              pad_id=tokenizer.pad_token_id)
    assert got == expected
    wide = continuous_generate(model, ids, max_new_tokens=12, batch_size=6, stop_ids=[stop],
                               pad_id=tokenizer.pad_token_id)
    assert wide == expected


def test_stop_strings_end_a_row_and_need_a_decoder(tiny):
    model, tokenizer = tiny
    ids = [tokenizer(p).input_ids for p in PROMPTS[:3]]
    free = continuous_generate(model, ids, max_new_tokens=10, batch_size=3, stop_ids=[], pad_id=0)
    text = tokenizer.decode(free[0])
    stop = text[len(text) // 2:len(text) // 2 + 2]
    assert stop, "the tiny model wrote nothing to stop at"
    cut = continuous_generate(model, ids, max_new_tokens=10, batch_size=3, stop_ids=[], pad_id=0,
                              stop_strings=[stop], decode=tokenizer.decode)
    assert stop in tokenizer.decode(cut[0]) and len(cut[0]) < len(free[0])
    assert all(len(c) <= len(f) for c, f in zip(cut, free))
    with pytest.raises(ValueError, match="decode"):
        continuous_generate(model, ids, max_new_tokens=2, batch_size=1, stop_ids=[], pad_id=0, stop_strings=["x"])


def test_sampling_is_seeded_and_follows_top_p():
    logits = torch.tensor([[0.0, 5.0, 0.0, 4.9]] * 400)
    first = pick_tokens(logits, 1.0, 0.95, torch.Generator().manual_seed(1))
    again = pick_tokens(logits, 1.0, 0.95, torch.Generator().manual_seed(1))
    assert torch.equal(first, again)
    assert set(first.tolist()) == {1, 3}  # the two likely tokens carry > 95% of the mass
    assert set(pick_tokens(logits, 1.0, 1.0, torch.Generator().manual_seed(1)).tolist()) == {0, 1, 2, 3}
    assert pick_tokens(logits, 0.0, 0.95, None).tolist() == [1] * 400


def test_generation_split_over_processes_equals_one_process(tiny_model_dir, tiny):
    """Greedy eval in 2 spawned processes gives what one process gives, in prompt order."""
    from coder_align.evaluation.config import eval_config, generator_spec
    from coder_align.evaluation.generation import GenerationSettings, generate, load_generator, plan_processes

    config = eval_config(None, [f"model.path={tiny_model_dir}", "generation.processes=2", "generation.threads=1"])
    spec = generator_spec(config)
    generator, _ = load_generator(spec)
    assert plan_processes(spec, generator, len(PROMPTS)) == (2, 1)
    assert plan_processes(spec, generator, 1)[0] == 1
    settings = GenerationSettings(max_new_tokens=6, batch_size=2)
    split = generate(spec, generator, PROMPTS, settings, [], True)
    single = generator.generate(PROMPTS, settings, [])
    assert split == single


def test_eval_generates_in_bf16_on_cpus_that_have_it(monkeypatch):
    from coder_align.evaluation import generation

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert generation.generation_dtype("auto") == "bfloat16"
    assert generation.generation_dtype("float32") == "float32"  # an explicit choice stays
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert generation.generation_dtype("auto") == "auto"
