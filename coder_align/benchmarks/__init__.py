"""The code benchmarks in one place: where their data lives, how they prompt, how they test.

HumanEval, MBPP (sanitized) and HumanEval single-line infilling are used by four parts of
the project -- GRPO training rows, evaluation, corpus decontamination and the sandbox's
MBPP test -- and must mean the same thing in each: the same split ids, the same prompt
bytes for a mode, the same test program. They all import it from here.

- `sources`: default paths, file and hub loaders, MBPP's split ids, and `validation_split()`:
  the held-out split no stage trains on and every choice between stages is made on.
- `prompts`: the prompt for each mode and the test program (MBPP's set-up lines run in the
  candidate's module too, as its one-module harness runs them: the sandbox does that).
- `extract`: the code in a model's answer (fenced blocks), for rewards and evaluation.
- `decontam`: the 10-gram rule that keeps benchmark text out of training data (the corpus
  build and every data maker use it).

Not here: Problem/Task objects and scoring (`coder_align.evaluation`), GRPO row validation
(`coder_align.data.grpo_rows`), running code (`coder_align.sandbox`).
"""

from coder_align.benchmarks.extract import code_blocks, extract_code
from coder_align.benchmarks.prompts import (
    HUMANEVAL_INSTRUCT, MBPP_ALWAYS_IMPORTED, MBPP_BASE, MBPP_INSTRUCT, humaneval_instruct_prompt,
    humaneval_test_program, mbpp_base_prompt, mbpp_instruct_prompt, mbpp_setup, python_answer,
)
from coder_align.benchmarks.sources import (
    DATA_ENV, INFILLING_FILE, MBPP_FILE, MBPP_HUB, MBPP_SPLITS, BenchmarkDataMissing, BenchmarkError, data_dirs,
    find_data, humaneval_path, infilling_path, mbpp_source, mbpp_task_id, plain_task_id, read_jsonl, read_mbpp,
    split_ids, validation_split,
)

__all__ = [
    "BenchmarkDataMissing", "BenchmarkError", "DATA_ENV", "HUMANEVAL_INSTRUCT", "INFILLING_FILE",
    "MBPP_ALWAYS_IMPORTED", "MBPP_BASE", "MBPP_FILE", "MBPP_HUB", "MBPP_INSTRUCT", "MBPP_SPLITS", "code_blocks",
    "data_dirs", "extract_code", "find_data", "humaneval_instruct_prompt", "humaneval_path", "humaneval_test_program",
    "infilling_path", "mbpp_base_prompt", "mbpp_instruct_prompt", "mbpp_setup", "mbpp_source", "mbpp_task_id",
    "plain_task_id", "python_answer", "read_jsonl", "read_mbpp", "split_ids", "validation_split",
]
