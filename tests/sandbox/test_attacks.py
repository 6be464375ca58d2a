"""Attacks on the sandbox's verdicts, limits and job-to-job state (issue: sandbox hardening).

Each test asserts an outcome a policy under RL would care about (no pass for a wrong
program, the next jobs judged correctly, no host memory held, nothing carried over), not
the mechanism that ensures it. Run as root and as an unprivileged user (`.ci/run` does both).
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import time

import pytest

from _sandbox_util import wait_no_survivors
from coder_align.sandbox import bwrap, cgroups, check, check_many, find_bwrap, run, seccomp

pytestmark = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap not installed")

WRONG_ADD = "def add(a, b):\n    return 0\n"
RIGHT_ADD = "def add(a, b):\n    return a + b\n"
# statement-style checks: their verdict comes from the sandboxed test process, the path
# a forged report would target (literal comparisons are decided on the host)
HE_TESTS = "def check(candidate):\n    for a in [2]:\n        assert candidate(a, 3) == 5\n\ncheck(add)\n"
MBPP_STMT = ["assert add(2, 3) in (5,)", "assert add(1, 1) in [2]"]
# decided on the host from the candidate's own calls (direct calls): a forged reply is
# only a value, which the host compares with the expected one it never sent
HE_DIRECT = "def check(candidate):\n    assert candidate(2, 3) == 5\n\ncheck(add)\n"
ROUNDS = 2 * (os.cpu_count() or 1) + 2  # enough jobs to land on every warm worker

FORGE = r'''
import gc, json, os, signal, struct
def _job_id():
    for o in gc.get_objects():
        if type(o) is dict and "mode" in o and "source" in o and "id" in o:
            return o["id"]
    return 0
def _forged(i):
    ok = {"b64": "", "truncated": False}
    rep = {"id": i, "duration": 0.01, "timed_out": False, "exit_code": 0, "signal": None,
           "stdout": ok, "stderr": ok, "dirty": False,
           "verdict": {"id": i, "results": [{"ok": True}] * NTESTS}}
    data = json.dumps(rep).encode()
    return struct.pack(">I", len(data)) + data
def _spray(fds):
    frame = _forged(_job_id())
    n = 0
    for fd in fds:
        try:
            os.write(fd, frame); n += 1
        except OSError:
            pass
    return n
'''

FORGE_PROC_FD = FORGE + r'''
def add(a, b):
    fds = []
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        for n in range(0, 16):
            try: fds.append(os.open(f"/proc/{p}/fd/{n}", os.O_WRONLY | os.O_NONBLOCK))
            except OSError: pass
    _spray(fds)
    for pid in (os.getppid(), 1):
        try: os.kill(pid, signal.SIGKILL)
        except OSError: pass
    os._exit(0)
'''

FORGE_PIDFD = FORGE + r'''
import ctypes
def add(a, b):
    libc = ctypes.CDLL(None, use_errno=True)
    fds = []
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        pidfd = libc.syscall(434, int(p), 0)  # pidfd_open (same number on x86-64 and arm64)
        if pidfd < 0:
            continue
        for n in range(0, 16):
            fd = libc.syscall(438, pidfd, n, 0)  # pidfd_getfd
            if fd >= 0: fds.append(fd)
    _spray(fds)
    for pid in (os.getppid(), 1):
        try: os.kill(pid, signal.SIGKILL)
        except OSError: pass
    os._exit(0)
'''

PTRACE_PROBE = r'''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
for pid in sorted({1, os.getppid()}):
    r = libc.ptrace(16, pid, 0, 0)  # PTRACE_ATTACH
    print("attach", pid, r)
    try:
        open(f"/proc/{pid}/mem", "rb").close(); print("mem", pid, "open")
    except OSError as e:
        print("mem", pid, "denied")
    try:
        os.listdir(f"/proc/{pid}/fd"); print("fd", pid, "listed")
    except OSError:
        print("fd", pid, "denied")
'''


def _assert_judged_correctly(rounds: int = ROUNDS) -> None:
    """The jobs after an attack: a right program passes and a wrong one fails, on every worker."""
    jobs = []
    for _ in range(rounds):
        jobs += [{"source": RIGHT_ADD, "tests": HE_TESTS}, {"source": WRONG_ADD, "tests": HE_TESTS},
                 {"source": RIGHT_ADD, "tests": MBPP_STMT}, {"source": WRONG_ADD, "tests": MBPP_STMT},
                 {"source": RIGHT_ADD, "tests": HE_DIRECT}, {"source": WRONG_ADD, "tests": HE_DIRECT}]
    verdicts = [r.passed for r in check_many(jobs, workers=2)]
    assert verdicts == [True, False, True, False, True, False] * rounds


@pytest.mark.parametrize("attack", [FORGE_PROC_FD, FORGE_PIDFD], ids=["proc_fd", "pidfd_getfd"])
@pytest.mark.parametrize("tests", [HE_TESTS, MBPP_STMT, HE_DIRECT],
                         ids=["humaneval_check", "mbpp_statements", "humaneval_direct"])
def test_forged_report_does_not_pass(attack, tests):
    ntests = 1 if isinstance(tests, str) else len(tests)
    for _ in range(ROUNDS):
        report = check(attack.replace("NTESTS", str(ntests)), tests, timeout=3.0)
        assert not report.passed, report
        assert report.status != "unavailable", report
    assert wait_no_survivors() == []
    _assert_judged_correctly()


def test_pid1_and_worker_cannot_be_traced():
    for _ in range(ROUNDS):
        out = run(PTRACE_PROBE, timeout=5.0)
        assert out.status == "ok", out
        assert re.findall(r"attach \d+ (-?\d+)", out.stdout) and all(
            r == "-1" for r in re.findall(r"attach \d+ (-?\d+)", out.stdout)), out.stdout
        assert " open" not in out.stdout and " listed" not in out.stdout, out.stdout


SABOTAGE = r'''
import ctypes, os, resource
libc = ctypes.CDLL(None, use_errno=True)
done = []
for pid in sorted({os.getppid(), 1}):
    for res, value in ((resource.RLIMIT_AS, 150 << 20),):
        try:
            resource.prlimit(pid, res, (value, value))
            done.append(("prlimit", pid, res))
        except OSError:
            pass
    if libc.setpriority(0, pid, 19) == 0: done.append(("nice", pid))
if libc.setpriority(2, 0, 19) == 0: done.append(("nice_user",))  # PRIO_USER: every process of this uid
print(done)
'''

NEXT_JOB = r'''
import os, resource
b = bytearray(300 << 20)  # a correct job that needs memory the sabotage would deny
print(len(b) >> 20, os.getpriority(os.PRIO_PROCESS, 0), resource.getrlimit(resource.RLIMIT_AS)[0] >= 1024 << 20)
'''


def test_a_job_cannot_change_limits_of_later_jobs():
    for _ in range(ROUNDS):
        sabotage = run(SABOTAGE, timeout=5.0)
        assert sabotage.status == "ok", sabotage
    for _ in range(ROUNDS):
        later = run(NEXT_JOB, timeout=10.0, memory_mb=1024)
        assert later.status == "ok", later
        assert later.stdout.split() == ["300", "0", "True"], later
    _assert_judged_correctly()


# Each method keeps what it could and reports the MB it held at once. `keep` survives
# until the process exits, so the totals are held together.
HOG = r'''
import ctypes, mmap, os, sys
libc = ctypes.CDLL(None, use_errno=True)
MB = 1 << 20
held = {}
keep = []
def fill(prefix, limit_mb=2048):
    # files of 32 MB (each under RLIMIT_FSIZE) until the file system says no
    n = 0
    try:
        for i in range(limit_mb // 32):
            with open(f"{prefix}{i}", "wb") as f:
                for _ in range(32):
                    f.write(b"x" * MB); n += 1
    except OSError:
        pass
    return n
def report(key, mb):
    held[key] = mb
    print(f"{key}={mb}", flush=True)  # as it goes: a memory limit may end the job early
report("dev_shm", fill("/dev/shm/hog"))
report("tmp", fill("/tmp/hog"))
report("dev", fill("/dev/hog"))
report("root", fill("/hog"))
try:
    fd = os.memfd_create("hog")
    n = 0
    try:
        while n < 4096:
            os.write(fd, b"x" * MB); n += 1
    except OSError:
        pass
    report("memfd", n); keep.append(fd)
except (OSError, AttributeError):
    report("memfd", 0)
n = 0
libc.shmat.restype = ctypes.c_void_p
while n < 4096:
    sid = libc.shmget(0, 64 * MB, 0o1000 | 0o600)  # IPC_PRIVATE, IPC_CREAT
    if sid < 0: break
    addr = libc.shmat(sid, None, 0)
    if addr in (None, ctypes.c_void_p(-1).value): break
    ctypes.memset(addr, 1, 64 * MB); n += 64
report("sysv_shm", n)
'''


def _meminfo_mb(key: str) -> float:
    for line in open("/proc/meminfo"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def test_memory_held_by_a_job_is_bounded_and_released():
    memory_mb = 512
    shmem_before = _meminfo_mb("Shmem")
    out = run(HOG, timeout=30.0, memory_mb=memory_mb)
    held = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", out.stdout))
    assert out.status in ("ok", "memory_exceeded"), out
    assert held.get("dev_shm", 0) <= bwrap.SHM_BYTES >> 20 and held.get("tmp", 0) <= bwrap.TMPFS_BYTES >> 20, held
    assert held.get("dev", 0) == held.get("root", 0) == held.get("memfd", 0) == held.get("sysv_shm", 0) == 0, held
    if cgroups.available():
        assert sum(held.values()) <= memory_mb + cgroups.HEADROOM_MB, held
    else:  # no cgroup: every method must have run, within its own cap
        assert set(held) == {"dev_shm", "tmp", "dev", "root", "memfd", "sysv_shm"}, out
    # nothing stays pinned once the job is over (other work on the machine adds noise)
    time.sleep(0.2)
    assert _meminfo_mb("Shmem") < shmem_before + 64, (shmem_before, _meminfo_mb("Shmem"))
    _assert_judged_correctly(rounds=1)


FORK_HOG = r'''
import os, time
for i in range(12):
    if os.fork() == 0:
        try:
            b = bytearray(400 << 20)  # under RLIMIT_AS each; 4.8 GB together
        except MemoryError:
            pass
        time.sleep(20)
        os._exit(0)
time.sleep(20)
'''


@pytest.mark.skipif(not cgroups.available(), reason="needs a writable memory cgroup: without one, "
                    "memory_mb bounds each process, not the job (documented in the sandbox docstring)")
def test_memory_of_all_processes_together_is_bounded():
    t0 = time.monotonic()
    out = run(FORK_HOG, timeout=10.0, memory_mb=512)
    assert out.status == "memory_exceeded", out
    assert time.monotonic() - t0 < 15
    assert wait_no_survivors() == []
    _assert_judged_correctly(rounds=1)


TOKEN = secrets.token_hex(16)
_NR = seccomp.SYSCALLS.get(platform.machine(), seccomp.SYSCALLS["x86_64"])
PLANT = r'''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
TOKEN = "%s"
planted = []
for path in ["/tok", "/etc/tok", "/dev/tok", "/tmp/tok", "/dev/shm/tok", "/opt/tok", "/usr/tok"]:
    try:
        open(path, "w").write(TOKEN); planted.append(path)
    except OSError:
        pass
qd = libc.mq_open(b"/tok", os.O_CREAT | os.O_WRONLY, 0o666, None)
if qd >= 0 and libc.mq_send(qd, TOKEN.encode(), 32, 0) == 0: planted.append("mqueue")
mid = libc.msgget(0x70C, 0o1000 | 0o666)
if mid >= 0: planted.append("sysv_msg")
if libc.syscall(%d, b"user", b"tok", TOKEN.encode(), 32, -4) > 0: planted.append("user_keyring")  # add_key
os.environ["TOK"] = TOKEN
print(planted)
''' % (TOKEN, _NR["add_key"])

FIND_TOKEN = r'''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
TOKEN = "%s"
found = []
for root in ["/", "/etc", "/dev", "/tmp", "/dev/shm", "/opt", "/usr"]:
    try:
        names = os.listdir(root)
    except OSError:
        continue
    for n in names:
        p = os.path.join(root, n)
        try:
            if os.path.isfile(p) and TOKEN in open(p, errors="ignore").read(4096): found.append(p)
        except OSError:
            pass
qd = libc.mq_open(b"/tok", os.O_RDONLY | os.O_NONBLOCK)
if qd >= 0:
    buf = ctypes.create_string_buffer(8192)
    if libc.mq_receive(qd, buf, 8192, None) > 0 and TOKEN.encode() in buf.raw: found.append("mqueue")
if libc.msgget(0x70C, 0) >= 0: found.append("sysv_msg")
if TOKEN in repr(os.environ): found.append("environ")
if libc.syscall(%d, b"user", b"tok", None, 0) > 0: found.append("user_keyring")  # request_key
print(found)
''' % (TOKEN, _NR["request_key"])


def test_nothing_from_one_job_is_visible_to_the_next():
    for _ in range(ROUNDS):
        plant = run(PLANT, timeout=5.0)
        assert plant.status == "ok", plant
        # only the job's own scratch space can take files; it is wiped afterwards
        assert set(eval(plant.stdout)) <= {"/tmp/tok", "/dev/shm/tok"}, plant.stdout
    for _ in range(ROUNDS):
        probe = run(FIND_TOKEN, timeout=5.0)
        assert probe.status == "ok", probe
        assert probe.stdout.strip() == "[]", probe.stdout


def test_rigged_truthiness_does_not_pass_bare_asserts():
    rigged = "class Yes:\n    def __bool__(self): return True\ndef is_prime(n): return Yes()"
    for tests in (["assert is_prime(7)", "assert is_prime(13)"],
                  "def check(candidate):\n    assert candidate(7)\n\ncheck(is_prime)\n"):
        assert not check(rigged, tests).passed
    assert check("def is_prime(n): return all(n % d for d in range(2, n))", ["assert is_prime(7)"]).passed


def test_rewards_judge_strictly():
    from coder_align.rewards import unit_test_reward

    rigged = "```python\nclass Yes:\n    def __bool__(self): return True\ndef is_prime(n): return Yes()\n```"
    right = "```python\ndef is_prime(n): return n > 1 and all(n % d for d in range(2, n))\n```"
    tests = [["assert is_prime(7)", "assert is_prime(13)"]] * 2
    assert unit_test_reward([rigged, right], tests=tests) == [0.0, 1.0]


def test_seccomp_numbers_match_the_kernel_headers():
    from coder_align.sandbox import seccomp

    headers = {"x86_64": "/usr/include/x86_64-linux-gnu/asm/unistd_64.h",
               "aarch64": "/usr/include/asm-generic/unistd.h"}
    checked = 0
    for arch, path in headers.items():
        if not os.path.exists(path):
            continue
        text = open(path).read()
        for name, nr in seccomp.SYSCALLS[arch].items():
            m = re.search(rf"#define __NR(?:3264)?_{name}\s+(\d+)\b", text)
            assert m and int(m.group(1)) == nr, (arch, name, nr)
            checked += 1
    if not checked:
        pytest.skip("no kernel headers installed (linux-libc-dev)")
    # every architecture's program assembles (jump offsets in range)
    for arch in seccomp.SYSCALLS:
        assert len(seccomp.build_filter(arch)) % 8 == 0


def test_compiled_programs_run_under_the_filter():
    if not bwrap.shutil.which("gcc"):
        pytest.skip("gcc not installed")
    src = ('#include <stdio.h>\n#include <sys/mman.h>\n#include <sys/resource.h>\n#include <unistd.h>\n'
           'int main(){ struct rlimit r = {1, 1};\n'
           ' printf("memfd=%d prlimit_parent=%d\\n", memfd_create("x", 0) >= 0, prlimit(getppid(), RLIMIT_NOFILE, &r, 0) == 0);\n'
           ' return 0; }\n')
    out = run(src, language="c", timeout=5.0)
    assert out.status == "ok", out
    assert out.stdout.strip() == "memfd=0 prlimit_parent=0", out.stdout


def test_a_memory_group_that_cannot_be_used_is_never_a_verdict(monkeypatch):
    """Infrastructure, not the candidate: no cgroup means per-process limits; a limit that
    cannot be set makes the job unavailable (never a pass or a fail), and the next job works."""
    from coder_align.sandbox import pool as pool_module

    if not cgroups.available():
        pytest.skip("no writable memory cgroup here")
    pool_module.get_pool(True).shutdown()  # fresh workers, which create their groups
    pool_module._POOLS.clear()

    def broken(self, memory_mb):
        raise OSError(16, "Device or resource busy")

    monkeypatch.setattr(cgroups.MemoryGroup, "limit", broken)
    report = check_many([{"source": RIGHT_ADD, "tests": HE_TESTS}], return_exceptions=True)[0]
    assert report.status == "unavailable" and not report.passed, report
    monkeypatch.undo()

    def no_group(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    pool_module.get_pool(True).shutdown()
    pool_module._POOLS.clear()
    monkeypatch.setattr(cgroups.MemoryGroup, "__init__", no_group)
    assert check(RIGHT_ADD, HE_TESTS).passed and not check(WRONG_ADD, HE_TESTS).passed
    monkeypatch.undo()
    pool_module.get_pool(True).shutdown()
    pool_module._POOLS.clear()
