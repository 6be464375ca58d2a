"""A memory cgroup per warm worker, where this process may create one: `memory_mb` then bounds
the sum of everything a job holds (all its processes, its /tmp and /dev/shm files, pipe
and socket buffers), not each process alone.

Used when the process's own memory cgroup is writable: cgroup v1's memory hierarchy (root
in most containers), or a cgroup v2 directory with the memory controller delegated to us
(`memory` listed in its `cgroup.subtree_control`, e.g. a systemd unit with Delegate=yes).
Elsewhere `available()` is False and the sandbox falls back to per-process rlimits plus
size-capped tmpfs mounts (see the sandbox docstring). `CODER_ALIGN_CGROUP=0` turns it off.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

HEADROOM_MB = 64  # the worker and the test process live in the group too
_ids = itertools.count()


def _own_cgroup_dirs() -> list[tuple[str, Path]]:
    """(version, directory) of this process's memory cgroup, v2 first."""
    mounts: dict[str, str] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, _, options = (right.split() + ["", "", ""])[:3]
        mount_point = left.split()[4]
        if fstype == "cgroup2":
            mounts.setdefault("v2", mount_point)
        elif fstype == "cgroup" and "memory" in options.split(","):
            mounts.setdefault("v1", mount_point)
    found = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "" and "v2" in mounts:
            found.append(("v2", Path(mounts["v2"] + path)))
        elif "memory" in controllers.split(",") and "v1" in mounts:
            found.append(("v1", Path(mounts["v1"] + path)))
    return sorted(found)[::-1]  # "v2" before "v1"


def _usable(version: str, d: Path) -> bool:
    if not os.access(d, os.W_OK):
        return False
    if version == "v2":
        control = d / "cgroup.subtree_control"
        return control.exists() and "memory" in control.read_text().split()
    return (d / "memory.limit_in_bytes").exists()


_PARENT: tuple[str, Path] | None | bool = False


def parent() -> tuple[str, Path] | None:
    global _PARENT
    if _PARENT is False:
        _PARENT = None
        if os.environ.get("CODER_ALIGN_CGROUP", "1") != "0":
            try:
                _PARENT = next(((v, d) for v, d in _own_cgroup_dirs() if _usable(v, d)), None)
                if _PARENT is not None:
                    sweep_stale(_PARENT[1])
            except OSError:
                _PARENT = None
    return _PARENT


def available() -> bool:
    return parent() is not None


class MemoryGroup:
    """One worker's cgroup: `limit(mb)` before each job, `oom_kills()` to tell an OOM kill."""

    def __init__(self):
        version, base = parent()
        self.v2 = version == "v2"
        self.dir = base / f"coder_align-{os.getpid()}-{next(_ids)}"
        self.dir.mkdir()
        self._limit = None
        self._fds: dict[str, int] = {}  # files read after every job, kept open (pread from 0)
        if self.v2:
            self._write("memory.swap.max", "0")

    def _write(self, name: str, value: str) -> None:
        (self.dir / name).write_text(value)

    def add(self, pid: int) -> None:
        self._write("cgroup.procs", str(pid))

    def limit(self, memory_mb: int) -> None:
        if memory_mb == self._limit:
            return
        value = str((memory_mb + HEADROOM_MB) << 20)
        if self.v2:
            self._write("memory.max", value)
        else:
            swap = self.dir / "memory.memsw.limit_in_bytes"
            # memsw must stay >= the plain limit: raise it first, lower it last (both start
            # unlimited, so the first setting lowers)
            raising = self._limit is not None and memory_mb > self._limit
            if raising and swap.exists():
                swap.write_text(value)
            self._write("memory.limit_in_bytes", value)
            if not raising and swap.exists():
                swap.write_text(value)
        self._limit = memory_mb

    def _read(self, name: str) -> str:
        fd = self._fds.get(name)
        if fd is None:
            fd = self._fds[name] = os.open(self.dir / name, os.O_RDONLY | os.O_CLOEXEC)
        return os.pread(fd, 4096, 0).decode()

    def usage_mb(self) -> float:
        return int(self._read("memory.current" if self.v2 else "memory.usage_in_bytes")) / (1 << 20)

    def oom_kills(self) -> int:
        for line in self._read("memory.events" if self.v2 else "memory.oom_control").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def remove(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        # the worker dies a moment after bwrap (parent-death signal): wait for it briefly
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                self.dir.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.01)


def sweep_stale(base: Path) -> None:
    """Remove empty groups left by earlier processes that were killed before cleaning up."""
    for d in base.glob("coder_align-*-*"):
        pid = int(d.name.split("-")[1]) if d.name.split("-")[1].isdigit() else 0
        if pid and not os.path.exists(f"/proc/{pid}"):
            try:
                d.rmdir()
            except OSError:
                pass


def child_pids(pid: int) -> list[int]:
    """The children of `pid` (bwrap's outer process -> the sandbox's PID 1), read from /proc."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(b")", 1)[1].split()[1]) == pid:
                found.append(int(name))
    return found
