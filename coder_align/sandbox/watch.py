"""Watching sandboxed processes: rlimits, capped output capture, and the deadline loop.

Standard library only: the warm worker imports it inside the sandbox (`worker.run_job`),
and the host uses the same pieces for one-shot bwrap commands (`bwrap.supervise`).
"""

from __future__ import annotations

import base64
import os
import resource
import selectors
import time


def cap_limits(*, cpu_s: int | None = None, cpu_grace_s: int = 0, memory_mb: int | None = None,
               fsize_mb: int | None = None, nofile: int | None = None, nproc: int | None = None) -> None:
    """Lower this process's rlimits (never above a hard limit already set); no core dumps.

    `cpu_grace_s`: the hard CPU limit lies this far past the soft one, so the process first
    gets SIGXCPU (reported as a timeout) and SIGKILL only if it ignores it.
    """
    def cap(res, soft, hard):
        cur_hard = resource.getrlimit(res)[1]
        if cur_hard != resource.RLIM_INFINITY:
            hard = min(hard, cur_hard)
            soft = min(soft, hard)
        resource.setrlimit(res, (soft, hard))

    cap(resource.RLIMIT_CORE, 0, 0)
    if cpu_s:
        cap(resource.RLIMIT_CPU, cpu_s, cpu_s + cpu_grace_s)
    for res, value in ((resource.RLIMIT_AS, memory_mb and memory_mb << 20),
                       (resource.RLIMIT_FSIZE, fsize_mb and fsize_mb << 20),
                       (resource.RLIMIT_NOFILE, nofile), (resource.RLIMIT_NPROC, nproc)):
        if value:
            cap(res, value, value)


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
    """One select loop over a job's stdin, its output pipes and its processes' exits.

    `run(deadline)` feeds stdin, captures outputs and calls `on_exit(pid)` as each watched
    process exits (the caller reaps it), until all have exited or the deadline passes.
    `finish(deadline)` then reads what is left in the pipes and closes every fd it holds.
    """

    def __init__(self, outputs: dict[int, Capture], pids: list[int], stdin_fd: int | None = None,
                 stdin: bytes = b""):
        self.outputs = outputs
        self.sel = selectors.DefaultSelector()
        for fd in outputs:
            self.sel.register(fd, selectors.EVENT_READ, "pipe")
        self.pending = memoryview(stdin)
        if stdin_fd is not None:
            if self.pending:
                os.set_blocking(stdin_fd, False)
                self.sel.register(stdin_fd, selectors.EVENT_WRITE, "stdin")
            else:
                os.close(stdin_fd)
        self.waiting: dict[int, int] = {}
        for pid in pids:
            pidfd = os.pidfd_open(pid)
            self.waiting[pidfd] = pid
            self.sel.register(pidfd, selectors.EVENT_READ, "exit")

    def _close(self, fd: int) -> None:
        self.sel.unregister(fd)
        os.close(fd)

    def run(self, deadline: float, on_exit=lambda pid: None) -> bool:
        """True if the deadline passed before every watched process exited."""
        while self.waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            for key, _ in self.sel.select(remaining):
                if key.data == "stdin":
                    try:
                        self.pending = self.pending[os.write(key.fd, self.pending):]
                    except OSError:  # the process closed its stdin: fine
                        self.pending = self.pending[:0]
                    if not self.pending:
                        self._close(key.fd)
                elif key.data == "pipe":
                    self._read(key.fd)
                elif key.fd in self.waiting:
                    pid = self.waiting.pop(key.fd)
                    self._close(key.fd)
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
        for key in list(self.sel.get_map().values()):
            if key.data != "pipe":
                self._close(key.fd)
        while self.sel.get_map():
            remaining = deadline - time.monotonic()
            ready = self.sel.select(remaining) if remaining > 0 else []
            if not ready:
                break
            for key, _ in ready:
                self._read(key.fd)
        for key in list(self.sel.get_map().values()):  # past the deadline: what is there, no waiting
            os.set_blocking(key.fd, False)
            while key.fd in self.sel.get_map() and self._read(key.fd):
                pass
            if key.fd in self.sel.get_map():
                self._close(key.fd)
        self.sel.close()
        return unseen
