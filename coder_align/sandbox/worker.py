"""A warm worker: started once inside one bubblewrap sandbox, it forks a fresh child per job.

Run as `python -I -S worker.py --tests-fd N [--pidns]` (`pool.LAUNCH` imports it instead,
to use its bytecode). Jobs arrive as frames on stdin and
reports leave on stdout (see `codec` for framing). The worker never reads the tests:
the host writes them to `--tests-fd`, which only the per-job test process reads, so a
candidate forked from the worker finds no expected values in its inherited memory. A job
with direct calls (`testcases.py`) has no test process: the host writes the calls to
`--tests-fd` too, the worker reads them only after forking the candidate and hands them
over one at a time (`relay.Relay`), and passes the replies on, bounded, to the host.

What a job costs here is mostly the kernel's: fork, a page copy for every page a process
writes that it still shares with the other, and exit (`benchmarks/README.md` has the
profile). Hence the shape of `run_job`: everything prepared before the fork, the forked
processes only make system calls before running the job, and the worker does little
while they live.

Per job: a private temp dir, rlimits on the candidate (CPU, address space, file size,
open files, processes), a wall-clock deadline, and afterwards everything else in the PID
namespace is killed (`--pidns`; otherwise only this worker's descendants), /tmp and
/dev/shm are emptied and given back their mode (`scrub.py`). Anything odd (timeout, a
leftover that would not die, a tree too deep to remove, a socket kept alive in flight) is
reported as `dirty` and the host replaces the whole sandbox; the job's verdict stands.
"""

from __future__ import annotations

import _signal
import ctypes
import fcntl
import math
import os
import resource
import signal
import sys
import termios
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import codec  # noqa: E402
import harness  # noqa: E402
import relay as relays  # noqa: E402
import scrub  # noqa: E402
import seccomp  # noqa: E402
from watch import Capture, Watch, hard_limits, limit_values  # noqa: E402

PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 4, 36
TMP = "/tmp"  # replaced by --tmp DIR when running without a sandbox: never the host's /tmp
WORKDIR = "/tmp/job"  # the candidate's working directory, in TMP
HARD_LIMITS = None  # ours, read once: a job process may only lower them
OOM_SCORE_WRITABLE = False  # found out once, at start-up
ROOTS = None  # scrub.Roots: the writable roots as they were at start-up
NETWORK = None  # scrub.Network: our own network namespace (unsandboxed, it is the host's: None)


def _prctl(option: int, value: int) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


# What a forked job process does before running anything, worked out here before the fork:
# in the child, every object touched costs a page copy, so it only makes the system calls.


def _limits(job: dict, candidate: bool) -> list:
    cpu = int(math.ceil(job["timeout"])) + 1
    if candidate:
        return limit_values(cpu_s=cpu, cpu_grace_s=1, memory_mb=job["memory_mb"], fsize_mb=job["fsize_mb"],
                            nofile=256, nproc=job.get("nproc"), known_hard=HARD_LIMITS)
    return limit_values(cpu_s=cpu, cpu_grace_s=1, known_hard=HARD_LIMITS)


def _close_ranges(keep) -> list[tuple[int, int]]:
    """The fd ranges to close to keep only 0-2 and `keep`."""
    ranges, lo = [], 3
    for fd in sorted(k for k in set(keep) if k >= 3):
        ranges.append((lo, fd))
        lo = fd + 1
    return ranges + [(lo, 1 << 16)]


def _become_job_process(close: list, limits: list) -> None:
    for lo, hi in close:
        os.closerange(lo, hi)
    if OOM_SCORE_WRITABLE:
        # Under a memory cgroup the kernel kills someone at the limit: let it be the job's
        # processes rather than the worker, so their output still comes back.
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
        os.write(fd, b"1000")
        os.close(fd)
    for res, value in limits:
        resource.setrlimit(res, value)


def _fork_tests(job, tests_fd, ver_w, req_w, resp_r) -> int:
    close, limits = _close_ranges([tests_fd, ver_w, req_w, resp_r]), _limits(job, candidate=False)
    pid = os.fork()
    if pid == 0:
        try:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            _become_job_process(close, limits)
            harness.run_tests(tests_fd, ver_w, req_w, resp_r)
        finally:
            os._exit(70)
    return pid


def _fork_candidate(job, in_r, out_w, err_w, req_r, resp_w) -> int:
    close = _close_ranges([fd for fd in (req_r, resp_w) if fd is not None])
    limits = _limits(job, candidate=True)
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            os.dup2(in_r, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            os.chdir(WORKDIR)  # also $TMPDIR, set once in main()
            _signal.signal(_signal.SIGINT, _signal.default_int_handler)  # as in any Python (see main)
            _become_job_process(close, limits)
            harness.run_candidate(job, req_r, resp_w)
        finally:
            os._exit(70)
    return pid


def _oom_score_writable() -> bool:
    """Whether a job process may raise its own OOM score. Not inside bubblewrap: a child of
    a non-dumpable process cannot open its /proc/self/oom_score_adj there (EACCES)."""
    pid = os.fork()
    if pid == 0:
        try:
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
            os.write(fd, b"1000")
            os._exit(0)
        except BaseException:
            os._exit(1)
    return os.waitpid(pid, 0)[1] == 0


def _unread(fd: int) -> int:
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)


def _descendants_alive(pidns: bool) -> list[int]:
    me, found = os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in (1, me):
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        state, ppid = fields[0], int(fields[1])
        if state == b"Z" and ppid != me:
            continue  # someone else's zombie: already dead, its reaper will collect it
        if pidns or ppid == me:
            found.append(int(name))
    return found


def _kill_everything(pidns: bool) -> bool:
    """SIGKILL every other process (ours, or all in the namespace); True once none is left."""
    deadline = time.monotonic() + 3.0
    if pidns:
        return _kill_namespace(deadline)
    while time.monotonic() < deadline:
        pids = _descendants_alive(pidns)
        if not pids:
            return True
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        time.sleep(0.001)
    return False


def _kill_namespace(deadline: float) -> bool:
    # As the namespace's PID 1 we are every process's ancestor, and its reaper once its
    # parent is gone: kill(-1) reaches all but us, and "no children" means none is left.
    # (Cheaper than reading /proc: this runs after every job.)
    while time.monotonic() < deadline:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:  # nobody left to signal (zombies may remain to reap)
            pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return True
        time.sleep(0.001)
    return False


def _sandbox_restored(tests_fd: int) -> bool:
    """Whatever the job did to its sandbox, put back; False if it cannot be (the host then
    replaces the sandbox; the job's verdict stands)."""
    clean = ROOTS.reset()
    # tests a killed test process never read would be the next job's tests or calls
    clean = not _unread(tests_fd) and clean
    return (NETWORK is None or NETWORK.clean()) and clean


def run_job(job: dict, tests_fd: int, pidns: bool) -> dict:
    t0 = time.monotonic()
    own_before = resource.getrusage(resource.RUSAGE_SELF)
    os.mkdir(WORKDIR, 0o700)  # wiped with the rest of TMP after each job
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    captures = {out_r: Capture(job["output_cap"]), err_r: Capture(job["output_cap"])}
    child_ends = [in_r, out_w, err_w]
    verdict = relay = test_fds = req_r = req_w = resp_w = None
    if job["mode"] == "check":
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
    if job["mode"] == "check" and job.get("calls") is not None:
        child_ends += [req_r, resp_w]  # direct calls: the candidate answers them (relay.Relay)
    elif job["mode"] == "check":
        ver_r, ver_w = os.pipe()
        captures[ver_r] = verdict = Capture(codec.MAX_FRAME)
        test_fds = (ver_w, req_w, resp_r)
        child_ends += [req_r, req_w, resp_r, resp_w, ver_w]
    # All set up before forking: from the fork until the job's processes exit, each page
    # this process writes is copied (they share it), so the less done then the better.
    watch = Watch(captures, [], in_w, job["stdin"].encode())
    if req_w is not None and test_fds is None:
        relay = relays.Relay(job["calls"], req_w, resp_r, watch)
    b_pid = _fork_tests(job, tests_fd, *test_fds) if test_fds else None
    a_pid = _fork_candidate(job, in_r, out_w, err_w, req_r, resp_w)
    for fd in child_ends:
        os.close(fd)
    for pid in (b_pid, a_pid):
        if pid is not None:
            watch.watch_pid(pid)
    if relay is not None:  # the calls come from the host only now, after the fork
        relay.start(tests_fd, job["calls_bytes"])

    ended: dict[int, tuple] = {}  # pid -> (wait status, rusage)

    def on_exit(pid: int) -> None:
        ended[pid] = os.wait4(pid, 0)[1:]
        if pid == b_pid and a_pid not in ended:
            # the tests are over; whatever the candidate still does is irrelevant
            try:
                os.killpg(a_pid, signal.SIGKILL)
            except OSError:
                pass

    timed_out = watch.run(t0 + job["timeout"], on_exit)
    clean = _kill_everything(pidns)
    # the writers are dead now, so what is left in the pipes is finite
    replies = relay.finish() if relay is not None else None
    for pid in watch.finish(time.monotonic() + 1.0):
        try:
            ended[pid] = os.wait4(pid, 0)[1:]
        except ChildProcessError:
            pass
    clean = _sandbox_restored(tests_fd) and clean

    status = ended.get(a_pid, (None,))[0]
    report = {
        "id": job["id"],
        "duration": time.monotonic() - t0,
        "timed_out": timed_out,
        "exit_code": os.WEXITSTATUS(status) if status is not None and os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if status is not None and os.WIFSIGNALED(status) else None,
        "stdout": captures[out_r].dump(),
        "stderr": captures[err_r].dump(),
        "dirty": timed_out or not clean,
        "verdict": None,
        "usage": _usage(own_before, ended.get(a_pid), ended.get(b_pid)),
    }
    if replies is not None:
        report["calls"] = replies
    if verdict is not None and verdict.data:
        try:
            report["verdict"] = codec.read_frame_bytes(bytes(verdict.data))
        except Exception:
            report["dirty"] = True
    return report


def _usage(own_before, candidate, tests) -> dict:
    """[CPU seconds, page faults] of this job's share of the worker and of each job process,
    for profiles (benchmarks/sandbox_profile.py)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    usage = {"worker": [own.ru_utime + own.ru_stime - own_before.ru_utime - own_before.ru_stime,
                        own.ru_minflt - own_before.ru_minflt]}
    for name, ended in (("candidate", candidate), ("tests", tests)):
        if ended is not None:
            usage[name] = [ended[1].ru_utime + ended[1].ru_stime, ended[1].ru_minflt]
    return usage


def _working_filter():
    """The seccomp installer, once a throw-away child has used it and still works."""
    install = seccomp.installer(seccomp.build_filter())
    pid = os.fork()
    if pid == 0:
        try:
            install()
            os._exit(0 if os.getpid() > 0 else 1)
        except BaseException:
            os._exit(1)
    if os.waitpid(pid, 0)[1] != 0:
        raise OSError("the seccomp filter could not be installed")
    return install


def main(argv: list[str]) -> int:
    tests_fd = int(argv[argv.index("--tests-fd") + 1])
    pidns = "--pidns" in argv
    global TMP, WORKDIR
    TMP = argv[argv.index("--tmp") + 1] if "--tmp" in argv else TMP
    WORKDIR = os.environ["TMPDIR"] = os.path.join(TMP, "job")
    if not pidns and TMP == "/tmp":
        raise SystemExit("worker: without a PID namespace pass --tmp with a private directory")
    # non-dumpable: a candidate (same uid) may not ptrace us or open /proc/<pid>/fd|mem
    _prctl(PR_SET_DUMPABLE, 0)
    try:
        # on ourselves: every process we fork inherits it, so a job's processes pay nothing
        _working_filter()()
    except OSError as e:
        if pidns:  # sandboxed: no candidate runs without the filter
            codec.write_frame(1, {"ready": False, "error": f"seccomp: {e}"})
            return 1
    # PID 1 gets no signal from inside its namespace that it has no handler for, but Python
    # installs one for SIGINT: without this, a job's O_ASYNC socket (F_SETOWN 1,
    # F_SETSIG SIGINT) could interrupt a later job, or kill us while idle
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    harness.prepare_std_streams()  # once, for every candidate to inherit
    harness.warm_up()
    global HARD_LIMITS, OOM_SCORE_WRITABLE, ROOTS, NETWORK
    HARD_LIMITS, OOM_SCORE_WRITABLE = hard_limits(), _oom_score_writable()
    # the sandbox's own /dev/shm; unsandboxed, /dev is the host's
    ROOTS = scrub.Roots([TMP, "/dev/shm"] if pidns and os.path.isdir("/dev/shm") else [TMP])
    NETWORK = scrub.Network() if pidns else None
    os.environ.pop("LD_BIND_NOW", None)  # pool.WORKER_ENV: it has done its work at start-up
    # orphans of a job re-parent to us, so we can find and kill them without a PID namespace
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    codec.write_frame(1, {"ready": True, "pid": os.getpid()})
    while True:
        job = codec.read_frame(0)
        if job is None:
            return 0
        try:
            report = run_job(job, tests_fd, pidns)
        except Exception:
            report = {"id": job.get("id"), "infra_error": traceback.format_exc()[-4000:]}
        codec.write_frame(1, report)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
