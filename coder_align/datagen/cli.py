"""`coder-align data COMMAND`: commands that make training data.

    coder-align data difficulty --model outputs/sft --tasks data_templates/mbpp_train.jsonl --k 8 --out frontier.jsonl

    coder-align data from-docstrings /usr/lib/python3.11 .venv/lib/python3.11/site-packages --out rows.jsonl --code-out code.jsonl
    coder-align data mbpp-sft --splits prompt,train --out mbpp_sft.jsonl

- `difficulty`: the tasks a model sometimes solves (0 < passes < k), for GRPO
  (`datagen/difficulty.py`; settings `DifficultyConfig`, the flags are aliases of its keys).
- `from-docstrings`: instruction/output pairs (and plain code rows) mined from documented
  functions of licence-clean sources (`datagen/docstrings.py`, `DocstringsConfig`).
- `mbpp-sft`: MBPP's rows outside the test split as SFT rows with the eval's instruct prompt
  (`datagen/mbpp_sft.py`, `MbppSftConfig`).

Each command's work lives in its own module; this file only parses and dispatches.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from coder_align.cli import user_error
from coder_align.config import ConfigError, load_config_with_flags, settings_help, show_defaults
from coder_align.datagen import difficulty, docstrings, mbpp_sft
from coder_align.datagen.difficulty import DifficultyConfig
from coder_align.datagen.docstrings import DocstringsConfig
from coder_align.datagen.mbpp_sft import MbppSftConfig

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
    "judged": ("judged_path", {}),
    "out": ("output_path", {}),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coder-align data", description="Commands that make training data.")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("difficulty", help="keep the tasks a model sometimes solves (0 < passes < k), for GRPO",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="--config FILE and key=value overrides; the --flags are aliases. --keep-never also "
                              "keeps tasks never solved (for a model that solves little). --judged FILE classifies "
                              "on samples an earlier run judged (rft's judged.jsonl, GRPO's completions.jsonl, "
                              "eval's samples_<task>.jsonl) instead of sampling.\n\n"
                              + settings_help(DifficultyConfig))
    d.add_argument("--config", "-c", default=None, help="YAML file with settings (groups as in DifficultyConfig)")
    d.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. sampling.top_p=0.9")
    for dest, (key, kwargs) in DIFFICULTY_FLAGS.items():
        d.add_argument(f"--{dest.replace('_', '-')}", dest=dest, default=argparse.SUPPRESS,
                       help=f"same as {key}=...", **kwargs)
    _add_mining_commands(sub)
    return show_defaults(parser)


# --- from-docstrings and mbpp-sft ---------------------------------------------------------------

DOCSTRINGS_FLAGS = {
    "out": ("output_path", {}),
    "code_out": ("code_output_path", {"metavar": "JSONL"}),
    "summary": ("summary_path", {}),
    "licence": ("data.licences", {"action": "append", "metavar": "DIR=SPDX"}),
    "min_lines": ("filters.min_lines", {}),
    "max_lines": ("filters.max_lines", {}),
    "min_chars": ("filters.min_chars", {}),
    "max_chars": ("filters.max_chars", {}),
    "min_doc_chars": ("filters.min_doc_chars", {}),
    "max_doc_chars": ("filters.max_doc_chars", {}),
    "no_near_dedup": ("dedup.near", {"action": "store_const", "const": False}),
    "mbpp": ("decontam.mbpp", {}),
    "seed": ("seed", {}),
}
MBPP_SFT_FLAGS = {
    "splits": ("splits", {}),
    "mbpp": ("mbpp", {}),
    "out": ("output_path", {}),
    "summary": ("summary_path", {}),
}
_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")  # key=value; anything else on the line is a directory


def _add_flags(parser, flags: dict) -> None:
    for dest, (key, kwargs) in flags.items():
        parser.add_argument(f"--{dest.replace('_', '-')}", dest=dest, default=argparse.SUPPRESS,
                            help=f"same as {key}=...", **kwargs)


def _add_mining_commands(sub) -> None:
    d = sub.add_parser("from-docstrings", help="instruction/output pairs from documented Python functions",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="Licence-clean sources only: the standard library and installed distributions with a "
                              "permissive licence in their metadata; --licence DIR=SPDX declares your own code. "
                              "Rows are decontaminated against HumanEval and the MBPP test split.\n\n"
                              + settings_help(DocstringsConfig))
    d.add_argument("--config", "-c", default=None, help="YAML file with settings (groups as in DocstringsConfig)")
    d.add_argument("args", nargs="*", metavar="DIR | key=value",
                   help="directories of .py files (data.dirs), and dotted key=value overrides")
    _add_flags(d, DOCSTRINGS_FLAGS)
    m = sub.add_parser("mbpp-sft", help="MBPP rows outside the test split as SFT rows (the eval's instruct prompt)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=settings_help(MbppSftConfig))
    m.add_argument("--config", "-c", default=None, help="YAML file with settings (MbppSftConfig)")
    m.add_argument("args", nargs="*", metavar="key=value", help="dotted key=value overrides")
    _add_flags(m, MBPP_SFT_FLAGS)


def _load_mining_config(cls, args, flags: dict):
    given = {dest: value for dest, value in vars(args).items() if dest in flags}
    keyed = {flags[dest][0]: value for dest, value in given.items()}
    names = {flags[dest][0]: f"--{dest.replace('_', '-')}" for dest in given}
    if "data.licences" in keyed:  # --licence DIR=SPDX, repeated -> {DIR: SPDX}
        pairs = [item.rsplit("=", 1) for item in keyed["data.licences"]]
        if any(len(p) != 2 or not p[0] or not p[1] for p in pairs):
            raise ConfigError(f"--licence takes DIR=SPDX (e.g. src=MIT), got {keyed['data.licences']}")
        keyed["data.licences"] = dict(pairs)
    overrides = [a for a in args.args if _OVERRIDE.match(a)]
    dirs = [a for a in args.args if not _OVERRIDE.match(a)]
    if dirs:
        if cls.__name__ != "DocstringsConfig":
            raise ConfigError(f"unexpected arguments {dirs}: settings are key=value or --flags")
        keyed["data.dirs"], names["data.dirs"] = dirs, "DIR"
    return load_config_with_flags(cls, args.config, overrides, keyed, names)


def _mine(args) -> int:
    if args.command == "from-docstrings":
        config = _load_mining_config(DocstringsConfig, args, DOCSTRINGS_FLAGS)
        summary = docstrings.mine(config)
        print(docstrings.format_summary(summary), end="")
        written = [config.output_path, config.code_output_path, summary["summary_path"]]
        print(f"wrote {', '.join(p for p in written if p)}")
        return 0
    summary = mbpp_sft.main(_load_mining_config(MbppSftConfig, args, MBPP_SFT_FLAGS))
    d = summary["decontamination"]
    print(f"MBPP {summary['splits']}: {summary['rows_in_selection']} rows, {d['removed']} removed by "
          f"decontamination (HumanEval, MBPP test and validation), {summary['kept']} kept; "
          f"wrote {summary['output_path']}, {summary['summary_path']}")
    return 0


def cli(argv: list[str]) -> int:
    parser = _parser()
    # argparse leaves positionals given after an option unparsed; here they are DIRs or key=value
    args, extras = parser.parse_known_args(argv)
    if extras and (args.command not in ("from-docstrings", "mbpp-sft") or any(x.startswith("-") for x in extras)):
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    if args.command in ("from-docstrings", "mbpp-sft"):
        args.args += extras
        return _mine(args)  # a ConfigError or a missing directory is reported by coder_align.cli
    if args.command == "difficulty":
        flags = {dest: value for dest, value in vars(args).items() if dest in DIFFICULTY_FLAGS}
        keyed = {DIFFICULTY_FLAGS[dest][0]: value for dest, value in flags.items()}
        names = {DIFFICULTY_FLAGS[dest][0]: f"--{dest.replace('_', '-')}" for dest in flags}
        try:
            config = load_config_with_flags(DifficultyConfig, args.config, args.overrides, keyed, names)
        except ConfigError as e:
            return user_error("coder-align data", e)
        summary = difficulty.main(config)
        print(f"kept {summary['kept']} of {summary['tasks_tried']} tasks (never solved {summary['never_solved']}, "
              f"always solved {summary['always_solved']}, undecided {summary['undecided']}, "
              f"unavailable {summary['unavailable']}); wrote {summary['output']} and its .summary.json, .judged.jsonl")
        print(json.dumps({k: summary[k] for k in ("tasks_tried", "kept", "never_solved", "always_solved",
                                                   "passes_histogram")}))
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
