"""What a model is asked and where its answer stops, per task mode, and the completion kept.

- `base`: the prompt is continued (HumanEval, MBPP as a docstring); the task's stop sequences.
- `instruct`: the task asked through the chat template (`chat_prompt`: our DeepSeek template,
  the bytes SFT trained on, or the tokenizer's own); the code is taken from the answer.
- `fim`: single-line infilling with PSM sentinels; the first line is kept.

`chat_prompt`, `chat_stops` and `chat_adds_special_tokens` are shared with self-sampling
(`coder_align.datagen`), so sampled completions answer the prompt eval measures.
Not here: the tasks' data and programs (tasks.py), generating (generation.py).
"""

from __future__ import annotations

from coder_align.config import ConfigError
from coder_align.evaluation.config import EvalConfig
from coder_align.evaluation.tasks import (
    Task, base_prompt, cut_at_stops, drop_unfinished_tail, fim_prompt, first_line, instruct_completion,
    instruct_messages,
)
from coder_align.templates import INSTRUCTION_HEADER, render


def chat_prompt(messages: list[dict], template: str | None, system_prompt: str | None, tokenizer) -> str:
    """The text a chat model is prompted with: our DeepSeek template (`render`, the bytes SFT
    trained on and GRPO's saved chat template gives), or the tokenizer's own."""
    if (template or "deepseek") == "deepseek":
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
                if problem.kind == "generation":  # kept as DeepSeek's `generation`: prompt and continuation
                    completion = problem.prompt + completion
                if problem.kind == "program":  # MBPP: no "\ndef" stop, so a long answer can end mid-def
                    completion = drop_unfinished_tail(completion)
            else:
                completion = instruct_completion(problem, cut_at_stops(text, stops))
            samples.append({"task_id": problem.task_id, "completion": completion, "response": text})
    return samples
