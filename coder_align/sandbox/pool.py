"""Host side of the warm Python workers: start them, hand them jobs, replace broken ones.

Each worker is one long-lived `worker.py` inside its own bubblewrap sandbox (or, with
`allow_unsandboxed`, a plain process group). A job is sent on the worker's stdin; the
job's tests go on a separate pipe that only the per-job test process reads; the report
comes back on stdout. A worker that misses its deadline, reports itself dirty, or sends
anything unexpected is killed and replaced, never reused. A worker found dead before it
took a job, or whose bwrap was killed from outside (no job can reach it), is replaced and
the job goes to another: that is never the job's verdict.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import itertools
import logging
import os
import queue
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from coder_align.sandbox import bwrap, cgroups, codec

HERE = Path(__file__).resolve().parent
START_TIMEOUT = 30.0
REPORT_SLACK = 1.5  # beyond the job timeout: the worker kills at the deadline itself; a
# candidate that SIGSTOPs its worker costs at most this much before the worker is replaced


# Every library function resolved when the worker starts, not lazily in each forked job
# process (each lazy resolution writes a page that fork shares); the worker removes it again
WORKER_ENV = {"LD_BIND_NOW": "1"}
PINNED_SLACK_MB = 32  # cgroup usage after a job beyond the worker's own at start
GONE_RETRIES = 3  # workers found dead before taking a job, in a row, before giving up


_warned_no_group = threading.Event()


def _no_memory_group(reason: str) -> None:
    if not _warned_no_group.is_set():
        _warned_no_group.set()
        logging.getLogger(__name__).warning(
            "sandbox: no memory cgroup for a worker (%s); memory_mb bounds each process, not the job", reason)


class WorkerGone(RuntimeError):
    """The worker was dead before it took the job (it died while idle): not the job's
    doing, so the job goes to another worker."""


class WorkerDied(RuntimeError):
    """The worker vanished mid-job. Reported as the candidate's failure: only it (or the
    memory limit it ran into) could do that."""

    def __init__(self, message: str, oom_killed: bool = False):
        super().__init__(message)
        self.oom_killed = oom_killed


IN_SANDBOX = ("worker.py", "harness.py", "codec.py", "relay.py", "scrub.py", "seccomp.py", "watch.py")
# The worker is imported from bytecode, not run as a script: a script is compiled at every
# start, and what the compiler allocated stays in the worker's heap (1-2 MB more to copy at
# every fork and to unmap at every job process's exit).
LAUNCH = "import sys; sys.path.insert(0, sys.argv[1].rpartition('/')[0]); import worker; sys.exit(worker.main(sys.argv[2:]))"
_COMPILE = "import py_compile, sys\nfor path in sys.argv[1:]:\n    py_compile.compile(path, doraise=True)"


def _harness_dir(exe: str) -> str:
    """A copy of the in-sandbox modules, compiled by the sandbox's interpreter `exe`, readable
    by the sandbox user; bound at /opt/coder_align. Without the bytecode (a compile error)
    the worker still starts, compiling them itself."""
    global _HARNESS_DIR
    if _HARNESS_DIR is None:
        d = tempfile.mkdtemp(prefix="coder_align_harness_")
        paths = [os.path.join(d, name) for name in IN_SANDBOX]
        for name, path in zip(IN_SANDBOX, paths):
            shutil.copy(HERE / name, path)
            os.chmod(path, 0o644)
        subprocess.run([exe, "-I", "-S", "-c", _COMPILE, *paths], capture_output=True, check=False)
        for root, dirs, files in os.walk(d):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
            for name in files:
                os.chmod(os.path.join(root, name), 0o644)
        os.chmod(d, 0o755)
        atexit.register(shutil.rmtree, d, True)
        _HARNESS_DIR = d
    return _HARNESS_DIR


_HARNESS_DIR: str | None = None


class _Worker:
    def __init__(self, sandboxed: bool):
        self.sandboxed = sandboxed
        self.scratch = None
        tests_r, self.tests_w = os.pipe()
        os.set_blocking(self.tests_w, False)  # the host never waits on it past a job's deadline
        try:
            if sandboxed:
                exe, prefix = bwrap.sandbox_python()
                argv = [exe, "-I", "-S", "-c", LAUNCH, "/opt/coder_align/worker.py", "--tests-fd", str(tests_r), "--pidns"]
                cmd = bwrap.bwrap_command(argv, ro_binds=[(prefix, prefix), (_harness_dir(exe), "/opt/coder_align")],
                                          env=WORKER_ENV, as_pid_1=True)
                kw = dict(bwrap.popen_user_kwargs(), env=bwrap.BWRAP_ENV)
            else:
                self.scratch = tempfile.mkdtemp(prefix="coder_align_unsandboxed_")
                cmd = [os.path.realpath(sys.executable), "-I", "-S", "-c", LAUNCH, str(HERE / "worker.py"),
                       "--tests-fd", str(tests_r), "--tmp", self.scratch]
                kw = {"env": {"PATH": bwrap.PATH_ENV, "LANG": "C.UTF-8", "HOME": self.scratch, **WORKER_ENV}}
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                pass_fds=(tests_r,), start_new_session=True, **kw,
            )
        finally:
            os.close(tests_r)
        self.buf = b""
        self.group = None
        hello = self._read_frame(time.monotonic() + START_TIMEOUT)
        if not (isinstance(hello, dict) and hello.get("ready")):
            err = self.proc.stderr.read1(4000).decode(errors="replace") if self.proc.poll() is not None else ""
            self.close()
            raise bwrap.SandboxUnavailable(f"sandbox worker failed to start: {hello!r} {err}".strip())
        if sandboxed and cgroups.available():
            self._enter_memory_group()

    def _enter_memory_group(self) -> None:
        # The worker has forked nothing yet (it waits for its first job), so moving it
        # moves every process any job will have. Where that fails, the worker runs on
        # per-process limits, as it does where no cgroup can be created (said once).
        children = cgroups.child_pids(self.proc.pid)
        if len(children) != 1:
            return _no_memory_group(f"cannot find the sandbox worker under bwrap (children: {children})")
        group = None
        try:
            group = cgroups.MemoryGroup()
            group.add(children[0])
            self.baseline_mb = group.usage_mb()
            self.oom_kills = group.oom_kills()  # read after each job: the next one's "before"
        except OSError as e:
            if group is not None:
                group.remove()
            return _no_memory_group(f"{type(e).__name__}: {e}")
        self.group = group

    def _read_frame(self, deadline: float):
        fd = self.proc.stdout.fileno()
        need = 4
        while True:
            if len(self.buf) >= 4:
                need = 4 + struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= need:
                    frame, self.buf = self.buf[:need], self.buf[need:]
                    return codec.read_frame_bytes(frame)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return TimeoutError
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, max(need - len(self.buf), 1 << 16))
                if not chunk:
                    raise WorkerDied("worker exited")
                self.buf += chunk

    def submit(self, job: dict, tests: bytes | None) -> dict:
        """Send one job (and its tests or direct calls, for tests_fd); return the worker's
        report, or a synthetic one if the deadline passed."""
        deadline = time.monotonic() + job["timeout"] + REPORT_SLACK
        frame = codec.encode_frame(job)
        if self.group is not None:
            try:
                self.group.limit(job["memory_mb"])
            except OSError as e:  # an infrastructure failure: this job is unjudged, the worker replaced
                raise bwrap.SandboxUnavailable(f"cannot set the job's memory limit: {e}") from None
            oom_before = self.oom_kills
        try:
            # what fits in the tests pipe goes first, so the worker finds it there when it
            # needs it (only a job process or, after the fork, the worker reads that pipe)
            tests = self._write_what_fits(tests) if tests else tests
            self.proc.stdin.write(frame)
            self.proc.stdin.flush()
        except (OSError, ValueError) as e:
            raise WorkerGone(f"idle worker gone: {e}") from None
        try:
            if tests:
                self._write_tests(tests, deadline)
            report = self._read_frame(deadline)
        except (OSError, ValueError, WorkerDied) as e:
            if self._killed_from_outside():
                raise WorkerGone(f"sandbox killed from outside: {e}") from None
            raise WorkerDied(str(e), self._oom_killed(oom_before) if self.group else False) from None
        if report is TimeoutError:
            report = {"id": job["id"], "timed_out": True, "dirty": True, "worker_timeout": True}
        if self.group is not None:
            report["oom_killed"] = self._oom_killed(oom_before)
            # anything a job left in memory (it should be gone with its processes and
            # files) is freed by replacing the worker
            if self.group.usage_mb() > self.baseline_mb + PINNED_SLACK_MB:
                report["dirty"] = True
        return report

    def _killed_from_outside(self) -> bool:
        # bwrap's own process is outside the sandbox's PID namespace: no job can signal it,
        # and it exits by itself (with its worker's status) when the worker dies
        try:
            return self.proc.wait(timeout=1.0) < 0
        except subprocess.TimeoutExpired:
            return False

    def _oom_killed(self, before: int) -> bool:
        try:
            self.oom_kills = self.group.oom_kills()
        except OSError:
            return False
        return self.oom_kills > before

    def _write_what_fits(self, data: bytes) -> bytes:
        """Write what the tests pipe takes now, without waiting; returns the rest."""
        try:
            return data[os.write(self.tests_w, data):]
        except BlockingIOError:
            return data

    def _write_tests(self, data: bytes, deadline: float) -> None:
        # The test process may die before reading everything; never block past the deadline.
        view = memoryview(data)
        while view:
            if time.monotonic() > deadline:
                raise WorkerDied("tests were not consumed")
            _, ready, _ = select.select([], [self.tests_w], [], 0.05)
            if ready:
                try:
                    view = view[os.write(self.tests_w, view):]
                except BlockingIOError:
                    pass

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """Kill and clean up; never raises (a dead worker's stdin may fail to flush)."""
        try:
            os.killpg(self.proc.pid, 9)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            logging.getLogger(__name__).warning("sandbox worker %d did not exit after SIGKILL", self.proc.pid)
        for close in (self.proc.stdin.close, self.proc.stdout.close, self.proc.stderr.close,
                      lambda: os.close(self.tests_w)):
            try:
                close()
            except (OSError, ValueError):
                pass
        if self.group is not None:
            try:
                self.group.remove()
            except OSError:
                pass
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)


class WorkerPool:
    """A bounded set of warm workers shared by all threads of this process."""

    def __init__(self, sandboxed: bool, max_workers: int):
        self.sandboxed = sandboxed
        self.max_workers = max_workers
        self.idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self.count = 0
        self.lock = threading.Lock()
        self.ids = itertools.count()
        # bwrap's --die-with-parent fires when the *thread* that spawned it exits, so every
        # worker is spawned by this one long-lived thread rather than by a short-lived caller.
        self.spawner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sandbox-spawner")

    def execute(self, job: dict, tests: dict | None) -> dict:
        """Run one job; `job["calls"]` (a list of [name, args, kwargs]) makes it a direct-call
        job, whose calls go to the worker on the tests pipe."""
        job = dict(job, id=next(self.ids))
        data = None
        if tests is not None:
            data = codec.encode_frame(dict(tests, id=job["id"]))
        elif job.get("calls") is not None:
            data = b"".join(codec.encode_frame(call) for call in job["calls"])
            job.update(calls=len(job["calls"]), calls_bytes=len(data))
        for _ in range(GONE_RETRIES):
            worker = self._acquire()
            try:
                report = worker.submit(job, data)
            except WorkerGone:
                self._discard(worker)
                continue
            except WorkerDied as e:
                self._discard(worker)
                return {"id": job["id"], "worker_died": str(e), "timed_out": False, "oom_killed": e.oom_killed}
            except BaseException:
                self._discard(worker)
                raise
            if report.get("dirty") or report.get("infra_error") or not worker.alive():
                self._discard(worker)
            else:
                self.idle.put(worker)
            return report
        raise bwrap.SandboxUnavailable(f"{GONE_RETRIES} sandbox workers in a row were dead before taking a job")

    def _acquire(self) -> _Worker:
        wait = 0.0
        while True:
            try:
                worker = self.idle.get(timeout=wait) if wait else self.idle.get_nowait()
            except queue.Empty:
                wait = 0.05
            else:
                if worker.alive():
                    return worker
                self._discard(worker)  # died while idle: its slot is free again
                continue
            with self.lock:  # a discarded worker frees a slot: re-check rather than wait forever
                grow = self.count < self.max_workers
                if grow:
                    self.count += 1
            if grow:
                try:
                    return self.spawner.submit(_Worker, self.sandboxed).result()
                except BaseException:
                    with self.lock:
                        self.count -= 1
                    raise

    def _discard(self, worker: _Worker) -> None:
        try:
            worker.close()
        finally:
            with self.lock:
                self.count -= 1

    def shutdown(self) -> None:
        while True:
            try:
                self.idle.get_nowait().close()
            except queue.Empty:
                break
        self.spawner.shutdown(wait=False)


# keyed by pid too: a forked copy of this process (a DataLoader worker) must not share
# the parent's pipes to its workers
_POOLS: dict[tuple[int, bool], WorkerPool] = {}
_POOLS_LOCK = threading.Lock()


def get_pool(sandboxed: bool, min_workers: int = 0) -> WorkerPool:
    with _POOLS_LOCK:
        key = (os.getpid(), sandboxed)
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = WorkerPool(sandboxed, max(os.cpu_count() or 1, 1))
        pool.max_workers = max(pool.max_workers, min_workers)
        return pool


@atexit.register
def _shutdown_pools() -> None:
    for (pid, _), pool in _POOLS.items():
        if pid == os.getpid():
            pool.shutdown()
