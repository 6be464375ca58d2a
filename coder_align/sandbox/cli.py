"""`coder-align sandbox run|check FILE ...`: run or judge one file, print JSON.

    coder-align sandbox check sol.py --tests tests.json [--language python]
    coder-align sandbox run prog.c --language c --stdin input.txt
    coder-align sandbox serve --host 127.0.0.1 --port 8080 --workers 8   (see sandbox/server/)

TESTS is a JSON file (a list of assert strings, a list of {"stdin", "stdout"} cases, or a
string holding a test program) or a .py file holding a HumanEval-style test program.
Exit status: 0 passed / ran ok, 1 failed, 2 usage error, 3 sandbox unavailable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from coder_align.sandbox.bwrap import SandboxUnavailable
from coder_align.sandbox.local import check, run
from coder_align.sandbox.server import TOKEN_ENV, ServeConfig, serve

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
    _serve_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
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


def _serve_parser(sub) -> None:
    d = ServeConfig()
    p = sub.add_parser("serve", help="serve the sandbox over HTTP (SandboxFusion-compatible /run_code, "
                       "/check, /check_many, /health, /metrics)")
    p.add_argument("--host", default=d.host, help="default 127.0.0.1; any other address needs --token")
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument("--workers", type=int, default=d.workers, help="concurrent executions (default: CPU count)")
    p.add_argument("--queue-size", type=int, default=d.queue_size,
                   help="jobs admitted beyond the running ones before 429 (default: 64 per worker)")
    p.add_argument("--token", default=None, help=f"bearer token every request must carry (or ${TOKEN_ENV})")
    p.add_argument("--max-request-mb", type=float, default=d.max_request_mb)
    p.add_argument("--max-jobs-per-request", type=int, default=d.max_jobs_per_request)
    p.add_argument("--max-cases-per-job", type=int, default=d.max_cases_per_job)
    p.add_argument("--max-output-kb", type=int, default=d.max_output_kb,
                   help="of each /check report's stdout and stderr")
    p.add_argument("--max-timeout", type=float, default=d.max_timeout, help="seconds per run, at most")
    p.add_argument("--max-memory-mb", type=int, default=d.max_memory_mb)
    p.add_argument("--default-memory-mb", type=int, default=d.default_memory_mb,
                   help="for /run_code's memory_limit_MB=-1 (SandboxFusion's 'no limit')")
    p.add_argument("--max-connections", type=int, default=d.max_connections,
                   help="open at once; those without an authorised request in progress are closed to make room")
    p.add_argument("--header-timeout", type=float, default=d.header_timeout,
                   help="seconds for a request's headers to arrive")
    p.add_argument("--body-timeout", type=float, default=d.body_timeout,
                   help="seconds for a request's body to arrive, after its headers")
    p.add_argument("--allow-unsandboxed", action="store_true", help="run without bubblewrap (trusted code only)")


def _serve(args) -> int:
    config = ServeConfig(host=args.host, port=args.port, workers=args.workers, queue_size=args.queue_size,
                         token=args.token, max_request_mb=args.max_request_mb,
                         max_jobs_per_request=args.max_jobs_per_request, max_timeout=args.max_timeout,
                         max_cases_per_job=args.max_cases_per_job, max_output_kb=args.max_output_kb,
                         max_memory_mb=args.max_memory_mb, default_memory_mb=args.default_memory_mb,
                         max_connections=args.max_connections, header_timeout=args.header_timeout,
                         body_timeout=args.body_timeout, allow_unsandboxed=args.allow_unsandboxed)
    try:
        return serve(config)
    except SandboxUnavailable as e:
        print(f"coder-align sandbox serve: {e}", file=sys.stderr)
        return 3
