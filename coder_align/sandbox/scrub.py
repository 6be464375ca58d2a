"""Putting a warm worker's sandbox back as it was after each job, or saying it cannot be.

Standard library only: the worker imports it inside the sandbox (`pool.IN_SANDBOX`). Each
job may change what it can write: the writable roots (/tmp, /dev/shm) themselves (their
mode, their xattrs), anything under them (trees too deep or too wide to remove cheaply,
entries made unreadable), and the sandbox's network namespace (sockets kept alive by
SCM_RIGHTS cycles in flight after every process is dead: abstract unix names, TCP
listeners, the memory of their buffers, and O_ASYNC signals to the worker). `Roots.reset`
restores what can be restored within a fixed budget and returns False for anything else;
the worker then reports the job `dirty` and the host replaces the whole sandbox (a new
tmpfs, a new network namespace). That is never the job's verdict: what a candidate does to
its own sandbox costs it only that sandbox.
"""

from __future__ import annotations

import _socket
import os
import stat

WIPE_BUDGET = 20_000  # entries removed per root after a job; more, and the sandbox is replaced
MAX_DEPTH = 64  # directory levels removed in place; deeper, and the sandbox is replaced
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Roots:
    """The writable roots as they were at start-up (mode, owner, no xattrs)."""

    def __init__(self, paths: list[str]):
        self.state = {}
        for path in paths:
            st = os.stat(path)
            self.state[path] = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)

    def reset(self) -> bool:
        """Empty every root and give it back its mode and no xattrs; False if anything stays."""
        ok = True
        for path, want in self.state.items():
            try:
                st = os.stat(path)
                if (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) != want:
                    os.chmod(path, want[0])  # before wiping: a root made unreadable cannot be listed
                    st = os.stat(path)
                    ok = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == want and ok
                ok = _no_xattrs(path) and wipe(path) and ok
            except OSError:
                ok = False
        return ok


def _no_xattrs(path: str) -> bool:
    names = os.listxattr(path)  # user.*, or an ACL the owner set (system.posix_acl_*)
    for name in names:
        os.removexattr(path, name)
    return not names or not os.listxattr(path)


def wipe(path: str) -> bool:
    """Remove everything under `path` (entries made unreadable included); False if
    something stays or the tree is beyond WIPE_BUDGET / MAX_DEPTH."""
    names = os.listdir(path)
    if len(names) > WIPE_BUDGET:
        return False
    ok = True
    for name in names:
        p = os.path.join(path, name)
        try:
            os.rmdir(p)  # most often: the job's working directory, left empty
            continue
        except OSError:
            pass
        try:
            if stat.S_ISDIR(os.lstat(p).st_mode):
                ok = _rmtree(p) and ok
            else:
                os.unlink(p)
        except OSError:
            ok = False
    return ok


def _rmtree(top: str) -> bool:
    """Without recursion and by directory fd (a path 3,000 levels deep is past PATH_MAX)."""
    os.chmod(top, stat.S_IRWXU)
    stack = [(os.open(top, _DIR), None, top)]  # (fd, parent fd, name in the parent)
    budget = WIPE_BUDGET
    try:
        while stack:
            fd = stack[-1][0]
            child = None
            for name in os.listdir(fd):
                budget -= 1
                if budget < 0:
                    return False
                if stat.S_ISDIR(os.lstat(name, dir_fd=fd).st_mode):
                    try:
                        os.rmdir(name, dir_fd=fd)
                        continue
                    except OSError:
                        pass
                    if len(stack) >= MAX_DEPTH:
                        return False
                    os.chmod(name, stat.S_IRWXU, dir_fd=fd)  # a directory, not a link: checked above
                    child = (os.open(name, _DIR, dir_fd=fd), fd, name)
                    break
                os.unlink(name, dir_fd=fd)
            if child is not None:
                stack.append(child)
                continue
            fd, parent, name = stack.pop()
            os.close(fd)
            if parent is None:
                os.rmdir(top)
            else:
                os.rmdir(name, dir_fd=parent)
        return True
    except OSError:
        return False
    finally:
        for fd, _, _ in stack:
            os.close(fd)


class Network:
    """This network namespace's sockets, once every job process is dead."""

    def __init__(self):
        # kept open: a pread of it costs a tenth of opening it again after every job
        self.sockstat = os.open("/proc/net/sockstat", os.O_RDONLY | os.O_CLOEXEC)

    def _sockets(self) -> int:
        head = os.pread(self.sockstat, 64, 0)  # "sockets: used N" (in this namespace)
        return int(head.split(b"\n", 1)[0].rsplit(b" ", 1)[1])

    def clean(self) -> bool:
        """Whether no socket is left. Any that is left is held by an SCM_RIGHTS cycle in
        flight (every fd a process held closed with it); it can carry an abstract name, a
        TCP listener, buffers outside any limit, or an O_ASYNC owner that signals the worker
        later. Closing a unix socket asks the kernel to collect such cycles (it may do so a
        moment later: then the sandbox is replaced, and the cycles collected all the same)."""
        if not self._sockets():
            return True
        a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        a.close()
        b.close()
        return not self._sockets()
