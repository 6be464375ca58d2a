"""Batched generation: transformers on CPU/GPU, vLLM when it is installed and a GPU is there.

Both backends take prompt *texts* and return, per prompt, `n` generated texts with the
prompt removed. Stop strings end a sequence early to save time; the caller still cuts
completions at the stops (tasks.cut_at_stops), because a stop string can end mid-token
and transformers keeps the whole token.

`GeneratorSpec` says which model to load and how (its `Run`, dtype, backend, CPU processes
x threads); `load_generator` loads it and `generate_with_clipping` splits the prompts over
processes on a CPU, each child loading the model from the same spec. `eval run`, RFT, the
difficulty filter and reward-model data all generate this way.

Not here: prompts and templates (prompts.py, tasks.py), continuous batching itself (batching.py).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from coder_align.cli import quiet_if_started_by_cli
from coder_align.config import ModelConfig
from coder_align.evaluation.batching import continuous_generate
from coder_align.models.loading import load_model, load_tokenizer, resolve_model_path, stop_token_ids
from coder_align.models.merge import load_merged, merge
from coder_align.models.threads import cpu_threads, usable_cores
from coder_align.run_dir import Run

log = logging.getLogger(__name__)

SHARDED_MODEL_BYTES = 4 << 30  # larger models would hold one copy per process


@dataclass
class GenerationSettings:
    n: int = 1
    temperature: float = 0.0  # 0: greedy
    top_p: float = 0.95
    max_new_tokens: int = 512
    batch_size: int = 8
    seed: int = 0


class ProgressCount:
    """Completions finished, logged every 50 and at the end. Over all processes when
    `generate_with_clipping` splits the work (`_SHARED`): each adds to one shared counter and
    the main process logs the total, not its own share."""

    def __init__(self, rows: int):
        self.done, self.rows, self.logged = 0, rows, [0]

    def add(self) -> None:
        self.done += 1
        counter, total, logged = _SHARED if _SHARED is not None else (None, self.rows, self.logged)
        if counter is not None:
            with counter.get_lock():
                counter.value += 1
                done = counter.value
        else:
            done = self.done
        if done // 50 > logged[0] // 50 or done == total:
            logged[0] = done
            log.info("generated %d/%d completions", done, total)


# (shared counter, completions in all, [the last count this process logged]) while generation
# is split over processes
_SHARED: tuple | None = None


def _share_progress(counter, total: int, parent: int | None = None) -> None:
    """ProcessPoolExecutor initializer: the children count into the parent's counter (None: stop
    sharing), and end with the parent."""
    global _SHARED
    _SHARED = (counter, total, [0]) if counter is not None else None
    if parent is not None:
        exit_with_parent(parent)


def exit_with_parent(parent: int) -> None:
    """In a spawned generation process: be killed when `parent` dies. Otherwise a parent that is
    killed (`kill`, the OOM killer, a session ending) leaves its children generating their whole
    share for nobody: minutes of CPU on a machine others share. Linux only (prctl)."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


def vllm_usable() -> bool:
    """vLLM only with a GPU; its import is optional and never required."""
    try:
        import torch

        if not torch.cuda.is_available():
            return False
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


class HFGenerator:
    """transformers models through `batching.continuous_generate`: a finished row's place goes
    to the next prompt at once, longest prompts first so that prompts prefilled together
    share a length."""

    backend = "transformers"

    def __init__(self, model, tokenizer, stop_ids: list[int]):
        self.model, self.tokenizer, self.stop_ids = model, tokenizer, stop_ids
        self.model.eval()
        self.model.config.use_cache = True

    def generate(self, prompts: list[str], settings: GenerationSettings, stops: list[str],
                 add_special_tokens: bool = True) -> list[list[str]]:
        return self.generate_with_clipping(prompts, settings, stops, add_special_tokens)[0]

    def generate_with_clipping(self, prompts: list[str], settings: GenerationSettings, stops: list[str],
                               add_special_tokens: bool = True) -> tuple[list[list[str]], list[list[bool]]]:
        """`generate`'s texts, and per text whether it ran into max_new_tokens (no stop token
        or stop string ended it): a clipped answer is not one to train on."""
        tok = self.tokenizer
        greedy = settings.temperature <= 0
        # Greedy samples are identical: generate one and repeat it.
        per_prompt = 1 if greedy else settings.n
        ids = [tok(p, add_special_tokens=add_special_tokens).input_ids for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -len(ids[i]))
        rows = [i for i in order for _ in range(per_prompt)]
        count = ProgressCount(len(rows))

        def progress(_row: int, _tokens: list[int]) -> None:
            count.add()

        pad = tok.pad_token_id if tok.pad_token_id is not None else self.stop_ids[0]
        generated = continuous_generate(
            self.model, [ids[i] for i in rows], max_new_tokens=settings.max_new_tokens,
            batch_size=settings.batch_size, stop_ids=self.stop_ids, pad_id=pad,
            temperature=settings.temperature, top_p=settings.top_p, seed=settings.seed, stop_strings=stops,
            decode=lambda t: tok.decode(t, skip_special_tokens=True), on_finished=progress)
        results: list[list[str]] = [[] for _ in prompts]
        clipped: list[list[bool]] = [[] for _ in prompts]
        stop_set = set(self.stop_ids)
        for i, tokens, text in zip(rows, generated, tok.batch_decode(generated, skip_special_tokens=True)):
            results[i].append(text)
            clipped[i].append(len(tokens) >= settings.max_new_tokens and not stop_set.intersection(tokens[-1:])
                              and not any(s in text for s in stops))
        if greedy:
            return [r * settings.n for r in results], [c * settings.n for c in clipped]
        return results, clipped


class VLLMGenerator:
    """vLLM's offline engine; stop strings and stop token ids are applied by vLLM itself."""

    backend = "vllm"

    def __init__(self, model_path: str, tokenizer, stop_ids: list[int], dtype: str = "auto"):
        from vllm import LLM

        self.tokenizer, self.stop_ids = tokenizer, stop_ids
        self.llm = LLM(model=model_path, tokenizer=model_path, dtype=dtype)

    def generate(self, prompts: list[str], settings: GenerationSettings, stops: list[str],
                 add_special_tokens: bool = True) -> list[list[str]]:
        return self.generate_with_clipping(prompts, settings, stops, add_special_tokens)[0]

    def generate_with_clipping(self, prompts: list[str], settings: GenerationSettings, stops: list[str],
                               add_special_tokens: bool = True) -> tuple[list[list[str]], list[list[bool]]]:
        from vllm import SamplingParams

        greedy = settings.temperature <= 0
        # older vLLM refuses n > 1 with greedy sampling; the samples would be identical anyway
        params = SamplingParams(n=1 if greedy else settings.n, temperature=max(settings.temperature, 0.0),
                                top_p=1.0 if greedy else settings.top_p,
                                max_tokens=settings.max_new_tokens, stop=stops or None,
                                stop_token_ids=self.stop_ids, seed=settings.seed)
        # Token ids, so BOS handling matches the transformers path exactly.
        ids = [self.tokenizer(p, add_special_tokens=add_special_tokens).input_ids for p in prompts]
        outputs = self.llm.generate([{"prompt_token_ids": i} for i in ids], params)
        texts = [[o.outputs[0].text] * settings.n if greedy else [c.text for c in o.outputs] for o in outputs]
        clipped = [[o.outputs[0].finish_reason == "length"] * settings.n if greedy
                   else [c.finish_reason == "length" for c in o.outputs] for o in outputs]
        return texts, clipped


@dataclass(frozen=True)
class GeneratorSpec:
    """Which model to generate with, and how; picklable, so child processes load the same."""

    run: Run  # weights, adapter, tokenizer, template and system prompt (`run_dir.read_run`)
    dtype: str = "auto"  # `auto`: bf16 on GPUs and on CPUs with native bf16 (`generation_dtype`)
    backend: str = "auto"  # auto: vLLM on a GPU when installed
    processes: int | None = None  # CPU: None is one single-thread process per core for small models
    threads: int | None = None
    work_dir: str = "outputs"  # where vLLM's merged copy of an adapter goes


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


def load_generator(spec: GeneratorSpec):
    """(generator, tokenizer) for `spec.run`: an output directory of ours brings its base
    weights, adapter, template and system prompt."""
    import torch

    run = spec.run
    dtype = generation_dtype(spec.dtype)
    tokenizer = load_tokenizer(run.tokenizer, run.template, run.system_prompt)
    stops = stop_token_ids(tokenizer, run.template)
    if spec.backend == "vllm" or (spec.backend == "auto" and vllm_usable()):
        weights = run.weights
        if run.adapter:  # vLLM takes full weights: fold the adapter in once, beside the results
            weights = str(merge(run, Path(spec.work_dir) / "merged_model",
                                dtype=dtype if dtype != "auto" else "bfloat16"))
            log.info("merged adapter %s into %s for vLLM", run.adapter, weights)
        return VLLMGenerator(resolve_model_path(weights), tokenizer, stops, dtype), tokenizer
    if run.adapter:  # a LoRA/QLoRA output directory: evaluate base + adapter merged
        model, _ = load_merged(run, dtype=dtype)
        model.eval()
    else:
        model_config = ModelConfig(path=run.weights, dtype=dtype, gradient_checkpointing=False)
        model = load_model(model_config, tokenizer, None, training=False, template=run.template)
    if torch.cuda.is_available():  # load_model leaves weights where from_pretrained put them (CPU)
        model.to("cuda")
    return HFGenerator(model, tokenizer, stops), tokenizer


def plan_processes(spec: GeneratorSpec, generator, prompts: int) -> tuple[int, int | None]:
    """(processes, torch threads each) for generating `prompts` completions."""
    import torch

    if generator.backend != "transformers" or torch.cuda.is_available():
        return 1, spec.threads
    cores = usable_cores()  # the cores this process may use, not the machine's
    processes = spec.processes
    if processes is None:
        weights = sum(p.numel() * p.element_size() for p in generator.model.parameters())
        processes = cores if weights < SHARDED_MODEL_BYTES else 1
    processes = max(1, min(processes, prompts))
    # one process: as many threads as other jobs leave cores free (more spin at OpenMP barriers)
    threads = spec.threads or (max(1, cores // processes) if processes > 1 else cpu_threads())
    return processes, threads


def texts_and_clipping(generator, prompts: list[str], settings: GenerationSettings, stops: list[str],
                       add_special: bool) -> tuple[list[list[str]], list[list[bool]]]:
    """The generator's texts and, per text, whether it ran into max_new_tokens (all False for a
    generator that cannot tell)."""
    if hasattr(generator, "generate_with_clipping"):
        return generator.generate_with_clipping(prompts, settings, stops, add_special_tokens=add_special)
    texts = generator.generate(prompts, settings, stops, add_special_tokens=add_special)
    return texts, [[False] * len(outs) for outs in texts]


def _generate_shard(spec: GeneratorSpec, prompts: list[str], settings: GenerationSettings, stops: list[str],
                    add_special: bool, threads: int | None) -> tuple[list[list[str]], list[list[bool]]]:
    """In a child process: load the model as the parent did and generate one shard."""
    import torch

    quiet_if_started_by_cli()

    if threads:
        torch.set_num_threads(threads)
    generator, _ = load_generator(spec)
    return texts_and_clipping(generator, prompts, settings, stops, add_special)


def generate_with_clipping(spec: GeneratorSpec, generator, prompts: list[str], settings: GenerationSettings,
                           stops: list[str], add_special: bool) -> tuple[list[list[str]], list[list[bool]]]:
    """Texts per prompt, and whether each ran into max_new_tokens, split over `plan_processes`
    processes on CPU: this process takes one shard, spawned children (each loading the model)
    the others. Shards interleave the prompts sorted by length, so each gets a similar mix.
    Sampled runs give shard k the seed `seed + k`: results depend on the number of processes
    (greedy ones do not)."""
    import torch

    processes, threads = plan_processes(spec, generator, len(prompts))
    if threads:
        torch.set_num_threads(threads)
    if processes == 1:
        return texts_and_clipping(generator, prompts, settings, stops, add_special)
    by_length = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    shards = [by_length[k::processes] for k in range(processes)]
    log.info("generating in %d processes of %s thread(s)", processes, threads)
    results: list[list[str]] = [[] for _ in prompts]
    clipped: list[list[bool]] = [[] for _ in prompts]
    context = multiprocessing.get_context("spawn")
    total = len(prompts) * (1 if settings.temperature <= 0 else settings.n)  # as HFGenerator counts rows
    _share_progress(context.Value("l", 0), total)
    try:
        with ProcessPoolExecutor(processes - 1, mp_context=context, initializer=_share_progress,
                                 initargs=(*_SHARED[:2], os.getpid())) as pool:
            futures = [pool.submit(_generate_shard, spec, [prompts[i] for i in shard],
                                   replace(settings, seed=settings.seed + k), stops, add_special, threads)
                       for k, shard in enumerate(shards[1:], start=1)]
            mine = texts_and_clipping(generator, [prompts[i] for i in shards[0]], settings, stops, add_special)
            for shard, (texts, cut) in zip(shards, [mine] + [f.result() for f in futures]):
                for i, text, c in zip(shard, texts, cut):
                    results[i], clipped[i] = text, c
        if _SHARED[2][0] < total:  # the last completions were a child's: counted, but not logged here
            log.info("generated %d/%d completions", _SHARED[0].value, total)
    finally:
        _share_progress(None, 0)
    return results, clipped


def generate(spec: GeneratorSpec, generator, prompts: list[str], settings: GenerationSettings, stops: list[str],
             add_special: bool) -> list[list[str]]:
    """`generate_with_clipping`'s texts."""
    return generate_with_clipping(spec, generator, prompts, settings, stops, add_special)[0]
