"""The DeepSeek-Coder-V2 question, measured: which signal predicts the verdict on a task's
hidden tests better, the one test the prompt shows, or a reward model trained on execution?

V2 trained a reward model because "some code prompts may have a limited number of test cases
... directly using 0-1 feedback from the compiler may be noisy". Here, on held-out tasks whose
prompt shows one test and that have more (MBPP validation, ids 511-600: 43 tasks, 3 asserts,
the first shown, as GRPO and eval prompt them), each of k sampled completions is judged twice in
the sandbox, on the shown test and on the hidden ones, and scored by the reward model. Printed:
AUC against the hidden-test verdict of

  (a) the shown test's 0/1,
  (b) the reward model's score,
  (c) 0.5 * shown + 0.5 * sigmoid(score), what `grpo.rewards={unit_test: 0.5, reward_model: 0.5}`
      would give if the shown test were the only test at hand,

on all completions and on those that pass the shown test (where (a) cannot tell them apart),
with 95% intervals from a bootstrap over tasks, and the counts. `--mutants N` adds the held-out
tasks' reference solutions and N mutants of each as a second population (reported apart).

    python benchmarks/reward_model_auc.py --policy embedded --rm outputs/rm-embedded \\
        --tasks data_templates/mbpp_train.jsonl --task-ids validation --k 16 --samples outputs/v2/heldout.jsonl

The samples file (completions and both verdicts) is written once and reused when it exists,
so a retrained reward model is compared on the same completions.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from coder_align import benchmarks  # noqa: E402
from coder_align.benchmarks.extract import extract_code  # noqa: E402
from coder_align.rewards.reward_model import auc  # noqa: E402


def split_tests(task: dict) -> tuple[list[str], list[str]] | None:
    """(shown, hidden) test lists of an MBPP task, each after the task's setup; None when the
    prompt shows every test (nothing is hidden)."""
    row = task["row"]
    asserts = row["test_list"]
    if len(asserts) < 2:
        return None
    setup = benchmarks.mbpp_setup(row)
    return setup + asserts[:1], setup + asserts[1:]


def judge_both(tasks: list[dict], answers: list[list[tuple[str, str]]], timeout: float) -> list[dict]:
    """Each (source, completion) judged on the shown test and on the hidden tests."""
    from coder_align.sandbox import check_many

    jobs, meta = [], []
    for task, per_task in zip(tasks, answers):
        shown, hidden = split_tests(task)
        for source, completion in per_task:
            code = extract_code(completion, "python")
            jobs += [{"source": code, "tests": shown, "timeout": timeout},
                     {"source": code, "tests": hidden, "timeout": timeout}]
            meta.append((task, source, completion))
    reports = check_many(jobs, return_exceptions=True)
    records = []
    for i, (task, source, completion) in enumerate(meta):
        shown, hidden = reports[2 * i], reports[2 * i + 1]
        records.append({"task_id": task["task_id"], "source": source, "completion": completion,
                        "shown_status": shown.status, "hidden_status": hidden.status,
                        "shown": None if shown.status == "unavailable" else bool(shown.passed),
                        "hidden": None if hidden.status == "unavailable" else bool(hidden.passed)})
    return records


def reference_answers(tasks: list[dict], n: int, seed: int) -> list[list[tuple[str, str]]]:
    """Per task: ("reference", its normalised reference) and ("mutant", ...) answers, as `rm data` makes them."""
    from collections import Counter

    from coder_align.datagen.rm_data import reference_answers as normalised

    answers, meta = normalised(tasks, n, seed, Counter())
    return [[(source, text) for text, (source, _) in zip(a, m)] for a, m in zip(answers, meta)]


def bootstrap(records: list[dict], measure, rounds: int = 1000, seed: int = 0) -> list[float] | None:
    """95% interval of `measure(records)` over resamples of whole tasks."""
    by_task: dict[str, list[dict]] = {}
    for r in records:
        by_task.setdefault(r["task_id"], []).append(r)
    tasks = sorted(by_task)
    rng = random.Random(seed)
    values = []
    for _ in range(rounds):
        sample = [r for t in (rng.choice(tasks) for _ in tasks) for r in by_task[t]]
        value = measure(sample)
        if value is not None:
            values.append(value)
    if len(values) < rounds // 2:
        return None
    values.sort()
    return [round(values[int(0.025 * len(values))], 4), round(values[int(0.975 * len(values)) - 1], 4)]


def measures(records: list[dict]) -> dict:
    """AUC of each signal against the hidden verdict, with intervals and counts."""
    signals = {
        "shown test 0/1": lambda r: float(r["shown"]),
        "reward model score": lambda r: r["rm_score"],
        "0.5 shown + 0.5 sigmoid(score)": lambda r: 0.5 * r["shown"] + 0.5 / (1 + math.exp(-r["rm_score"])),
    }
    out = {"completions": len(records), "tasks": len({r["task_id"] for r in records}),
           "hidden_pass": sum(r["hidden"] for r in records), "shown_pass": sum(r["shown"] for r in records),
           "shown_pass_hidden_fail": sum(r["shown"] and not r["hidden"] for r in records),
           "shown_fail_hidden_pass": sum(r["hidden"] and not r["shown"] for r in records), "auc": {}}
    for name, signal in signals.items():
        def area(rs, signal=signal):
            return auc([signal(r) for r in rs], [r["hidden"] for r in rs])

        value = area(records)
        out["auc"][name] = {"auc": None if value is None else round(value, 4), "ci95": bootstrap(records, area)}
    return out


def print_block(title: str, m: dict) -> None:
    print(f"\n{title}: {m['completions']} completions of {m['tasks']} tasks; hidden tests passed by "
          f"{m['hidden_pass']}, shown test by {m['shown_pass']} (shown pass / hidden fail: "
          f"{m['shown_pass_hidden_fail']}, shown fail / hidden pass: {m['shown_fail_hidden_pass']})")
    for name, entry in m["auc"].items():
        ci = entry["ci95"]
        interval = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "n/a"
        value = "n/a (one class only)" if entry["auc"] is None else f"{entry['auc']:.3f}"
        print(f"  AUC vs hidden verdict, {name:32s} {value}  95% CI {interval}")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--policy", default="embedded", help="the model whose completions are judged")
    p.add_argument("--rm", default=None, help="reward model directory (coder-align rm train); without it, "
                                               "only sample and judge (write --samples) and stop")
    p.add_argument("--tasks", default=str(REPO / "data_templates" / "mbpp_train.jsonl"))
    p.add_argument("--task-ids", default="validation", help="held-out tasks: never ones the reward model saw")
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--max-new-tokens", type=int, default=384)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mutants", type=int, default=0, help="also the held-out references and N mutants of each")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--samples", required=True, help="completions with both verdicts (written once, then reused)")
    p.add_argument("--out", default=None, help="results JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from coder_align.datagen.self_sampling import SamplingConfig, load_tasks, sample
    from coder_align.evaluation.generation import GeneratorSpec
    from coder_align.rewards.reward_model import scorer
    from coder_align.run_dir import read_run

    # held-out tasks are measured on, not trained on: read them as eval does (training pools leave them out)
    tasks, _ = load_tasks(args.tasks, args.task_ids, training=False)
    tasks = [t for t in tasks if split_tests(t)]
    samples = Path(args.samples)
    if samples.is_file():
        records = [json.loads(line) for line in samples.read_text().splitlines()]
        print(f"reusing {len(records)} judged completions from {samples}")
    else:
        answers: list[list[tuple[str, str]]] = [[] for _ in tasks]
        if args.k:
            sampling = SamplingConfig(k=args.k, temperature=args.temperature, top_p=0.95,
                                      max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=args.seed)
            completions, _ = sample(GeneratorSpec(read_run(args.policy), work_dir=str(samples.parent)), tasks, sampling)
            answers = [[("sample", c) for c in per_task] for per_task in completions]
        if args.mutants:
            answers = [a + b for a, b in zip(answers, reference_answers(tasks, args.mutants, args.seed))]
        records = judge_both(tasks, answers, args.timeout)
        samples.parent.mkdir(parents=True, exist_ok=True)
        samples.write_text("".join(json.dumps(r) + "\n" for r in records))
    if not args.rm:
        print(f"{len(records)} judged completions in {samples}; no --rm given, so nothing is scored")
        return {}
    by_id = {t["task_id"]: t for t in tasks}
    unjudged = [r for r in records if r["shown"] is None or r["hidden"] is None]
    judged = [r for r in records if r not in unjudged]
    model = scorer(args.rm)
    scores = model.score([by_id[r["task_id"]]["prompt"] for r in judged], [r["completion"] for r in judged])
    for r, s in zip(judged, scores):
        r["rm_score"] = s
    print(f"policy {args.policy}, reward model {args.rm}; {len(tasks)} held-out tasks ({args.task_ids}); "
          f"{len(records)} completions, {len(unjudged)} left out (the sandbox could not judge them), "
          f"{model.truncated} scored on their last {model.max_length} tokens")
    results = {"policy": args.policy, "rm": args.rm, "task_ids": args.task_ids, "unjudged": len(unjudged)}
    policy = [r for r in judged if r["source"] == "sample"]
    for key, title, rows in (
            ("samples", "policy samples", policy),
            ("samples_passing_shown", "policy samples that pass the shown test", [r for r in policy if r["shown"]]),
            ("references_and_mutants", "reference solutions and their mutants",
             [r for r in judged if r["source"] != "sample"])):
        if rows:
            results[key] = measures(rows)
            print_block(title, results[key])
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
