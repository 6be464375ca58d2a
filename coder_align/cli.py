"""`coder-align COMMAND ...`: a thin dispatcher; each command lives in its own module.

Modules are imported only when their command runs, so `coder-align sandbox` does not
pay for importing torch.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import shlex
import sys

from coder_align import __version__

DEBUG_ENV = "CODER_ALIGN_DEBUG"
COMMAND_ENV = "CODER_ALIGN_COMMAND"  # config.COMMAND_ENV (a sibling: not imported)
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


QUIET_ENV = "CODER_ALIGN_QUIET_KNOWN_WARNINGS"
# Warnings known to say nothing a user can act on, each matched by its message's start; every
# other warning is shown. Only the CLI hides them (`quiet_known_noise`): from Python, the
# library leaves the warnings filters alone.
KNOWN_HARMLESS_WARNINGS = [
    # transformers' own Trainer calls the deprecated name (transformers 5)
    (FutureWarning, "`is_gradient_checkpointing` is deprecated"),
    # the Trainer asks for pinned memory on a CPU-only machine, where there is none to pin
    (UserWarning, "'pin_memory' argument is set as true but no accelerator is found"),
    # peft, at every Trainer save of a LoRA run whose vocabulary grew by <|EOT|>: it saves the
    # embedding matrices, as it should (the final directory is saved without them: run.py)
    (UserWarning, "Setting `save_embedding_layers` to `True` as the embedding layer has been resized"),
    # TRL, because GRPO's trainer overlaps judging with generation through its rollout_func hook
    (UserWarning, "You are using 'rollout_func', which is an experimental feature"),
]
# (logger, message start) of log records known to be harmless
KNOWN_HARMLESS_LOGS = [
    # bitsandbytes at import on CPUs with AVX512-BF16: an optional kernel for 4-bit QLoRA on CPU
    ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward from kernels-community"),
    # DeepSpeed at import on a machine without a GPU, where training runs on the CPU by design
    ("DeepSpeed", "Setting accelerator to CPU."),
]


class _DropMessages(logging.Filter):
    def __init__(self, starts: list[str]):
        super().__init__()
        self.starts = tuple(starts)

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


def quiet_known_noise() -> None:
    """Hide the warnings and log records listed above, narrowly by message (idempotent)."""
    import warnings

    for category, start in KNOWN_HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(start), category=category)
    for logger_name, start in KNOWN_HARMLESS_LOGS:
        logger = logging.getLogger(logger_name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages([s for name, s in KNOWN_HARMLESS_LOGS if name == logger_name]))


def quiet_if_started_by_cli() -> None:
    """In a process a CLI command started (eval's generation workers): the CLI's filters too."""
    if os.environ.get(QUIET_ENV) == "1":
        quiet_known_noise()


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
    # what save_config writes to command.txt beside every resolved config (config.COMMAND_ENV);
    # put back afterwards, so an in-process caller's later configs are not stamped with it
    # and QUIET_ENV, for the processes the command starts (eval's generation workers)
    before = {key: os.environ.get(key) for key in (COMMAND_ENV, QUIET_ENV)}
    os.environ[COMMAND_ENV] = "coder-align " + shlex.join(argv)
    os.environ[QUIET_ENV] = "1"
    try:
        return _dispatch(name, module_name, func_name, rest, debug)
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _dispatch(name: str, module_name: str, func_name: str, rest: list[str], debug: bool) -> int:
    quiet_known_noise()
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
