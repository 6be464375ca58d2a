"""How many threads torch uses on a CPU: the cores this process may run on and others leave free.

torch's default is every core of the machine (os.cpu_count), as if it had them to itself. On a
machine shared with other jobs it does not: a thread that lost its core holds up the others at
each operation's OpenMP barrier, where they spin. Generation, thousands of small operations per
completion, suffers most; a 2-step GRPO run at load 6-7 on 2 cores did not end in 15 minutes
(68 s on a quiet machine) while SFT, with few large operations, slowed 3-4x. So a stage sizes
its threads from the cores it may use (os.sched_getaffinity: a container or taskset limit)
minus what other processes keep busy (the 1-minute load average, less this process's share).

Not here: the processes eval and sampling split generation over (`evaluation.generation`).
"""

from __future__ import annotations

import logging
import os
import resource
import time

log = logging.getLogger(__name__)

_STARTED = time.monotonic()  # about when this process started (the package is imported early)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), not those of the whole machine."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def own_load() -> float:
    """About how many cores this process (and its finished children) kept busy over the last
    minute: the load average counts it too, and it is not another job."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    seconds = sum(u.ru_utime + u.ru_stime for u in usage)
    return min(seconds / max(1.0, min(60.0, time.monotonic() - _STARTED)), float(usable_cores()))


def cpu_threads(load: float | None = None, cores: int | None = None) -> int:
    """Threads for torch here and now: the usable cores that other processes leave free, at least 1.

    >>> cpu_threads(load=0.2, cores=8), cpu_threads(load=3.4, cores=8), cpu_threads(load=9.0, cores=2)
    (8, 5, 1)
    """
    cores = cores or usable_cores()
    if load is None:
        load = max(0.0, os.getloadavg()[0] - own_load())
    return max(1, cores - int(load + 0.5))


def fit_threads_to_machine() -> int | None:
    """On a CPU, unless OMP_NUM_THREADS chose: `torch.set_num_threads(cpu_threads())`, shared
    between the ranks a launcher started on this machine; logged when it changes. Returns the
    threads set (None: left as they were)."""
    import torch

    if torch.cuda.is_available() or os.environ.get("OMP_NUM_THREADS"):
        return None
    threads = max(1, cpu_threads() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    if threads != torch.get_num_threads():
        log.info("torch threads: %d (%d usable cores, load %.1f; OMP_NUM_THREADS=N to choose)", threads,
                 usable_cores(), os.getloadavg()[0])
        torch.set_num_threads(threads)
    return threads
