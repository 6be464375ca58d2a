"""GRPO's rollouts: the evaluation generator on the policy's live weights, dynamic sampling with
a curriculum, judging while generating, and the reward-hacking signals."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
import torch

from coder_align.training.curriculum import TaskPool
from coder_align.training.rollout import Rollout, spread_reason


@pytest.fixture(scope="module")
def lora_policy(tiny_model_dir):
    from coder_align.config import ModelConfig, PeftConfig
    from coder_align.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = load_model(ModelConfig(path=str(tiny_model_dir), dtype="float32", gradient_checkpointing=False),
                       tokenizer, PeftConfig(method="lora", r=4, alpha=8, dropout=0.0), training=True,
                       train_new_tokens=False)
    return model, tokenizer


def greedy(model, ids: list[int], new: int) -> list[int]:
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor([ids]), max_new_tokens=new, do_sample=False, eos_token_id=[],
                             pad_token_id=0)
    return out[0, len(ids):].tolist()


def test_policy_generator_follows_the_policy_across_processes_and_updates(lora_policy):
    from coder_align.evaluation.policy_generation import PolicyGenerator, Sampling

    model, tokenizer = lora_policy
    prompts = [tokenizer(p).input_ids for p in ["def f(x):\n    return", "import os\n", "x =", "class A:\n"]]
    sampling = Sampling(max_new_tokens=6, temperature=0.0, top_p=1.0, batch_size=2, stop_ids=(), pad_id=0)
    generator = PolicyGenerator(model, processes=2, threads=1, dtype="float32")
    try:
        model.eval()
        streamed = {}
        got = generator.generate(prompts, sampling, seed=0, on_finished=lambda i, t: streamed.setdefault(i, t))
        assert got == [greedy(model, p, 6) for p in prompts] and streamed == dict(enumerate(got))
        with torch.no_grad():  # a training step moves the LoRA factors: the generator must follow
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 2.0)
        changed = [greedy(model, p, 6) for p in prompts]
        assert changed != got, "the update must change greedy output for this test to mean anything"
        generator.update(model)
        assert generator.generate(prompts, sampling, seed=0) == changed
        assert not any("lora" in key for key in generator.layout)
    finally:
        generator.close()
        model.train()


class FakeJudge:
    """Values by task prompt: what EarlyJudge would return, without a sandbox."""

    def __init__(self, by_task):
        self.by_task, self.values, self.busy_seconds = by_task, {}, 0.0

    def start(self, forget=True):
        self.values = {}

    def submit(self, index, text, row):
        pattern = self.by_task[row["task_id"]]
        self.values[index] = pattern[index % len(pattern)]

    def wait(self):
        return dict(self.values)

    def busy_before(self, moment):
        return 0.0


def fake_trainer(step=0):
    metrics = {}
    return SimpleNamespace(state=SimpleNamespace(global_step=step), metrics=metrics,
                           processing_class=SimpleNamespace(decode=lambda ids, skip_special_tokens: str(ids)),
                           _log_metric=lambda k, v: metrics.setdefault(k, []).append(v))


def make_rollout(by_task, dynamic=True, rounds=3):
    rows = [{"prompt": [{"role": "user", "content": f"task {t}"}], "tests": json.dumps([f"assert t{t}"]),
             "task_id": t, "language": "python"} for t in by_task]
    generated = []

    def generation(prompt_ids, trainer, seed, on_finished):
        generated.append(len(prompt_ids))
        out = [[ids[0], k] for k, ids in enumerate(prompt_ids)]
        for k, ids in enumerate(out):
            on_finished(k, ids)
        return out, None

    pool = TaskPool([r["task_id"] for r in rows], retry_after=5)
    rollout = Rollout(rows, lambda prompt: [int(prompt[0]["content"].split()[1])], generation, FakeJudge(by_task),
                      pool, num_generations=2, dynamic_sampling=dynamic, max_rounds=rounds)
    return rollout, rows, generated


def test_groups_without_spread_are_replaced_by_fresh_tasks_and_counted():
    by_task = {"0": [1.0, 1.0], "1": [0.0, 0.0], "2": [1.0, 0.0], "3": [0.0, 1.0]}
    rollout, rows, generated = make_rollout({int(k): v for k, v in by_task.items()})
    trainer = fake_trainer(step=3)
    prompts = [rows[0]["prompt"]] * 2 + [rows[1]["prompt"]] * 2
    out = rollout(prompts, trainer)
    # tasks 0 (all passed) and 1 (all failed) dropped; two fresh tasks with spread take their place
    kept = out["task_id"][::2]
    assert sorted(kept) == [2, 3] and len(out["completion_ids"]) == 4 and out["logprobs"] is None
    assert out["prompt_ids"] == [[t] for t in out["task_id"]]  # prompts and columns follow the generated task
    assert [c[0] for c in out["completion_ids"]] == out["task_id"]
    assert out["tests"] == [rows[t]["tests"] for t in out["task_id"]]
    m = trainer.metrics
    assert m["groups/dropped_all_passed"] == [1.0] and m["groups/dropped_all_failed"] == [1.0]
    assert m["groups/filled_without_spread"] == [0.0] and m["groups/rounds"] == [2.0]
    assert rollout.pool.state[0] == "retired" and rollout.pool.state[1] == "waiting"
    assert generated[0] == 4  # round 1: the sampler's 2 groups x 2 samples

    # the retired task comes back from the sampler: swapped for a usable one before generating
    trainer = fake_trainer(step=4)
    out = rollout([rows[0]["prompt"]] * 2 + [rows[2]["prompt"]] * 2, trainer)
    assert 0 not in out["task_id"] and trainer.metrics["groups/swapped_by_curriculum"][0] >= 1.0


def test_a_step_short_of_informative_groups_is_filled_and_says_so():
    rollout, rows, _ = make_rollout({0: [1.0, 1.0], 1: [0.0, 0.0], 2: [None, None]}, rounds=2)
    trainer = fake_trainer()
    out = rollout([rows[0]["prompt"]] * 2 + [rows[1]["prompt"]] * 2, trainer)
    assert len(out["completion_ids"]) == 4  # the batch keeps its shape
    assert trainer.metrics["groups/filled_without_spread"] == [2.0]
    assert trainer.metrics["groups/dropped_unjudged"] == [1.0]


def test_without_dynamic_sampling_the_sampler_s_groups_are_kept():
    rollout, rows, generated = make_rollout({0: [1.0, 1.0], 1: [0.0, 0.0]}, dynamic=False)
    out = rollout([rows[0]["prompt"]] * 2 + [rows[1]["prompt"]] * 2, fake_trainer())
    assert out["task_id"] == [0, 0, 1, 1] and generated == [4]


def test_spread_reason():
    assert spread_reason([1.0, 0.0, None]) is None
    assert spread_reason([1.0, 1.0, None]) == "all_passed" and spread_reason([0.0, 0.0]) == "all_failed"
    assert spread_reason([0.5, 0.5]) == "same_reward" and spread_reason([None, 1.0]) == "unjudged"


def test_curriculum_retires_defers_and_retries(tmp_path):
    pool = TaskPool(["a", "b", "c"], retry_after=3)
    pool.record(0, [1.0, 1.0], step=0)
    pool.record(1, [0.0, 0.0, None], step=0)
    assert not pool.usable(0, 100) and not pool.usable(1, 2) and pool.usable(1, 3)
    assert pool.draw(5, step=1, exclude=set()) == [2] and set(pool.draw(5, step=3, exclude=set())) == {1, 2}
    pool.record(1, [1.0, 0.0], step=3)
    assert pool.state[1] == "active" and pool.events == {"retired": 1, "deferred": 1, "retried": 1}

    judged = tmp_path / "frontier.judged.jsonl"
    rows = [("a", True), ("a", True), ("b", False), ("b", False), ("c", True), ("c", False), ("c", None)]
    judged.write_text("".join(json.dumps({"task_id": t, "passed": p, "status": "ok" if p is not None else
                                          "unavailable"}) + "\n" for t, p in rows))
    fresh = TaskPool(["a", "b", "c"], retry_after=3)
    assert fresh.seed_from_judged(judged) == {"retired": 1, "waiting": 1, "tasks_with_samples": 3}
    assert fresh.state == ["retired", "waiting", "active"]
    judged.write_text('{"task": 1}\n')
    with pytest.raises(ValueError, match="frontier.judged.jsonl:1"):
        fresh.seed_from_judged(judged)


CODE = "```python\ndef double(x):\n    return {body}\n```"
TESTS = ["assert double(1) == 2", "assert double(3) == 6"]


def test_early_judge_scores_as_the_reward_and_the_reward_reuses_its_reports(monkeypatch):
    from coder_align import sandbox
    from coder_align.rewards import early, execution

    completions = [CODE.format(body="2 * x"), CODE.format(body="2"), CODE.format(body="x +")]
    row = {"tests": json.dumps(TESTS), "language": "python"}
    judge = early.EarlyJudge({"compile_error_penalty": -0.5})
    for i, text in enumerate(completions):
        judge.submit(i, text, row)
    values = judge.wait()
    assert values == {0: 1.0, 1: 0.0, 2: -0.5}
    assert judge.busy_seconds > 0 and judge.busy_before(time.perf_counter()) == pytest.approx(judge.busy_seconds)
    assert judge.busy_before(judge.intervals[0][0]) == 0.0

    ran = []
    real = sandbox.check_many
    monkeypatch.setattr(sandbox, "check_many", lambda jobs, **kw: ran.append(len(jobs)) or real(jobs, **kw))
    again = execution.unit_test_reward(completions, [TESTS] * 3, compile_error_penalty=-0.5)
    assert again == [1.0, 0.0, -0.5] and ran == []  # every report was already there
    assert execution.unit_test_reward(completions[:1], [TESTS]) == [1.0] and ran == [1]  # taken once


def test_reward_logs_unavailable_share_and_shown_pass_hidden_fail(monkeypatch):
    from coder_align import sandbox
    from coder_align.rewards.execution import unit_test_reward
    from coder_align.rewards.signals import shown_tests

    prompt = f"Write double(x).\nYour code should pass this test:\n{TESTS[0]}"
    shown = shown_tests(prompt, ["import math", *TESTS])
    assert shown == [TESTS[0]]
    hacked = CODE.format(body="2 if x == 1 else 0")  # fits the shown example only
    honest = CODE.format(body="2 * x")
    logged = {}
    values = unit_test_reward([hacked, honest, CODE.format(body="0")], [TESTS] * 3, shown_tests=[shown] * 3,
                              log_metric=logged.__setitem__)
    assert values == [0.0, 1.0, 0.0]
    assert logged == {"code/unavailable_share": 0.0, "code/shown_pass_hidden_fail": pytest.approx(1 / 3)}

    def broken(jobs, **kwargs):
        raise OSError("no bubblewrap")

    monkeypatch.setattr(sandbox, "check_many", broken)
    logged.clear()
    assert unit_test_reward([honest], [TESTS], log_metric=logged.__setitem__) == [None]
    assert logged == {"code/unavailable_share": 1.0}  # unjudged: neither wrong nor a shown-test pass


def test_rollout_prompts_are_trl_s_and_greedy_completions_serve_validation(lora_policy, tmp_path):
    """Built as grpo.main builds it: the rollout tokenizes a prompt exactly as TRL would, and
    `greedy` (the hook a validation pass@1 during training calls) follows the policy."""
    from trl import GRPOConfig as TRLGRPOConfig

    from coder_align.data.grpo_rows import to_dataset
    from coder_align.grpo import GRPOSettings, make_rollout, with_shown_tests
    from coder_align.rewards import RewardSet
    from coder_align.training.trainers import CodeGRPOTrainer

    model, tokenizer = lora_policy
    tasks = [{"prompt": [{"role": "user", "content": f"Write f{i}(x).\n{t}"}], "tests": [t], "language": "python",
              "task_id": str(i)} for i, t in enumerate(["assert f0(1) == 1", "assert f1(2) == 4"])]
    dataset = to_dataset(with_shown_tests(tasks))
    assert dataset[0]["shown_tests"] == ["assert f0(1) == 1"]
    rewards = RewardSet({"format": 1.0})
    rollout = make_rollout(GRPOSettings(num_generations=2, max_completion_length=5, rollout_processes=1),
                           dataset.to_list(), tokenizer, rewards, seed=0)
    rollout.generation.dtype = "float32"  # bf16 (where native) could pick another greedy token than generate's
    args = TRLGRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, num_generations=2,
                         max_completion_length=5, report_to=[], use_cpu=True)
    trainer = CodeGRPOTrainer(model=model, reward_funcs=rewards.functions(), args=args, train_dataset=dataset,
                              processing_class=tokenizer, rollout_func=rollout)
    try:
        prompts = [t["prompt"] for t in tasks]
        assert trainer._tokenize_prompts(prompts)[0] == [rollout.tokenize(p) for p in prompts]
        model.eval()
        texts = rollout.greedy(dataset.to_list(), trainer)
        expected = [tokenizer.decode(greedy(model, rollout.tokenize(p), 5), skip_special_tokens=True) for p in prompts]
        assert texts == expected
    finally:
        rollout.close()
        model.train()


def test_a_group_split_between_processes_is_refused():
    rollout, rows, _ = make_rollout({0: [1.0, 0.0], 1: [0.0, 1.0]})
    with pytest.raises(RuntimeError, match="whole groups of 2"):
        rollout([rows[0]["prompt"], rows[1]["prompt"]], fake_trainer())
    with pytest.raises(RuntimeError, match="whole groups of 2"):
        rollout([rows[0]["prompt"]] * 3, fake_trainer())
