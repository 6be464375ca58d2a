"""Watching sandboxed processes: rlimits, capped output capture, and the deadline loop.

Standard library only: the warm worker imports it inside the sandbox (`worker.run_job`),
and the host uses the same pieces for one-shot bwrap commands (`bwrap.supervise`).
"""

from __future__ import annotations

import base64
import math
import os
import resource
import select
import time


LIMITED = (resource.RLIMIT_CORE, resource.RLIMIT_CPU, resource.RLIMIT_AS, resource.RLIMIT_FSIZE,
           resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC)


def hard_limits() -> dict[int, int]:
    """This process's hard limits on what `cap_limits` sets (read once, passed to forks)."""
    return {res: resource.getrlimit(res)[1] for res in LIMITED}


def cap_limits(**limits) -> None:
    """Lower this process's rlimits (never above a hard limit already set); no core dumps.
    Arguments: those of `limit_values`."""
    for res, value in limit_values(**limits):
        resource.setrlimit(res, value)


def limit_values(*, cpu_s: int | None = None, cpu_grace_s: int = 0, memory_mb: int | None = None,
                 fsize_mb: int | None = None, nofile: int | None = None, nproc: int | None = None,
                 known_hard: dict[int, int] | None = None) -> list[tuple[int, tuple[int, int]]]:
    """[(resource, (soft, hard)), ...] that `cap_limits` sets.

    `cpu_grace_s`: the hard CPU limit lies this far past the soft one, so the process first
    gets SIGXCPU (reported as a timeout) and SIGKILL only if it ignores it. `known_hard`: the
    hard limits as `hard_limits()` read them, if known (saves reading them again).
    """
    def cap(res, soft, limit):
        current = known_hard[res] if known_hard else resource.getrlimit(res)[1]
        if current != resource.RLIM_INFINITY:
            limit = min(limit, current)
            soft = min(soft, limit)
        return res, (soft, limit)

    out = [cap(resource.RLIMIT_CORE, 0, 0)]
    if cpu_s:
        out.append(cap(resource.RLIMIT_CPU, cpu_s, cpu_s + cpu_grace_s))
    for res, value in ((resource.RLIMIT_AS, memory_mb and memory_mb << 20),
                       (resource.RLIMIT_FSIZE, fsize_mb and fsize_mb << 20),
                       (resource.RLIMIT_NOFILE, nofile), (resource.RLIMIT_NPROC, nproc)):
        if value:
            out.append(cap(res, value, value))
    return out


class Capture:
    """Keeps the first `cap` bytes of a stream and counts the rest."""

    def __init__(self, cap: int):
        self.cap, self.data, self.total = cap, bytearray(), 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.cap - len(self.data)
        if room > 0:
            self.data += chunk[:room]

    @property
    def truncated(self) -> bool:
        return self.total > self.cap

    def dump(self) -> dict:
        return {"b64": base64.b64encode(bytes(self.data)).decode(), "truncated": self.truncated}


class Watch:
    """One poll loop over a job's stdin, its output pipes and its processes' exits.

    `run(deadline)` feeds stdin, captures outputs and calls `on_exit(pid)` as each watched
    process exits (the caller reaps it), until all have exited or the deadline passes.
    `finish(deadline)` then reads what is left in the pipes and closes every fd it holds.

    A plain `select.poll` and a dict rather than `selectors`: the warm worker sets this up
    for every job, and in a process that has just forked, every object touched costs a
    page copy (see `worker.run_job`).
    """

    def __init__(self, outputs: dict[int, Capture], pids: list[int], stdin_fd: int | None = None,
                 stdin: bytes = b""):
        self.outputs = outputs
        self.poll = select.poll()
        self.kind: dict[int, str] = {}  # fd -> "pipe", "stdin" or "exit"
        for fd in outputs:
            self._add(fd, "pipe", select.POLLIN)
        self.pending = memoryview(stdin)
        if stdin_fd is not None:
            if self.pending:
                os.set_blocking(stdin_fd, False)
                self._add(stdin_fd, "stdin", select.POLLOUT)
            else:
                os.close(stdin_fd)
        self.waiting: dict[int, int] = {}  # pidfd -> pid
        self.handlers: dict = {}  # fd -> handler(fd, event) for kind "handler"
        for pid in pids:
            self.watch_pid(pid)

    def watch_pid(self, pid: int) -> None:
        pidfd = os.pidfd_open(pid)
        self.waiting[pidfd] = pid
        self._add(pidfd, "exit", select.POLLIN)

    def add_handler(self, fd: int, events: int, handler) -> None:
        """Call `handler(fd, event)` when `fd` is ready (until `drop(fd)`)."""
        self.handlers[fd] = handler
        self._add(fd, "handler", events)

    def drop(self, fd: int, close: bool = True) -> None:
        self.handlers.pop(fd, None)
        self.poll.unregister(fd)
        del self.kind[fd]
        if close:
            os.close(fd)

    def _add(self, fd: int, kind: str, events: int) -> None:
        self.kind[fd] = kind
        self.poll.register(fd, events)

    def _close(self, fd: int) -> None:
        self.drop(fd)

    def _ready(self, remaining: float) -> list:
        return self.poll.poll(max(0, math.ceil(remaining * 1000)))

    def run(self, deadline: float, on_exit=lambda pid: None) -> bool:
        """True if the deadline passed before every watched process exited."""
        while self.waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            for fd, event in self._ready(remaining):
                kind = self.kind.get(fd)
                if kind == "handler":
                    self.handlers[fd](fd, event)
                elif kind == "stdin":
                    try:
                        self.pending = self.pending[os.write(fd, self.pending):]
                    except OSError:  # the process closed its stdin: fine
                        self.pending = self.pending[:0]
                    if not self.pending:
                        self._close(fd)
                elif kind == "pipe":
                    self._read(fd)
                elif fd in self.waiting:
                    pid = self.waiting.pop(fd)
                    self._close(fd)
                    on_exit(pid)
        return False

    def _read(self, fd: int) -> bool:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return False
        if chunk:
            self.outputs[fd].feed(chunk)
            return True
        self._close(fd)
        return False

    def finish(self, deadline: float) -> list[int]:
        """Read the pipes to their end (or until `deadline`), close everything; returns the
        pids whose exit was never seen (the caller reaps or kills them)."""
        unseen = list(self.waiting.values())
        # only the pipes are left to read: a dead process's exit fd, or stdin to a reader
        # that is gone, would stay ready and turn the loop below into a busy wait
        for fd, kind in list(self.kind.items()):
            if kind != "pipe":
                self._close(fd)
        while self.kind:
            remaining = deadline - time.monotonic()
            ready = self._ready(remaining) if remaining > 0 else []
            if not ready:
                break
            for fd, _ in ready:
                if fd in self.kind:
                    self._read(fd)
        for fd in list(self.kind):  # past the deadline: what is there, no waiting
            os.set_blocking(fd, False)
            while fd in self.kind and self._read(fd):
                pass
            if fd in self.kind:
                self._close(fd)
        return unseen
