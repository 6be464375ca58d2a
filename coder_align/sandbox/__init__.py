"""Run model-written code and judge it: `run`, `check`, `check_many`.

    from coder_align.sandbox import run, check, check_many
    check("def add(a, b): return a + b", ["assert add(1, 2) == 3"]).passed  # True

`run` and `check` run here (`local.py`); `check_many` and `compile_check` go to sandbox
servers when some are configured (`routing.py`, `remote.py`; a server is `server/`).
`preflight.py` tells a stage, before it loads a model, whether code can be judged at all.

What is isolated (bubblewrap, see `bwrap.py`): user, PID, network, IPC, UTS and cgroup
namespaces; no network at all; no capabilities; uid 65534; a cleared environment; only
/usr, the /bin and /lib links, ld.so.cache, /etc/alternatives, /etc/java-* and the
toolchain's own prefix mounted, read-only; / and /dev read-only; a private 512 MB tmpfs
/tmp and 64 MB /dev/shm; a seccomp filter on every process in it (`seccomp.py`);
rlimits on CPU time, address space, file size, open files and processes; a memory cgroup
per worker where one can be created (`cgroups.py`); a wall-clock watchdog after which every
process in the sandbox's PID namespace is killed. stdin is empty unless given.

How a pass is decided (Python): the candidate runs in one process; the tests run in
another (non-dumpable, not the candidate's child) where the candidate's functions are
proxies; only plain literals cross between them (`harness.py`, `codec.py`). For `assert f(x) == <literal>`
the expected value never enters the sandbox: the value of `f(x)` comes back to this
process and is compared here. When all the tests need from the candidate is calls with
literal arguments (`f(1) == 2`, `abs(f(1) - 0.5) < 1e-6`, `not f(3)`; 426 of MBPP's 427
tasks, and the HumanEval programs made only of such asserts, 150 of 164) no test code
runs in the sandbox at all: the candidate process makes the calls itself and sends back
the values, and the asserts are decided here (direct calls, `hostcheck.py`), with no test
process. stdin/stdout cases are compared here too. What the direct-call path trusts: the
worker (the sandbox's PID 1, non-dumpable, unreachable by the candidate) to hand the
candidate one call at a time, read from the host's pipe only after the candidate is forked
(the host may write them earlier: they wait in a pipe no job process holds), and to pass
on one bounded reply per call; and this process to decide each assert on plain
decoded values (`hostcheck.py`). The candidate's replies are only values.

Threat model (each row has tests in tests/sandbox/ and tests/test_sandbox_hostile.py, run
as root and as an unprivileged user):

| attack | what stops it |
|---|---|
| exit codes, printed "PASSED", sys.exit/os._exit, atexit/excepthook, patched builtins | the verdict comes from the test process or this process, never from the candidate's exit or output |
| objects with a rigged `__eq__` (or int/dict subclasses) | only literals cross; `==` against the expected literal runs here |
| rigged `__bool__` for bare asserts (`assert is_prime(7)`) | strict mode (default): a non-literal's truthiness is refused, except types whose truth is fixed (re.Match) |
| forged report: write a passing report on the host's pipe, then kill the worker | the worker is PID 1 of the sandbox (no bwrap init holding fds 0-2), non-dumpable and immune to signals from inside; ptrace, pidfd_getfd and process_vm_* are refused by seccomp; the report's id must match the job |
| forged replies to direct calls (written before any call, more than one per call, malformed, deep or huge) | a reply is only the candidate's value for a call, compared here with an expected value that never entered the sandbox; the worker takes exactly one per call it has handed over (a reply to no call ends the calls) and bounds each (depth, items) like the codec |
| looking ahead at later calls (frames, gc, its own memory) to answer the current one | with direct calls as with a test process, the candidate holds only the call it is answering: the worker reads the calls from the host after forking the candidate, into a mapping it unmaps after the job, and hands over the next only after the reply to the last (`relay.py`); both paths give the same verdict |
| reading the expected values (files, argv, environ, other processes' memory, frames, gc) | they never enter the candidate process; the test process is non-dumpable |
| changing what later jobs get (prlimit/setpriority/sched_* on the worker, PRIO_USER) | seccomp: only the calling process itself |
| memory outside memory_mb (/dev/shm, /tmp, memfd, SysV shm, files under / or /dev) | memfd and System V/POSIX IPC refused; / and /dev read-only; /tmp and /dev/shm size-capped and wiped after each job; with a memory cgroup, memory_mb (+64 MB for the worker) bounds the sum of all the job's processes and files, an OOM kill is `memory_exceeded`, and a worker holding memory after a job is replaced |
| leaks between jobs (files, message queues, keyrings, limits; xattrs and modes of /tmp and /dev/shm; abstract unix names, TCP listeners and other sockets kept alive by SCM_RIGHTS cycles in flight) | read-only / and /dev, IPC and keyrings refused, every other process of the job killed; /tmp and /dev/shm emptied and given back their mode and no xattrs; after each job the worker asks the kernel to collect sockets in flight and, if any socket is left in its network namespace, the sandbox (with that namespace) is replaced (`scrub.py`) |
| damaging its own sandbox (chmod 000 or 0555 of /tmp or /dev/shm, removing /tmp/job, trees 3,000 levels deep, unreadable directories) | put back after the job within a fixed budget, or the sandbox is replaced; the job keeps its program's verdict: `unavailable` only when the infrastructure fails |
| signals armed for later (F_SETOWN 1 + F_SETSIG + O_ASYNC on sockets kept in flight) | the worker has no handler for any signal, so as PID 1 it gets none from inside its namespace; the sockets go with the sandbox (row above) |
| host-side work whose size the candidate picks (set members sharing a hash, `range(10**18)` summed, ints too long to print) | the codec refuses a set or dict with more than 64 members on one hash and a range longer than a list may be; host-built sets are checked the same way; values are printed through `reprlib`; what the host cannot judge of a value fails that test, never the check |
| a worker dying, idle or mid-job (killed from outside, OOM killer) | replaced and counted; a job whose worker was dead before it, or whose bwrap was killed from outside, runs again on a fresh one (3 tries, then `SandboxUnavailable`) |
| fork bombs, thread bombs, daemons, floods, busy loops, sleeps, signal storms | RLIMIT_NPROC/CPU/FSIZE/NOFILE, output caps, the watchdog, PID 1 kills the rest after each job |
| network, host files, environment secrets | no network namespace access, nothing of the host mounted but the system's read-only trees, cleared environment |
| the sandbox server's clients: no or wrong token, huge or deeply nested bodies, slowloris (half-sent, trickled or idle connections), a job the checker itself fails on | the bearer token (required off loopback) before any body is read; a size cap and a 4xx for any body that does not parse; deadlines for a request's headers and body; at `max_connections` the connection longest without an authorised request in progress is closed for a new one; an error checking one job is that job's `unavailable`, never its batch's (`server/`; tested in tests/test_sandbox_server_limits.py) |

Out of scope, honestly:
- The kernel is shared: a kernel exploit escapes any namespace sandbox (and seccomp only
  narrows the surface). Run untrusted code at scale on throw-away machines.
- Without a writable memory cgroup (an unprivileged user without cgroup v2 delegation)
  memory_mb bounds each process's address space, not the job: up to RLIMIT_NPROC (64)
  processes may each use memory_mb, plus the /tmp and /dev/shm caps. The memory cgroup
  test is skipped there. Kernel buffers of the job's pipes and sockets (each bounded by the
  kernel's per-socket and per-user pipe limits, at most RLIMIT_NOFILE per process and as
  many again in flight per uid) are outside memory_mb there while the job runs; they are
  freed when it ends (sockets in flight are collected or go with the replaced sandbox).
- Python workers are reused across jobs (that is where the speed comes from): a candidate
  can find previous candidates' *source code* and outputs (printed output, replies) in
  memory inherited from the worker (never their tests or calls: the worker does not read
  tests, and holds direct calls only in a mapping made after the fork and unmapped after).
- Tests that need more than the values of literal calls (helper functions, loops, random
  inputs, an assert message that calls the candidate again) keep their expected values
  inside the sandboxed test process. The candidate cannot read that
  process's memory or descriptors, but it can see the arguments each proxy call carries
  and can kill or stop the test process (which fails the sample). Reports say which
  path was taken (`TestReport.isolation`).
- Proxies copy values: a test that relies on the candidate mutating its argument in
  place, or that passes a function to the candidate, fails.
- With direct calls the candidate answers every call even after one has failed (the
  verdict is still decided by the first failure, as the program would); a test process
  stops at the first failing assert. Either way it sees one call at a time, and may
  remember the earlier ones, as any program may.
- The sandbox server does not rate-limit new connections: a flood of them faster than a
  client sends its headers can close that client's connection (`server/connections.py`);
  rate-limit in the proxy in front.
- `allow_unsandboxed=True` (no bubblewrap): rlimits, a new session, a private temp dir,
  the seccomp filter where the architecture has one, and killing the job's descendants
  only. The code can read your files and use the network.
"""

from coder_align.sandbox import (  # noqa: F401  submodules, reached as attributes of the package
    bwrap, cgroups, codec, harness, languages, pool, remote, seccomp, testcases,
)
from coder_align.sandbox.bwrap import SandboxUnavailable, find_bwrap, require_bwrap
from coder_align.sandbox.local import OUTPUT_CAP, check, run, toolchain_available
from coder_align.sandbox.results import ExecutionResult, TestDetail, TestReport
from coder_align.sandbox.routing import check_many, compile_check
from coder_align.sandbox.testcases import outputs_match

__all__ = [
    "run", "check", "check_many", "compile_check", "toolchain_available", "ExecutionResult", "TestReport",
    "TestDetail", "SandboxUnavailable", "find_bwrap", "require_bwrap", "outputs_match", "OUTPUT_CAP",
]
