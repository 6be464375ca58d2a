"""The pieces of the evaluation stage (`coder_align/evaluate.py`), which RFT, the difficulty
filter and reward-model data also generate through.

- `config`: `EvalConfig` and its groups; `generator_spec`, how `eval run` loads its model.
- `tasks`: HumanEval, MBPP, infilling and custom tasks as problems with test programs.
- `prompts`: what a model is asked in each mode, where its answer stops, what is kept.
- `generation`: `GeneratorSpec`, `load_generator`, transformers and vLLM generators, CPU processes.
- `batching`: continuous batching on a KV cache for transformers models.
- `policy_generation`: the same generation on a training policy's live weights (GRPO's CPU rollouts).
- `scoring`: judging samples in the sandbox, pass@k.
- `reference`: the standard harnesses' one-module programs, run to check our verdicts (`eval reference`).
- `report`: report.md, pass-rate charts, comparing two runs.

Not here: running code (`coder_align.sandbox`), benchmark data and prompt wording
(`coder_align.benchmarks`).
"""
