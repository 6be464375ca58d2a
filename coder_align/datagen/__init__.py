"""Making training data: a model's own answers sampled and judged in the sandbox, and every
data maker of `coder-align data` and `coder-align rm data`.

- `self_sampling`: k answers per task through eval's generator and prompts, each judged against
  all of the task's tests (`sample_and_judge`); RFT, the difficulty filter and `rm data` use it.
- `verdicts`: judged samples written and read back, whichever stage wrote them.
- `difficulty`: the tasks a model sometimes solves, for GRPO.
- `rm_data` and `mutants`: reward-model rows from samples, earlier verdicts, references and mutants.
- `docstrings` (with `function_source` and `licences`): SFT rows from documented functions.
- `mbpp_sft`: MBPP's rows outside the test split as SFT rows.
- `cli`: `coder-align data ...`.

Every maker checks its rows against the benchmarks (`coder_align.benchmarks.decontam`) or
refuses held-out tasks. Not here: reading rows to train on (`coder_align.data`), training.
"""
