"""`coder-align sandbox serve`: SandboxFusion's /run_code, our /check and /check_many, limits,
token, back-pressure and cancellation. Servers bind 127.0.0.1 on free ports only."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from _server_util import REPO, sandbox_server  # noqa: E402
from coder_align.sandbox import find_bwrap, toolchain_available  # noqa: E402

pytestmark = [pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap not installed"),
              pytest.mark.timeout(120)]

ADD = "def add(a, b): return a + b"


@pytest.fixture(scope="module")
def server():
    with sandbox_server("--workers", "2", "--max-request-mb", "1", "--max-jobs-per-request", "50") as s:
        yield s
    assert s.survivors == []


def run_code(server, **body):
    r = server.post("/run_code", body)
    assert r.status_code == 200, r.text
    return r.json()


def test_run_code_python_statuses(server):
    ok = run_code(server, code="print(input()[::-1])", language="python", stdin="abc")
    assert ok["status"] == "Success" and ok["compile_result"] is None
    assert ok["run_result"]["status"] == "Finished" and ok["run_result"]["stdout"] == "cba\n"
    assert ok["run_result"]["return_code"] == 0
    crash = run_code(server, code="raise ValueError('x')", language="python")
    assert crash["status"] == "Failed" and crash["run_result"]["return_code"] == 1
    assert "ValueError" in crash["run_result"]["stderr"]
    slow = run_code(server, code="while True: pass", language="python", run_timeout=1)
    assert slow["status"] == "Failed" and slow["run_result"]["status"] == "TimeLimitExceeded"
    assert slow["coder_align_status"] == "timeout"
    syntax = run_code(server, code="def f(:", language="python")
    assert syntax["status"] == "Failed" and syntax["run_result"]["return_code"] == 1
    # memory_limit_MB=-1 is SandboxFusion's "no limit": here the server's default still applies
    big = run_code(server, code="b = bytearray(1500 << 20)", language="python", memory_limit_MB=-1)
    assert big["status"] == "Failed" and big["coder_align_status"] == "memory_exceeded"


@pytest.mark.skipif(not toolchain_available("cpp"), reason="g++ not installed")
def test_run_code_cpp_compile_error_and_stdin(server):
    bad = run_code(server, code="int main() { return 0;", language="cpp")
    assert bad["status"] == "Failed" and bad["run_result"] is None
    assert bad["compile_result"]["status"] == "Finished" and bad["compile_result"]["return_code"] != 0
    good = run_code(server, code="#include <cstdio>\nint main(){int a,b;scanf(\"%d %d\",&a,&b);printf(\"%d\\n\",a+b);}",
                    language="cpp", stdin="2 40")
    assert good["status"] == "Success" and good["run_result"]["stdout"] == "42\n"
    assert good["compile_result"]["return_code"] == 0


def test_check_verdicts_are_decided_on_the_server(server):
    r = server.post("/check", {"source": ADD, "tests": ["assert add(1, 2) == 3", "assert add(2, 2) == 5"]})
    report = r.json()
    assert r.status_code == 200 and report["status"] == "wrong_answer" and report["n_passed"] == 1
    # a candidate that prints PASSED and exits 0 before the tests run passes nothing
    forged = "import os\nprint('PASSED')\nos._exit(0)\ndef add(a, b): return 0"
    r = server.post("/check_many", {"jobs": [
        {"source": ADD, "tests": ["assert add(1, 2) == 3"]},
        {"source": forged, "tests": ["assert add(1, 2) == 3"]},
        {"source": "class E:\n    def __eq__(self, o): return True\ndef add(a, b): return E()",
         "tests": ["assert add(1, 2) == 3"]},
        {"source": "print(sum(map(int, input().split())))", "tests": [{"stdin": "1 2\n", "stdout": "3\n"}]},
    ]})
    assert r.status_code == 200, r.text
    assert [(x["passed"], x["status"]) for x in r.json()["reports"]] == [
        (True, "ok"), (False, "runtime_error"), (False, "wrong_answer"), (True, "ok")]


def test_compile_check(server):
    ok = server.post("/compile_check", {"source": "def f(:", "language": "python"}).json()
    assert ok["status"] == "compile_error" and "SyntaxError" in ok["stderr"]
    assert server.post("/compile_check", {"source": "import os\nos._exit(3)"}).json()["status"] == "ok"
    imported = server.post("/compile_check", {"source": "import os\nos._exit(3)", "import_check": True}).json()
    assert imported["status"] == "runtime_error"
    r = server.post("/compile_check", {"source": "x", "language": "cobol"})
    assert r.status_code == 400 and "cobol" in r.json()["error"]


@pytest.mark.parametrize("path, body, code, words", [
    ("/run_code", {"language": "python"}, 422, "code"),
    ("/run_code", {"code": "x", "language": "cobol"}, 400, "not supported"),
    ("/run_code", {"code": "x", "language": "python", "run_timeout": 1e9}, 400, "limits"),
    ("/run_code", {"code": "x", "language": "python", "files": {"a.txt": "eA=="}}, 400, "files"),
    ("/check", {"source": "x", "tests": "not python ("}, 400, "syntax"),
    ("/check", {"source": "x", "tests": ["x = 1"]}, 400, "no assert"),
    ("/check", {"source": "x", "tests": [{"stdin": "1"}]}, 400, "stdout"),
    ("/check", {"source": "x", "tests": ["assert x == 1"], "timeout": "soon"}, 400, "timeout"),
    ("/check", {"source": "x", "tests": ["assert x == 1"], "rm_rf": True}, 400, "unknown field"),
    ("/check", {"source": "x", "tests": [{"stdin": "", "stdout": ""}] * 300}, 400, "at most 256"),
    ("/check_many", {"jobs": "all"}, 400, "jobs"),
    ("/check_many", {"jobs": [{"source": "x", "tests": ["assert x == 1"]}] * 51}, 413, "split"),
])
def test_bad_requests_get_a_4xx_with_a_message(server, path, body, code, words):
    r = server.post(path, body)
    assert r.status_code == code, r.text
    assert words.lower() in r.json()["error"].lower()


def test_output_in_reports_is_capped_after_the_verdict(server):
    flood = "import sys\nsys.stdout.write('y' * (900 << 10))\n" + ADD
    r = server.post("/check", {"source": flood, "tests": ["assert add(1, 2) == 3"]})
    report = r.json()
    assert report["passed"] is True and len(report["stdout"]) < (65 << 10)
    assert report["stdout"].endswith("cut by the server]")


def test_malformed_and_oversized_bodies(server):
    r = server.post("/check", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    r = server.post("/check", {"source": "x" * (2 << 20), "tests": ["assert x == 1"]})
    assert r.status_code == 413 and "limit" in r.json()["error"]
    assert server.get("/nowhere").status_code == 404
    assert server.get("/check").status_code == 405


def test_health_and_metrics(server):
    assert server.get("/health").json()["status"] == "ok"
    text = server.get("/metrics").text
    for name in ("queue_depth", "executions_total", "executions_per_second", "rejected_jobs_total",
                 "requests_total"):
        assert f"coder_align_sandbox_{name}" in text
    snap = server.get("/metrics", params={"format": "json"}).json()
    assert snap["executions"].get("check:wrong_answer", 0) >= 1 and snap["queue_depth"] == 0


def test_token_required_on_every_request():
    with sandbox_server("--workers", "1", token="s3cret") as s:
        import requests

        for method, path in (("get", "/health"), ("get", "/metrics"), ("post", "/run_code"), ("post", "/check")):
            r = getattr(requests, method)(s.url + path, timeout=30)
            assert r.status_code == 401 and "token" in r.json()["error"], (path, r.text)
        r = requests.post(s.url + "/check", json={"source": ADD, "tests": ["assert add(1, 1) == 2"]},
                          headers={"Authorization": "Bearer wrong"}, timeout=30)
        assert r.status_code == 401
        assert s.post("/check", {"source": ADD, "tests": ["assert add(1, 1) == 2"]}).json()["passed"] is True
    assert s.survivors == []


def test_refuses_a_public_bind_without_a_token():
    out = subprocess.run([sys.executable, "-m", "coder_align.cli", "sandbox", "serve", "--host", "0.0.0.0",
                          "--port", "1"], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode != 0 and "--token" in out.stderr


SLEEP = {"source": "import time\ndef f():\n    time.sleep(1)\n    return 1", "tests": ["assert f() == 1"], "timeout": 5}


def test_full_queue_answers_429_and_disconnect_cancels_queued_jobs():
    with sandbox_server("--workers", "1", "--queue-size", "3") as s:
        # 4 jobs fill the one worker and the queue of 3; the client gives up after 0.5 s
        with socket.create_connection(("127.0.0.1", int(s.url.rsplit(":", 1)[1]))) as conn:
            import json as _json

            body = _json.dumps({"jobs": [SLEEP] * 4}).encode()
            conn.sendall(b"POST /check_many HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            time.sleep(0.5)
            busy = s.post("/check", SLEEP)
            assert busy.status_code == 429 and int(busy.headers["Retry-After"]) >= 1
            assert "busy" in busy.json()["error"]
        # the connection is closed: the 3 queued jobs are dropped, the running one finishes
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            snap = s.get("/metrics", params={"format": "json"}).json()
            if snap["queue_depth"] == 0 and snap["running"] == 0:
                break
            time.sleep(0.1)
        assert snap["cancelled_jobs"] == 3 and snap["rejected_jobs"] == 1, snap
        assert sum(snap["executions"].values()) == 1, snap
        assert s.post("/check", SLEEP).json()["passed"] is True  # and it takes work again
    assert s.survivors == []
