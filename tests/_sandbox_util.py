"""Helpers shared by the sandbox tests: leftover-process and host-damage checks."""

from __future__ import annotations

import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _proc_table() -> dict[int, tuple[int, str]]:
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_bytes()
            cmd = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[1].split()
        if fields[0] == b"Z":
            continue
        table[int(name)] = (int(fields[1]), cmd)
    return table


def survivors() -> list[str]:
    """Our descendants other than idle pool workers (bwrap, its init, and worker.py itself).

    A job's processes are forked from worker.py; so any child of a worker, or any other
    process in a sandbox, is something that outlived its job.
    """
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = [], [(os.getpid(), "")]
    while stack:
        pid, parent_cmd = stack.pop()
        for child in children.get(pid, []):
            cmd = table[child][1]
            is_bwrap = cmd.split(" ", 1)[0].endswith("bwrap")
            # a warm worker: under bwrap, or directly under us when unsandboxed
            is_worker = "worker.py" in cmd and ("bwrap" in parent_cmd.split(" ", 1)[0] or pid == os.getpid())
            # Python's own helper, started once by any spawn-context pool in this test session
            # (eval's generation processes) and alive until the session ends; not a job's
            is_resource_tracker = "multiprocessing.resource_tracker" in cmd and pid == os.getpid()
            if not (is_bwrap or is_worker or is_resource_tracker):
                found.append(f"{child}: {cmd[:120]}")
            stack.append((child, cmd))
    return found


def wait_no_survivors(timeout: float = 2.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = survivors()
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)
