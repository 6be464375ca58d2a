"""The sandbox server under hostile clients (issue 25, items 9-11): one sample's checker error
stays that sample's, half-sent or idle connections cannot hold the server, deeply nested
bodies get a 4xx. Servers bind 127.0.0.1 on free ports; slowloris is played with raw sockets."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import requests  # noqa: E402

from _server_util import sandbox_server  # noqa: E402
from coder_align.sandbox import find_bwrap, remote  # noqa: E402

pytestmark = [pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap not installed"),
              pytest.mark.timeout(180)]

ADD = "def add(a, b): return a + b"
TOKEN = "s3cret"
HEADER_TIMEOUT, BODY_TIMEOUT = 2.0, 3.0

# the checker raises on one sample, as `_judge`'s repr of a 4,300-digit int did (issue 25, 8c)
CHECKER_BUG = '''
import functools
from coder_align.sandbox import local
_check = local.check
@functools.wraps(_check)
def check(source, *args, **kwargs):
    if "CHECKER_BUG" in source:
        raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")
    return _check(source, *args, **kwargs)
local.check = check
'''


@pytest.fixture(scope="module")
def server():
    with sandbox_server("--workers", "2", "--max-connections", "16", "--header-timeout", str(HEADER_TIMEOUT),
                        "--body-timeout", str(BODY_TIMEOUT), token=TOKEN, patch=CHECKER_BUG) as s:
        yield s
    assert s.survivors == []


def port(server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def connect(server, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port(server)))
    if data:
        sock.sendall(data)
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True if the server closes `sock` (EOF or reset) within `within` seconds, sending nothing."""
    sock.settimeout(within)
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


# ---- 9: one sample never breaks its batch ------------------------------------------------------

BATCH = [{"source": ADD, "tests": ["assert add(1, 2) == 3"]},
         {"source": "# CHECKER_BUG\n" + ADD, "tests": ["assert add(1, 2) == 3"]},
         {"source": "def add(a, b): return a - b", "tests": ["assert add(1, 2) == 3"]}]


def test_a_checker_error_on_one_sample_is_that_samples_unavailable(server):
    r = server.post("/check_many", {"jobs": BATCH})
    assert r.status_code == 200, r.text
    reports = r.json()["reports"]
    assert [(x["passed"], x["status"]) for x in reports] == [
        (True, "ok"), (False, "unavailable"), (False, "wrong_answer")]
    assert "ValueError" in reports[1]["error"] and "4300 digits" in reports[1]["error"]
    one = server.post("/check", BATCH[1])
    assert one.status_code == 200 and one.json()["status"] == "unavailable"


def test_through_the_remote_client_the_neighbours_keep_their_verdicts(server, monkeypatch):
    monkeypatch.delenv(remote.URLS_ENV, raising=False)
    remote.STATS.clear()
    remote.configure(remote.SandboxConfig(endpoints=[server.url], batch_size=len(BATCH) * 2), token=TOKEN)
    try:
        reports = remote.check_many(BATCH * 2, remote.active_config())
    finally:
        remote.configure(None)
    assert [(r.passed, r.status) for r in reports] == [(True, "ok"), (False, "unavailable"),
                                                       (False, "wrong_answer")] * 2
    assert remote.STATS["failed_requests"] == 0  # answered at once, not a 500 and a failover


# ---- 11: bodies that break the parser are the client's error -------------------------------------

@pytest.mark.parametrize("body, words", [
    (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
    (b'{"jobs": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nested too deeply"),
    (b'{"source": "x", "tests": [], "timeout": ' + b"9" * 5000 + b"}", "not valid JSON"),
    (json.dumps({"source": ADD, "tests": ["assert " + "-" * 200_000 + "1"]}).encode(), "nested too deeply"),
])
def test_bodies_that_break_the_parser_get_a_400(server, body, words):
    r = server.post("/check", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text[:300]
    assert words in r.json()["error"]


# ---- 10: slowloris ---------------------------------------------------------------------------

HALF = b"POST /check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def closed_connections(server) -> dict:
    return server.get("/metrics", params={"format": "json"}).json()["connections_closed"]


def good_request(server) -> int:
    return server.post("/check", {"source": ADD, "tests": ["assert add(1, 2) == 3"]}, timeout=30).status_code


def test_half_sent_requests_cannot_starve_authorised_ones(server):
    held = [connect(server, HALF) for _ in range(16)]  # no token, headers never finished
    try:
        time.sleep(0.3)  # all 16 are open on the server before the authorised ones come
        assert [good_request(server) for _ in range(3)] == [200] * 3
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            assert list(ex.map(lambda _: good_request(server), range(8))) == [200] * 8
        # and every one of them is gone by the header deadline (some made room sooner)
        t0 = time.monotonic()
        assert all(closed_by_server(s, HEADER_TIMEOUT + 3.0) for s in held)
        assert time.monotonic() - t0 < HEADER_TIMEOUT + 3.0
    finally:
        for s in held:
            s.close()
    closed = closed_connections(server)
    assert closed.get("made_room", 0) >= 1 and closed.get("header_timeout", 0) >= 1, closed


def test_idle_keep_alive_connections_cannot_starve_new_ones(server):
    health = f"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
    held = []
    try:
        for _ in range(16):
            s = connect(server, health)
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            held.append(s)  # answered and kept alive, idle
        assert good_request(server) == 200
    finally:
        for s in held:
            s.close()


@pytest.mark.parametrize("how", ["silent", "trickle"])
def test_headers_have_a_deadline(server, how):
    sock = connect(server)
    try:
        t0 = time.monotonic()
        if how == "trickle":  # a byte every 0.4 s keeps the connection busy but never finishes
            for byte in HALF[:int(HEADER_TIMEOUT / 0.4) + 4]:
                try:
                    sock.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    break
                time.sleep(0.4)
        assert closed_by_server(sock, HEADER_TIMEOUT + 3.0 - (time.monotonic() - t0))
        assert HEADER_TIMEOUT - 0.5 <= time.monotonic() - t0 <= HEADER_TIMEOUT + 3.0
    finally:
        sock.close()


def test_bodies_have_a_deadline(server):
    head = (f"POST /check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n").encode()
    sock = connect(server, head + b'{"source": ')
    try:
        t0 = time.monotonic()
        assert closed_by_server(sock, BODY_TIMEOUT + 3.0)
        assert BODY_TIMEOUT - 0.5 <= time.monotonic() - t0 <= BODY_TIMEOUT + 3.0
    finally:
        sock.close()
    assert good_request(server) == 200
    assert closed_connections(server).get("body_timeout", 0) >= 1


SLEEP = {"source": "import time\ndef f():\n    time.sleep(3)\n    return 1", "tests": ["assert f() == 1"], "timeout": 10}


def test_authorised_requests_in_progress_still_bound_the_connections():
    with sandbox_server("--workers", "2", "--max-connections", "2", token=TOKEN) as s:
        body = json.dumps(SLEEP).encode()
        head = (f"POST /check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        busy = [connect(s, head + body) for _ in range(2)]
        try:
            time.sleep(0.5)
            r = requests.get(s.url + "/health", headers=s.headers, timeout=30)
            assert r.status_code == 503 and "busy" in r.json()["error"]
            for sock in busy:  # the two in progress were not touched
                sock.settimeout(30)
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            assert s.get("/health").status_code == 200
            assert 'connections_closed_total{reason="refused"} 1' in s.get("/metrics").text
        finally:
            for sock in busy:
                sock.close()
    assert s.survivors == []
