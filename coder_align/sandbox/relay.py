"""The worker's end of direct calls: one call at a time to the candidate, one reply back for each.

Standard library only: the worker imports it inside the sandbox (`pool.IN_SANDBOX`); the
candidate's end is `harness._answer_calls`.
"""

from __future__ import annotations

import json
import mmap
import os
import select
import struct

if __package__:  # on the host, as coder_align.sandbox.relay
    from coder_align.sandbox import codec
else:  # in the sandbox: a top-level module beside codec.py (pool.IN_SANDBOX)
    import codec


class Relay:
    """The worker's end of direct calls: it hands the candidate one call, takes exactly one
    reply frame for it, then hands over the next. The calls come from the host on
    `calls_fd` after the candidate is forked and are read into an anonymous mapping,
    unmapped at the end, so neither this job's candidate nor a later one (forked from the
    worker) finds them in memory. Replies are kept as bytes (at most MAX_FRAME) and read
    by `checked_replies` once the candidate is dead."""

    def __init__(self, n_calls: int, req_w: int, resp_r: int, watch):
        # made before the fork, like everything the worker sets up for a job: what this
        # process writes while the candidate lives costs a page copy
        self.req_w, self.resp_r, self.n_calls, self.watch = req_w, resp_r, n_calls, watch
        self.calls, self.view, self.frames = None, None, []
        self.replies, self.taken_end = bytearray(), 0  # bytes of complete replies
        self.sent = self.taken = 0
        self.out = None  # what is left to write of the call being sent
        self.done = False  # no more calls: all sent, the candidate broke the protocol, or it is dead
        os.set_blocking(req_w, False)
        watch.add_handler(resp_r, select.POLLIN, self._on_reply)

    def start(self, calls_fd: int, n_bytes: int) -> None:
        """Once the candidate is forked: read the calls from the host, hand over the first."""
        self.calls = mmap.mmap(-1, max(n_bytes, 1), flags=mmap.MAP_PRIVATE)
        self.view = view = memoryview(self.calls)
        got = 0
        while got < n_bytes:
            n = os.readv(calls_fd, [view[got:n_bytes]])
            if not n:
                raise EOFError("the host's calls ended early")
            got += n
        pos = 0
        while pos + 4 <= n_bytes and len(self.frames) < self.n_calls:
            (n,) = struct.unpack_from(">I", self.calls, pos)
            self.frames.append((pos, pos + 4 + n))
            pos += 4 + n
        self._next()

    def _next(self) -> None:
        if self.done or self.sent >= len(self.frames):
            return self._stop()
        start, end = self.frames[self.sent]
        self.sent += 1
        try:  # the pipe is empty (the last call was answered): most often all of it goes at once
            start += os.write(self.req_w, self.view[start:end])
        except BlockingIOError:
            pass
        except OSError:  # the candidate is gone
            return self._stop()
        if start < end:
            self.out = self.view[start:end]
            self.watch.add_handler(self.req_w, select.POLLOUT, self._write)

    def _write(self, fd: int, event: int) -> None:
        """The rest of a call bigger than the pipe, as the candidate reads it."""
        try:
            if event & (select.POLLERR | select.POLLHUP):
                raise BrokenPipeError
            self.out = self.out[os.write(self.req_w, self.out):]
        except BlockingIOError:
            pass
        except OSError:  # the candidate is gone
            return self._stop()
        if not self.out:
            self._release()
            self.watch.drop(self.req_w, close=False)

    def _on_reply(self, fd: int, event: int) -> bool:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            self.watch.drop(fd)
            return False
        if len(self.replies) + len(chunk) > codec.MAX_FRAME:
            self.done = True
            self.watch.drop(fd)
            self._stop()
            return False
        self.replies += chunk
        while len(self.replies) >= self.taken_end + 4:
            (n,) = struct.unpack_from(">I", self.replies, self.taken_end)
            if len(self.replies) < self.taken_end + 4 + n:
                break
            if self.taken >= self.sent or self.out:  # a reply to no call (yet): the protocol is broken
                del self.replies[self.taken_end:]
                self.done = True
                self._stop()
                break
            self.taken_end += 4 + n
            self.taken += 1
            self._next()
        return True

    def _release(self) -> None:
        if self.out is not None:
            self.out.release()
            self.out = None

    def _stop(self) -> None:
        self.done = True
        self._release()
        if self.req_w is not None:
            if self.req_w in self.watch.kind:
                self.watch.drop(self.req_w, close=False)
            os.close(self.req_w)  # the candidate reads the end of the calls and exits
            self.req_w = None

    def finish(self) -> list:
        """Once the candidate is dead: the rest of its replies, checked; everything closed."""
        self.done = True
        self._stop()
        if self.resp_r in self.watch.kind:
            os.set_blocking(self.resp_r, False)
            try:
                while self.resp_r in self.watch.kind and self._on_reply(self.resp_r, 0):
                    pass
            except BlockingIOError:
                pass
            if self.resp_r in self.watch.kind:
                self.watch.drop(self.resp_r)
        if self.calls is not None:
            self.view.release()
            self.calls.close()
        return checked_replies(bytes(self.replies[:self.taken_end]), self.n_calls)


def checked_replies(data: bytes, limit: int) -> list:
    """The worker's reading of what `_answer_calls` sent: at most `limit` replies, each of
    them JSON within the codec's bounds (depth, items), so that what reaches the host is no
    bigger or deeper than a test process would send, whatever the candidate wrote. The
    host decodes them (refusing malformed values). Stops at the first malformed reply."""
    replies, view = [], memoryview(data)
    while len(replies) < limit and len(view) >= 4:
        (n,) = struct.unpack(">I", view[:4])
        if len(view) < 4 + n:
            break
        try:
            reply = json.loads(bytes(view[4:4 + n]))
        except Exception:  # garbage, or too deep for the parser
            break
        if type(reply) is dict and len(reply) == 1 and "ok" in reply and _bounded(reply["ok"]):
            replies.append(reply)
        elif type(reply) is dict and len(reply) == 1 and type(reply.get("exc")) is list and len(reply["exc"]) == 2:
            replies.append({"exc": [str(reply["exc"][0])[:100], str(reply["exc"][1])[:2000]]})
        else:
            break
        view = view[4 + n:]
    return replies


def _bounded(value) -> bool:
    # the bounds `encode` keeps to, on parsed JSON (a walk, no copy)
    budget, stack = codec.MAX_ITEMS, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        budget -= 1
        if budget < 0 or depth > codec.MAX_DEPTH:
            return False
        if type(item) is list:
            stack += [(x, depth + 1) for x in item]
        elif type(item) is dict:
            stack += [(x, depth + 1) for x in item.values()]
    return True
