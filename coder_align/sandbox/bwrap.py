"""Building bubblewrap command lines, and running one sandboxed command under a watchdog.

The sandbox: new user, PID, network, IPC, UTS and cgroup namespaces; uid/gid 65534
inside; no capabilities; a cleared environment; read-only /usr (plus the /bin, /lib*
links and the few /etc entries toolchains read); a private size-limited tmpfs at /tmp;
new session; dies with its parent. Nothing else of the host is visible: no home
directories, no project or data directories.

When the host process is root, sandboxes are started as host uid 65534 too: for root the
kernel ignores RLIMIT_NPROC, so a fork bomb would otherwise be limited only by the watchdog.
"""

from __future__ import annotations

import glob
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

from coder_align.sandbox.watch import Capture, Watch, cap_limits

SANDBOX_UID = 65534
TMPFS_BYTES = 512 << 20
SHM_BYTES = 64 << 20
PATH_ENV = "/usr/local/bin:/usr/bin:/bin"
# bwrap's own environment: --clearenv empties only the sandboxed command's, while bwrap's
# PID-1 process inside the sandbox keeps this one, readable at /proc/1/environ
BWRAP_ENV = {"PATH": PATH_ENV, "LANG": "C.UTF-8"}


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot run here (bubblewrap missing or failing to start)."""


_FOUND: dict[str | None, str] = {}  # $PATH -> bwrap found there


def find_bwrap() -> str | None:
    # every check() asks: looking it up in each $PATH directory every time cost ~0.1 ms
    path_env = os.environ.get("PATH")
    found = _FOUND.get(path_env)
    if found is None or not os.access(found, os.X_OK):
        found = shutil.which("bwrap")
        if found is None:
            return None
        _FOUND[path_env] = found
    return found


def require_bwrap() -> str:
    path = find_bwrap()
    if path is None:
        raise SandboxUnavailable(
            "bubblewrap (`bwrap`) is not installed, so code cannot be run isolated. "
            "Install the Debian/Ubuntu package `bubblewrap` (apt-get install bubblewrap), "
            "or pass allow_unsandboxed=True to run with rlimits and a process group only."
        )
    return path


def drop_privileges() -> bool:
    return os.geteuid() == 0


def readable_by_sandbox_user(path: str) -> bool:
    """Whether uid 65534 can reach `path` (always True when we are not root: no uid change)."""
    if not drop_privileges():
        return True
    p = Path(path).resolve()
    for parent in reversed(p.parents):
        if not parent.stat().st_mode & stat.S_IXOTH:
            return False
    return bool(p.stat().st_mode & stat.S_IROTH)


def popen_user_kwargs(as_sandbox_user: bool = True) -> dict:
    if as_sandbox_user and drop_privileges():
        return {"user": SANDBOX_UID, "group": SANDBOX_UID, "extra_groups": []}
    return {}


def _system_mounts() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    # only what dynamic loading and toolchains read; never passwd/shadow/hosts
    for entry in ["/etc/ld.so.cache", "/etc/alternatives", *glob.glob("/etc/java-*")]:
        if os.path.exists(entry):
            args += ["--ro-bind", entry, entry]
    return args


def bwrap_command(
    argv: list[str],
    *,
    ro_binds: list[tuple[str, str]] = (),
    rw_binds: list[tuple[str, str]] = (),
    env: dict[str, str] | None = None,
    chdir: str = "/tmp",
    as_pid_1: bool = False,
) -> list[str]:
    """The bwrap command line for `argv`; see the module docstring for what it isolates.

    `as_pid_1`: `argv` itself becomes the PID namespace's init instead of bwrap's. bwrap's
    init keeps fds 0-2 open and runs as the sandbox user, dumpable, so anything in the
    sandbox could take a copy of them; a warm worker's fds 0-2 are its channel to the host,
    so the worker must be PID 1 itself (non-dumpable, and immune to signals from inside).
    """
    cmd = [
        require_bwrap(),
        "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc",
        "--unshare-uts", "--unshare-cgroup-try",
        "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
        "--hostname", "sandbox",
        "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        "--clearenv",
    ]
    if as_pid_1:
        cmd.append("--as-pid-1")
    full_env = {"PATH": PATH_ENV, "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
    full_env.update(env or {})
    for key, value in full_env.items():
        cmd += ["--setenv", key, value]
    cmd += _system_mounts()
    cmd += ["--proc", "/proc", "--dev", "/dev", "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm",
            "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp"]
    for src, dst in ro_binds:
        if not dst.startswith("/usr/"):
            cmd += ["--ro-bind", src, dst]
    for src, dst in rw_binds:
        cmd += ["--bind", src, dst]
    # bwrap builds / and /dev as tmpfs writable by the sandbox user: a file left there by
    # one job would be read by the next on a warm worker, and it would pin memory outside
    # every limit. Only the size-capped /tmp and /dev/shm stay writable (not recursive).
    cmd += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", chdir, "--"]
    return cmd + list(argv)


def sandbox_python() -> tuple[str, str]:
    """(interpreter, its install prefix) that the sandbox user can run: ours if reachable."""
    candidates = [(os.path.realpath(sys.executable), sys.base_prefix)]
    for exe in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(exe):
            real = os.path.realpath(exe)
            candidates.append((real, str(Path(real).parents[1])))
    for exe, prefix in candidates:
        if os.path.exists(exe) and readable_by_sandbox_user(exe):
            return exe, prefix
    raise SandboxUnavailable(
        f"no Python interpreter readable by uid {SANDBOX_UID} (tried "
        f"{', '.join(c for c, _ in candidates)}); install python3 system-wide"
    )


# ---- one command under a watchdog --------------------------------------------------------


def limits_preexec(cpu_s: int | None, memory_mb: int | None, fsize_mb: int, nproc: int | None):
    def apply():
        cap_limits(cpu_s=cpu_s, memory_mb=memory_mb, fsize_mb=fsize_mb, nofile=256, nproc=nproc)

    return apply


def supervise(cmd: list[str], *, stdin: bytes, timeout: float, output_cap: int,
              seccomp_filter: bytes | None = None, **popen_kw) -> dict:
    """Run `cmd` in its own process group; kill the group at the deadline.

    Killing bwrap's outer process takes the sandbox's PID 1 down, and with it every process
    in the sandbox's PID namespace. `seccomp_filter` (bwrap only) is applied to the command.
    """
    t0 = time.monotonic()
    status_r = None
    parent_ends = []
    if os.path.basename(cmd[0]) == "bwrap":
        # bwrap reports the sandboxed command's exit on this fd, which the command cannot
        # reach: without that line the sandbox itself failed (infrastructure, not the code)
        status_r, status_w = os.pipe()
        extra = ["--json-status-fd", str(status_w)]
        parent_ends.append(status_w)
        if seccomp_filter is not None:
            filter_r, filter_w = os.pipe()  # a few hundred bytes: fits the pipe buffer
            os.write(filter_w, seccomp_filter)
            os.close(filter_w)
            extra += ["--seccomp", str(filter_r)]
            parent_ends.append(filter_r)
        cmd = [cmd[0], *extra, *cmd[1:]]
        popen_kw["pass_fds"] = tuple(parent_ends)
    try:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, close_fds=True, **popen_kw,
        )
    finally:
        for fd in parent_ends:
            os.close(fd)
    # the Popen objects give up their fds to the watch, which closes them
    out, err = Capture(output_cap), Capture(output_cap)
    fds = {os.dup(proc.stdout.fileno()): out, os.dup(proc.stderr.fileno()): err}
    stdin_fd = os.dup(proc.stdin.fileno())
    for f in (proc.stdin, proc.stdout, proc.stderr):
        f.close()
    watch = Watch(fds, [proc.pid], stdin_fd, stdin)
    deadline = t0 + timeout
    timed_out = watch.run(deadline)
    if timed_out:
        try:
            os.killpg(proc.pid, 9)
        except OSError:
            pass
    # bwrap has exited (or was killed): its sandbox's processes die with it, so the pipes end
    watch.finish(max(deadline, time.monotonic()) + 0.5)
    try:
        returncode = proc.wait(timeout=max(0.5, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, 9)
        returncode = proc.wait()
    sandbox_failed = False
    if status_r is not None:
        with os.fdopen(status_r, "rb") as f:
            sandbox_failed = not timed_out and b'"exit-code"' not in f.read(1 << 16)
    return {
        "sandbox_failed": sandbox_failed,
        "duration": time.monotonic() - t0,
        "timed_out": timed_out,
        "exit_code": returncode if returncode >= 0 else None,
        "signal": -returncode if returncode < 0 else None,
        "stdout": bytes(out.data), "stdout_truncated": out.truncated,
        "stderr": bytes(err.data), "stderr_truncated": err.truncated,
    }
