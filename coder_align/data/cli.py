"""`coder-align data COMMAND`: commands that make training data.

    coder-align data difficulty --model outputs/sft --tasks data_templates/mbpp_train.jsonl --k 8 --out frontier.jsonl

- `difficulty`: the tasks a model sometimes solves (0 < passes < k), for GRPO
  (`coder_align.difficulty`; settings `DifficultyConfig`, the flags are aliases of its keys).

Each command's work lives in its own module; this file only parses and dispatches.
"""

from __future__ import annotations

import argparse
import json
import sys

from coder_align.cli import user_error
from coder_align.config import load_config_with_flags, settings_help, show_defaults

# flag (argparse dest) -> (key, add_argument keywords)
DIFFICULTY_FLAGS = {
    "model": ("model.path", {}),
    "tasks": ("data.path", {}),
    "task_ids": ("data.task_ids", {}),
    "format": ("data.format", {}),
    "k": ("sampling.k", {}),
    "temperature": ("sampling.temperature", {}),
    "max_new_tokens": ("sampling.max_new_tokens", {}),
    "batch_size": ("sampling.batch_size", {}),
    "seed": ("sampling.seed", {}),
    "processes": ("sampling.processes", {}),
    "threads": ("sampling.threads", {}),
    "timeout": ("judging.timeout", {}),
    "keep_never": ("keep_never", {"action": "store_const", "const": True}),
    "out": ("output_path", {}),
}


def _parser() -> argparse.ArgumentParser:
    from coder_align.difficulty import DifficultyConfig

    parser = argparse.ArgumentParser(prog="coder-align data", description="Commands that make training data.")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("difficulty", help="keep the tasks a model sometimes solves (0 < passes < k), for GRPO",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="--config FILE and key=value overrides; the --flags are aliases. --keep-never also "
                              "keeps tasks never solved (for a model that solves little).\n\n"
                              + settings_help(DifficultyConfig))
    d.add_argument("--config", "-c", default=None, help="YAML file with settings (groups as in DifficultyConfig)")
    d.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. sampling.top_p=0.9")
    for dest, (key, kwargs) in DIFFICULTY_FLAGS.items():
        d.add_argument(f"--{dest.replace('_', '-')}", dest=dest, default=argparse.SUPPRESS,
                       help=f"same as {key}=...", **kwargs)
    return show_defaults(parser)


def cli(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "difficulty":
        from coder_align.config import ConfigError
        from coder_align.difficulty import DifficultyConfig, main

        flags = {dest: value for dest, value in vars(args).items() if dest in DIFFICULTY_FLAGS}
        keyed = {DIFFICULTY_FLAGS[dest][0]: value for dest, value in flags.items()}
        names = {DIFFICULTY_FLAGS[dest][0]: f"--{dest.replace('_', '-')}" for dest in flags}
        try:
            config = load_config_with_flags(DifficultyConfig, args.config, args.overrides, keyed, names)
        except ConfigError as e:
            return user_error("coder-align data", e)
        summary = main(config)
        print(f"kept {summary['kept']} of {summary['tasks_tried']} tasks (never solved {summary['never_solved']}, "
              f"always solved {summary['always_solved']}, undecided {summary['undecided']}, "
              f"unavailable {summary['unavailable']}); wrote {summary['output']} and its .summary.json, .judged.jsonl")
        print(json.dumps({k: summary[k] for k in ("tasks_tried", "kept", "never_solved", "always_solved",
                                                   "passes_histogram")}))
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
