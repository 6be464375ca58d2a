"""A seccomp filter for candidate processes: no reaching other processes, no state that outlives a job.

Standard library only: the sandbox's interpreter runs it with `-I -S` (worker.py applies it
to itself at start-up, so every candidate and test process it forks inherits it), and the
host passes the same program to bubblewrap's `--seccomp` for compiled languages.

What it refuses (EPERM unless noted), and why:
- other processes: ptrace, process_vm_readv/writev, pidfd_getfd, kcmp, migrate_pages,
  move_pages, process_madvise/mrelease; prlimit64 and the sched_set* calls on any pid but
  0 (self); setpriority on anything but (PRIO_PROCESS, self); ioprio_set. A candidate runs
  with the same uid as its warm worker, so without this it could lower the worker's limits
  or read its memory and sabotage or forge later jobs.
- state that would outlive the job or escape its memory limit: System V shm/sem/msg and
  POSIX message queues (they belong to the IPC namespace, not the process), memfd_create
  and memfd_secret (anonymous files outside RLIMIT_AS), keyrings (per uid).
- kernel surface a test never needs: io_uring (its operations bypass this filter),
  userfaultfd, perf_event_open, bpf, syslog, new namespaces (unshare, setns, clone with
  CLONE_NEW*; clone3 gets ENOSYS so libc falls back to clone, whose flags can be read),
  mounts (mount, umount2, pivot_root, chroot and the fs* mount API).
- another syscall ABI (x32 on x86-64) or an unexpected architecture: the process is killed.

Not filtered: file access, sockets, signals (the PID namespace bounds them), fork and exec.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000

# Syscall numbers: x86-64 from asm/unistd_64.h, aarch64 from asm-generic/unistd.h (a test
# compares both with the headers when they are installed).
SYSCALLS = {
    "x86_64": {
        "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "pidfd_getfd": 438,
        "kcmp": 312, "migrate_pages": 256, "move_pages": 279, "process_madvise": 440,
        "process_mrelease": 448, "prlimit64": 302, "sched_setparam": 142,
        "sched_setscheduler": 144, "sched_setaffinity": 203, "sched_setattr": 314,
        "setpriority": 141, "ioprio_set": 251, "shmget": 29, "semget": 64, "msgget": 68,
        "mq_open": 240, "memfd_create": 319, "memfd_secret": 447, "add_key": 248,
        "request_key": 249, "keyctl": 250, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "userfaultfd": 323, "perf_event_open": 298, "bpf": 321,
        "syslog": 103, "unshare": 272, "setns": 308, "clone": 56, "clone3": 435, "mount": 165,
        "umount2": 166, "pivot_root": 155, "chroot": 161, "open_tree": 428, "move_mount": 429,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    },
    "aarch64": {
        "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "pidfd_getfd": 438,
        "kcmp": 272, "migrate_pages": 238, "move_pages": 239, "process_madvise": 440,
        "process_mrelease": 448, "prlimit64": 261, "sched_setparam": 118,
        "sched_setscheduler": 119, "sched_setaffinity": 122, "sched_setattr": 274,
        "setpriority": 140, "ioprio_set": 30, "shmget": 194, "semget": 190, "msgget": 186,
        "mq_open": 180, "memfd_create": 279, "memfd_secret": 447, "add_key": 217,
        "request_key": 218, "keyctl": 219, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "userfaultfd": 282, "perf_event_open": 241, "bpf": 280,
        "syslog": 116, "unshare": 97, "setns": 268, "clone": 220, "clone3": 435, "mount": 40,
        "umount2": 39, "pivot_root": 41, "chroot": 51, "open_tree": 428, "move_mount": 429,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    },
}

DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp", "migrate_pages",
    "move_pages", "process_madvise", "process_mrelease", "ioprio_set", "shmget", "semget",
    "msgget", "mq_open", "memfd_create", "memfd_secret", "add_key", "request_key", "keyctl",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd", "perf_event_open",
    "bpf", "syslog", "unshare", "setns", "mount", "umount2", "pivot_root", "chroot",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
)
SELF_ONLY = ("prlimit64", "sched_setparam", "sched_setscheduler", "sched_setaffinity", "sched_setattr")
CLONE_NEW_ANY = 0x7E020080  # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWTIME

# classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h)
_LD_ABS_W, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
RET_ALLOW, RET_KILL = 0x7FFF0000, 0x80000000
RET_EPERM, RET_ENOSYS = 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS
_NR, _ARCH = 0, 4


def _arg_lo(i: int) -> int:
    return 16 + 8 * i  # seccomp_data.args[i], low 32 bits (little-endian machines only)


def _arg_hi(i: int) -> int:
    return 16 + 8 * i + 4


def build_filter(arch: str | None = None) -> bytes:
    """The filter as `struct sock_filter[]` bytes for `arch` (default: this machine's)."""
    arch = arch or os.uname().machine
    if arch not in SYSCALLS:
        raise OSError(f"no seccomp filter for architecture {arch!r}")
    nr = SYSCALLS[arch]
    prog: list[tuple] = []  # (code, jt label/offset, jf label/offset, k) before resolution
    labels: dict[str, int] = {}

    def op(code, k=0, jt=0, jf=0):
        prog.append((code, jt, jf, k))

    def label(name):
        labels[name] = len(prog)

    op(_LD_ABS_W, _ARCH)
    op(_JEQ, AUDIT_ARCH[arch], 0, "kill")
    op(_LD_ABS_W, _NR)
    if arch == "x86_64":
        op(_JGE, X32_SYSCALL_BIT, "kill", 0)
    for name in DENIED:
        op(_JEQ, nr[name], "deny", 0)
    op(_JEQ, nr["clone3"], "enosys", 0)
    for name in SELF_ONLY:
        op(_JEQ, nr[name], "arg0_zero", 0)
    op(_JEQ, nr["setpriority"], "setpriority", 0)
    op(_JEQ, nr["clone"], "clone", 0)
    op(_RET, RET_ALLOW)
    label("arg0_zero")  # pid 0 means the calling process itself
    op(_LD_ABS_W, _arg_lo(0))
    op(_JEQ, 0, 0, "deny")
    op(_LD_ABS_W, _arg_hi(0))
    op(_JEQ, 0, "allow", "deny")
    label("setpriority")  # only (PRIO_PROCESS, 0): PRIO_USER would renice the worker too
    op(_LD_ABS_W, _arg_lo(0))
    op(_JEQ, 0, 0, "deny")
    op(_LD_ABS_W, _arg_lo(1))
    op(_JEQ, 0, "allow", "deny")
    label("clone")
    op(_LD_ABS_W, _arg_lo(0))
    op(_JSET, CLONE_NEW_ANY, "deny", "allow")
    label("allow")
    op(_RET, RET_ALLOW)
    label("deny")
    op(_RET, RET_EPERM)
    label("enosys")
    op(_RET, RET_ENOSYS)
    label("kill")
    op(_RET, RET_KILL)

    out = bytearray()
    for i, (code, jt, jf, k) in enumerate(prog):
        jt = labels[jt] - i - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - i - 1 if isinstance(jf, str) else jf
        if not (0 <= jt <= 255 and 0 <= jf <= 255):
            raise AssertionError("seccomp jump out of range")
        out += struct.pack("=HBBI", code, jt, jf, k)
    return bytes(out)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2


def installer(program: bytes):
    """A function that applies `program` to the calling thread and its future children
    (raising OSError on failure). Everything but the two prctl calls is done here, once,
    so a forked child pays only for those."""
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))

    def install() -> None:
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")

    install.keepalive = buf  # the kernel copies the program at install; until then it must live
    return install
