"""One load-test client process: N mixed jobs through check_many on the given servers.

    python tests/_load_client.py CLIENT_ID N URL [URL...] > results.jsonl

Every job prints its own id first, so each report can be matched to the job it answers.
"""

from __future__ import annotations

import json
import sys

from coder_align.sandbox import check_many, remote

HOSTILE = {
    "fork_bomb": "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass",
    "memory_bomb": "x = []\nwhile True: x.append(bytearray(50 << 20))",
    "forged_pass": "import os\nprint('PASSED'); os._exit(0)",
    "kill_worker": "import os, signal\nfor pid in (1, os.getppid()):\n    try: os.kill(pid, signal.SIGKILL)\n    except OSError: pass",
    "flood": "import sys\nwhile True: sys.stdout.write('y' * 65536)",
    "daemon": "import os, time\nif os.fork() == 0:\n    os.setsid(); time.sleep(60)",
}


def job(client: int, i: int) -> tuple[str, dict]:
    tag = f"{client}-{i}"
    head = f"print('JOB {tag}', flush=True)\n"
    k = i % 20
    if k < 14:
        kind, body = "good", f"def f(x): return x + {i}"
    elif k < 17:
        kind, body = "wrong", f"def f(x): return x + {i + 1}"
    elif k == 17:
        kind, body = "timeout", "while True: pass"
    else:
        name = sorted(HOSTILE)[(i // 20) % len(HOSTILE)]
        kind, body = f"hostile:{name}", HOSTILE[name] + "\ndef f(x): return x + " + str(i)
    tests = [f"assert f(1) == {1 + i}", f"assert f(2) == {2 + i}"]
    return kind, {"source": head + body, "tests": tests, "timeout": 1.0 if kind == "timeout" else 2.0,
                  "memory_mb": 256}


def main(argv: list[str]) -> int:
    client, n, urls = int(argv[0]), int(argv[1]), argv[2:]
    remote.configure(remote.SandboxConfig(endpoints=urls, batch_size=10, requests_per_endpoint=2))
    kinds, jobs = zip(*(job(client, i) for i in range(n)))
    reports = check_many(list(jobs))
    for i, (kind, report) in enumerate(zip(kinds, reports)):
        print(json.dumps({"i": i, "kind": kind, "passed": report.passed, "status": report.status,
                          "own_output": report.stdout.startswith(f"JOB {client}-{i}\n")}))
    print(json.dumps({"stats": dict(remote.STATS)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
