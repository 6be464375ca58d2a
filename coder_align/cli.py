"""`coder-align COMMAND ...`: a thin dispatcher; each command lives in its own module.

Modules are imported only when their command runs, so `coder-align sandbox` does not
pay for importing torch.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

from coder_align import __version__

DEBUG_ENV = "CODER_ALIGN_DEBUG"
# A user error (a bad argument, config value or data file) exits with this code in every
# subcommand, after one line on stderr; 1 stays for "ran, and the answer is no" (a failed check).
EXIT_USER_ERROR = 2

# Exceptions that are the user's to fix (config, data, task, missing file or model, no
# sandbox): one line and exit 2. Anything else is a bug and keeps its traceback.
# (module, class) pairs: a class whose module was never imported cannot have been raised.
USER_ERRORS = [
    ("coder_align.config", "ConfigError"),
    ("coder_align.data.records", "DataError"),
    ("coder_align.templates", "TemplateError"),
    ("coder_align.benchmarks.sources", "BenchmarkError"),  # eval's TaskError too
    ("coder_align.models.loading", "ModelError"),
    ("coder_align.sandbox.preflight", "PreflightError"),
    ("coder_align.sandbox.bwrap", "SandboxUnavailable"),
    ("builtins", "FileNotFoundError"),
    ("builtins", "IsADirectoryError"),
    ("builtins", "NotADirectoryError"),
]


def is_user_error(error: BaseException) -> bool:
    for module_name, class_name in USER_ERRORS:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(error, getattr(module, class_name)):
            return True
    return False


def one_line(error: BaseException) -> str:
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    return text or type(error).__name__


def user_error(prog: str, error: BaseException) -> int:
    """Report a user error as one line on stderr and return EXIT_USER_ERROR."""
    print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
    return EXIT_USER_ERROR


# command -> (module, function taking argv and returning an exit code)
COMMANDS = {
    "sft": ("coder_align.sft", "cli", "supervised instruction tuning (full, LoRA, QLoRA)"),
    "merge": ("coder_align.models.merge", "cli", "fold a LoRA/QLoRA adapter into full weights"),
    "grpo": ("coder_align.grpo", "cli", "GRPO with compiler and unit-test rewards"),
    "rft": ("coder_align.rft", "cli", "rejection-sampling fine-tuning: sample, keep what passes the tests, SFT on it"),
    "data": ("coder_align.datagen.cli", "cli", "make training data (from-docstrings, mbpp-sft, difficulty)"),
    "pretrain": ("coder_align.pretrain", "cli", "continued pretraining with FIM"),
    "rm": ("coder_align.reward_model", "cli", "reward model on execution feedback: rm data, rm train"),
    "corpus": ("coder_align.corpus.cli", "cli", "build a repository-level pretraining corpus"),
    "eval": ("coder_align.evaluate", "cli", "HumanEval / MBPP / infilling evaluation"),
    "sandbox": ("coder_align.sandbox.cli", "cli", "run or check code in the execution sandbox, or serve it over HTTP"),
}


def usage() -> str:
    lines = ["usage: coder-align [--version] COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "Run `coder-align COMMAND --help` for a command's options.",
              f"--debug (anywhere) or {DEBUG_ENV}=1 shows the traceback of an error."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"coder-align {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"coder-align: unknown command '{name}'\n\n{usage()}", file=sys.stderr)
        return EXIT_USER_ERROR
    module_name, func_name, _ = COMMANDS[name]
    # bitsandbytes warns at import on CPUs with AVX512-BF16 that an optional kernel package is
    # missing; it matters only for 4-bit QLoRA on CPU, and it buried our one-line errors.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("coder_align"):
            print(f"coder-align: command '{name}' is not available in this build ({e.name} missing)", file=sys.stderr)
            return 2
        raise
    try:
        return int(getattr(module, func_name)(rest) or 0)
    except KeyboardInterrupt:
        _remove_unused_outputs()
        if debug:
            raise
        hint = {"sft": " Rerun the same command to resume from the last checkpoint (train.save_steps).",
                "corpus": " Rerun the same command to resume: completed tasks are skipped."}.get(
            "sft" if name in ("grpo", "pretrain", "rm") else name, "")
        print(f"\ncoder-align {name}: interrupted.{hint}", file=sys.stderr)
        return 130  # the shell's code for SIGINT
    except Exception as e:
        _remove_unused_outputs()
        if debug or not is_user_error(e):
            raise
        return user_error(f"coder-align {name}", e)


def _remove_unused_outputs() -> None:
    """A run that failed before training wrote anything leaves no empty output directory."""
    output_dir = sys.modules.get("coder_align.training.output_dir")
    if output_dir is not None:
        output_dir.remove_unused_outputs()


if __name__ == "__main__":
    sys.exit(main())
