"""`coder-align sandbox run|check FILE ...`: run or judge one file, print JSON.

    coder-align sandbox check sol.py --tests tests.json [--language python]
    coder-align sandbox run prog.c --language c --stdin input.txt

TESTS is a JSON file (a list of assert strings, a list of {"stdin", "stdout"} cases, or a
string holding a test program) or a .py file holding a HumanEval-style test program.
Exit status: 0 passed / ran ok, 1 failed, 2 usage error, 3 sandbox unavailable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from coder_align.sandbox import SandboxUnavailable, check, run

EXTENSIONS = {".py": "python", ".c": "c", ".cc": "cpp", ".cpp": "cpp", ".java": "java", ".js": "javascript",
              ".go": "go", ".rs": "rust", ".sh": "bash"}


def _load_tests(path: Path):
    text = path.read_text()
    if path.suffix == ".py":
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"coder-align sandbox: {path}:{e.lineno}: not valid JSON ({e.msg})")


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="coder-align sandbox", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "check"):
        p = sub.add_parser(name)
        p.add_argument("file", type=Path)
        p.add_argument("--language", default=None, help="default: from the file extension")
        p.add_argument("--timeout", type=float, default=10.0)
        p.add_argument("--memory-mb", type=int, default=1024)
        p.add_argument("--allow-unsandboxed", action="store_true")
        if name == "check":
            p.add_argument("--tests", type=Path, required=True)
            p.add_argument("--float-tolerance", type=float, default=None)
        else:
            p.add_argument("--stdin", type=Path, default=None, help="file fed to stdin (default: empty)")
    args = parser.parse_args(argv)
    if not args.file.is_file():
        parser.error(f"{args.file}: no such file")
    language = args.language or EXTENSIONS.get(args.file.suffix)
    if language is None:
        parser.error(f"cannot tell the language of {args.file}; pass --language")
    source = args.file.read_text()
    try:
        if args.command == "check":
            report = check(source, _load_tests(args.tests), language, args.timeout, args.memory_mb,
                           float_tolerance=args.float_tolerance, allow_unsandboxed=args.allow_unsandboxed)
            ok = report.passed
        else:
            stdin = args.stdin.read_text() if args.stdin else ""
            report = run(source, language, stdin, args.timeout, args.memory_mb,
                         allow_unsandboxed=args.allow_unsandboxed)
            ok = report.status == "ok"
    except SandboxUnavailable as e:
        print(f"coder-align sandbox: {e}", file=sys.stderr)
        return 3
    except ValueError as e:
        print(f"coder-align sandbox: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2))
    return 0 if ok else 1
