"""`coder-align COMMAND ...`: a thin dispatcher; each command lives in its own module.

Modules are imported only when their command runs, so `coder-align sandbox` does not
pay for importing torch.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module, function taking argv and returning an exit code)
COMMANDS = {
    "sft": ("coder_align.sft", "cli", "supervised instruction tuning (full, LoRA, QLoRA)"),
    "merge": ("coder_align.merge", "cli", "fold a LoRA/QLoRA adapter into full weights"),
    "grpo": ("coder_align.grpo", "cli", "GRPO with compiler and unit-test rewards"),
    "pretrain": ("coder_align.pretrain", "cli", "continued pretraining with FIM"),
    "corpus": ("coder_align.corpus.cli", "cli", "build a repository-level pretraining corpus"),
    "eval": ("coder_align.evaluate", "cli", "HumanEval / MBPP / infilling evaluation"),
    "sandbox": ("coder_align.sandbox.cli", "cli", "run or check code in the execution sandbox, or serve it over HTTP"),
}


def usage() -> str:
    lines = ["usage: coder-align COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "Run `coder-align COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"coder-align: unknown command '{name}'\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("coder_align"):
            print(f"coder-align: command '{name}' is not available in this build ({e.name} missing)", file=sys.stderr)
            return 2
        raise
    return int(getattr(module, func_name)(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
