"""GRPO's rollouts through the evaluation generator: continuous batching (`batching.py`), bf16
where the CPU has it natively (`generation.generation_dtype`), one process per core, on the
policy's *current* weights.

The weights live in one shared-memory buffer in the generation dtype, and every process's
model is views into it: handing the policy over each step is one copy into that buffer,
nothing pickled or reloaded. A LoRA policy is merged for the copy and unmerged after, as
TRL does before it syncs vLLM. Completions stream back as they end (`on_finished`), so the
caller can send them to the sandbox while the rest still generate.

Not here: which prompts, how many samples, what is done with the completions (that is
`coder_align.training.rollout`); evaluation's own generator (`generation.py`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from coder_align.evaluation.batching import continuous_generate
from coder_align.evaluation.generation import SHARDED_MODEL_BYTES, exit_with_parent, generation_dtype

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int
    temperature: float
    top_p: float
    batch_size: int  # rows decoded together in each process
    stop_ids: tuple[int, ...]
    pad_id: int


def generation_name(name: str) -> str | None:
    """The plain model's parameter name for a (possibly peft-wrapped) policy parameter, or
    None for one that is not a weight of the plain model (LoRA factors, saved originals)."""
    if "lora_" in name or ".original_module." in name:
        return None
    return name.replace(".base_layer.", ".").replace(".modules_to_save.default.", ".")


@contextlib.contextmanager
def merged_parameters(policy) -> Iterator[dict]:
    """The policy's weights as the plain model names them, LoRA merged in for the duration."""
    peft = hasattr(policy, "peft_config") and hasattr(policy, "merge_adapter")
    if peft:
        policy.merge_adapter()
    try:
        model = policy.get_base_model() if peft else policy
        named = {}
        for name, parameter in model.named_parameters():
            plain = generation_name(name)
            if plain is not None:
                named[plain] = parameter.detach()
        yield named
    finally:
        if peft:
            policy.unmerge_adapter()


def _attach(model, flat, layout: dict[str, tuple[int, tuple[int, ...]]]) -> None:
    """Make every parameter of `model` a view into `flat` (tied parameters stay tied: they are
    one Parameter object)."""
    missing = []
    for name, parameter in model.named_parameters():
        if name not in layout:
            missing.append(name)
            continue
        offset, shape = layout[name]
        count = 1
        for size in shape:
            count *= size
        parameter.data = flat[offset:offset + count].view(shape)
    if missing:
        raise RuntimeError(f"the policy has no weights for generation parameters {missing[:5]}")


def _generation_model(config, flat, layout):
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=flat.dtype)
    _attach(model, flat, layout)
    model.eval()
    model.config.use_cache = True
    return model


def _worker(config, flat, layout, threads: int | None, tasks, results, parent: int) -> None:
    """A generation process: views of the shared weights, one shard per request, rows sent back as they end."""
    import torch

    exit_with_parent(parent)
    if threads:
        torch.set_num_threads(threads)
    model = _generation_model(config, flat, layout)
    while True:
        task = tasks.get()
        if task is None:
            return
        call, rows, prompts, sampling, seed = task

        def send(i: int, tokens: list[int], call=call, rows=rows) -> None:
            results.put(("row", call, rows[i], list(tokens)))

        try:
            continuous_generate(model, prompts, max_new_tokens=sampling.max_new_tokens,
                                batch_size=sampling.batch_size, stop_ids=sampling.stop_ids, pad_id=sampling.pad_id,
                                temperature=sampling.temperature, top_p=sampling.top_p, seed=seed, on_finished=send)
            results.put(("done", call, None, None))
        except Exception:  # the parent raises it with the child's traceback
            results.put(("error", call, None, traceback.format_exc()))


class PolicyGenerator:
    """Generates from the policy's current weights in `processes` processes (this one
    included); `update(policy)` before each rollout hands the weights over."""

    def __init__(self, policy, processes: int | None = None, threads: int | None = None, dtype: str = "auto"):
        import torch
        import torch.multiprocessing as mp

        name = generation_dtype(dtype)
        self.dtype = getattr(torch, name) if name != "auto" else next(policy.parameters()).dtype
        with merged_parameters(policy) as named:
            self.layout, total = {}, 0
            for key, tensor in named.items():
                self.layout[key] = (total, tuple(tensor.shape))
                total += tensor.numel()
            weight_bytes = total * torch.tensor([], dtype=self.dtype).element_size()
            self.flat = torch.empty(total, dtype=self.dtype).share_memory_()
            config = (policy.get_base_model() if hasattr(policy, "peft_config") else policy).config
        cores = os.cpu_count() or 1
        self.processes = processes or (cores if weight_bytes < SHARDED_MODEL_BYTES else 1)
        self.threads = threads or max(1, cores // self.processes)
        self.update(policy)
        self.model = _generation_model(config, self.flat, self.layout)
        context = mp.get_context("spawn")
        self._results = context.Queue()
        self._tasks = [context.Queue() for _ in range(self.processes - 1)]
        self._workers = [context.Process(target=_worker, daemon=True,
                                         args=(config, self.flat, self.layout, self.threads, q, self._results, os.getpid()))
                         for q in self._tasks]
        for worker in self._workers:
            worker.start()
        self._calls = 0
        log.info("rollouts: %d process(es) x %d thread(s), %s, continuous batching", self.processes, self.threads,
                 name)

    def update(self, policy) -> None:
        """Copy the policy's current weights (LoRA merged) into the shared buffer."""
        import torch

        with torch.no_grad(), merged_parameters(policy) as named:
            for key, (offset, shape) in self.layout.items():
                tensor = named[key]
                self.flat[offset:offset + tensor.numel()].copy_(tensor.reshape(-1))

    def generate(self, prompts: list[list[int]], sampling: Sampling, seed: int,
                 on_finished: Callable[[int, list[int]], None] | None = None) -> list[list[int]]:
        """Completion token ids per prompt; `on_finished(index, tokens)` as each one ends (from
        this thread or a helper thread). Prompts sorted by length are dealt round-robin to the
        processes, so each gets a similar mix."""
        import torch

        self._calls += 1
        call = self._calls
        out: list[list[int] | None] = [None] * len(prompts)
        lock = threading.Lock()

        def finished(index: int, tokens: list[int]) -> None:
            with lock:
                out[index] = list(tokens)
            if on_finished:
                on_finished(index, list(tokens))

        by_length = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        shards = [by_length[k::self.processes] for k in range(self.processes)]
        busy = 0
        for k, (tasks, shard) in enumerate(zip(self._tasks, shards[1:]), start=1):
            if shard:
                tasks.put((call, shard, [prompts[i] for i in shard], sampling, seed * 1000 + k))
                busy += 1
        self._error = None
        drain = threading.Thread(target=self._drain, args=(call, busy, finished), daemon=True)
        drain.start()
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            mine = shards[0]
            continuous_generate(self.model, [prompts[i] for i in mine], max_new_tokens=sampling.max_new_tokens,
                                batch_size=sampling.batch_size, stop_ids=sampling.stop_ids, pad_id=sampling.pad_id,
                                temperature=sampling.temperature, top_p=sampling.top_p, seed=seed * 1000,
                                on_finished=lambda i, tokens: finished(mine[i], tokens))
        finally:
            torch.set_num_threads(previous)
        drain.join()
        if self._error:
            raise RuntimeError(f"a rollout process failed:\n{self._error}")
        return out

    def _drain(self, call: int, busy: int, finished) -> None:
        while busy:
            kind, got, index, payload = self._results.get()
            if got != call:  # left over from a call that failed
                continue
            if kind == "row":
                finished(index, payload)
            else:
                busy -= 1
                if kind == "error":
                    self._error = payload

    def close(self) -> None:
        for tasks in self._tasks:
            tasks.put(None)
        for worker in self._workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
        self._workers = []

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()



class PolicyRollouts:
    """GRPO's `eval_generator` rollout backend (`training.rollout`): `PolicyGenerator` on the
    trainer's policy, its weights handed over once per optimizer step. Completions stream
    (`on_finished` as each ends). Stops on the policy's generation-config EOS ids, the ones TRL
    reads a completion's end by (a stop it did not know would count as clipped)."""

    streams = True

    def __init__(self, max_new_tokens: int, temperature: float, top_p: float, batch_size: int = 16,
                 processes: int | None = None, threads: int | None = None, dtype: str = "auto"):
        self.settings = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p,
                         "batch_size": batch_size}
        self.processes, self.threads, self.dtype = processes, threads, dtype
        self.generator: PolicyGenerator | None = None
        self.sampling: Sampling | None = None
        self._step: int | None = None

    def __call__(self, prompt_ids: list[list[int]], trainer, seed: int,
                 on_finished: Callable[[int, list[int]], None]) -> tuple[list[list[int]], None]:
        self._follow(trainer)
        return self.generator.generate(prompt_ids, self.sampling, seed, on_finished), None

    def greedy(self, prompt_ids: list[list[int]], trainer) -> list[list[int]]:
        """One greedy completion per prompt on the current weights (validation during training)."""
        self._follow(trainer)
        return self.generator.generate(prompt_ids, replace(self.sampling, temperature=0.0), seed=0)

    def _follow(self, trainer) -> None:
        """Start the generator on the trainer's policy, or hand it the weights of a new step."""
        policy = trainer.accelerator.unwrap_model(trainer.model)
        if self.generator is None:
            self.generator = PolicyGenerator(policy, self.processes, self.threads, self.dtype)
            eos = policy.generation_config.eos_token_id
            stops = tuple(eos if isinstance(eos, list) else [eos] if eos is not None else [])
            pad = trainer.processing_class.pad_token_id
            self.sampling = Sampling(stop_ids=stops, pad_id=pad if pad is not None else stops[0], **self.settings)
        elif trainer.state.global_step != self._step:
            self.generator.update(policy)
        self._step = trainer.state.global_step

    def close(self) -> None:
        if self.generator is not None:
            self.generator.close()
