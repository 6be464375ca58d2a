"""Starting `coder-align sandbox serve` on 127.0.0.1 for tests, and always stopping it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from _sandbox_util import _proc_table

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for child, (ppid, _) in _proc_table().items():  # zombies left out
        children.setdefault(ppid, []).append(child)
    out, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, token: str | None):
        self.proc, self.url, self.token = proc, url, token

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def post(self, path: str, json=None, **kw):
        return requests.post(self.url + path, json=json, headers={**self.headers, **kw.pop("headers", {})},
                             timeout=kw.pop("timeout", 60), **kw)

    def get(self, path: str, **kw):
        return requests.get(self.url + path, headers=self.headers, timeout=30, **kw)

    def kill(self) -> None:
        """SIGKILL, as a crash would: its sandboxes must die with it (bwrap --die-with-parent)."""
        tree = descendants(self.proc.pid)
        self.proc.kill()
        self.proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in tree):
            time.sleep(0.05)
        left = [p for p in tree if _alive(p)]
        for p in left:  # reported by the caller's assertions, never left running
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)
        self.leftovers = left


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


@contextlib.contextmanager
def sandbox_server(*args: str, token: str | None = None, start_timeout: float = 90.0, patch: str | None = None):
    """A server on a free 127.0.0.1 port; yields a `Server`; stops it (and checks that nothing
    of it survives) on exit. `patch`: Python run in the server's process before it starts
    (to plant a fault)."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("CODER_ALIGN_SANDBOX_URLS", None)
    entry = ["-m", "coder_align.cli"]
    if patch:
        entry = ["-c", patch + "\nimport sys\nfrom coder_align.cli import main\nsys.exit(main(sys.argv[1:]))"]
    cmd = [sys.executable, *entry, "sandbox", "serve", "--host", "127.0.0.1",
           "--port", str(port), *args] + (["--token", token] if token else [])
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(proc, f"http://127.0.0.1:{port}", token)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited {proc.returncode}: {proc.stdout.read().decode()[-3000:]}")
            try:
                if server.get("/health").status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start in time")
            time.sleep(0.2)
        yield server
    finally:
        tree = descendants(proc.pid)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in tree):
            time.sleep(0.05)
        for p in tree:
            if _alive(p):
                with contextlib.suppress(OSError):
                    os.kill(p, signal.SIGKILL)
        proc.stdout.close()
        server.survivors = [p for p in tree if _alive(p)]
