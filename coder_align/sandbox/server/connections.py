"""The sandbox server's connections: deadlines for reading a request, and who may hold a slot.

uvicorn (its h11 protocol) has a keep-alive timeout but no deadline for a request's headers
or body, and its `limit_concurrency` counts every open connection, so 16 sockets that each
sent half a request line (no token needed) made every authorised request get 503 with
`max_connections=16`. `protocol_class` is uvicorn's h11 protocol with:
- deadlines: a request's headers must arrive within `header_timeout` of its first byte (of
  the connection's opening, for a new one), its body within `body_timeout` of its headers;
  otherwise the connection is closed. Idle keep-alive is uvicorn's own timeout.
- slots: a new connection over `max_connections` closes the connection that has gone longest
  without an authorised request in progress (half-sent, idle, or without the token); only
  when every other connection is an authorised request in progress is the new one refused
  (503). So holding a slot for longer than a deadline takes the token.

Not covered: a flood of new connections faster than a client sends its headers (one
packet) can still close that client's connection before its request is in; rate-limit
connections in front (the README's fleet sketch puts a proxy there).
"""

from __future__ import annotations

import hmac
import json
import time

import h11

from coder_align.sandbox.server.config import ServeConfig

_BUSY_BODY = json.dumps({"error": "server busy: every connection is an authorised request in progress; "
                                  "retry later"}).encode()
REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
           b"retry-after: 1\r\ncontent-length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY)


def token_ok(header: str, token: str) -> bool:
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def authorised(headers, token: str | None) -> bool:
    """Whether a request's headers (ASGI's [(name, value)] bytes) carry the token (any do, with no token set)."""
    if not token:
        return True
    return any(name.lower() == b"authorization" and token_ok(value.decode("latin-1"), token)
               for name, value in headers)


class Deadlines:
    """The deadlines and slot rules above, mixed in before uvicorn's H11Protocol (`protocol_class`)."""

    token: str | None = None
    max_connections: int = 1024
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    count = staticmethod(lambda reason: None)  # told each connection closed here, and why (metrics)

    def connection_made(self, transport) -> None:
        self._timer, self._phase, self._since = None, None, time.monotonic()
        self._auth_of = (None, False)  # (request cycle, authorised?)
        super().connection_made(transport)
        self._arm("header")
        open_ = [c for c in self.connections if not c.transport.is_closing()]
        if len(open_) > self.max_connections and not self._make_room(open_):
            transport.write(REFUSED)
            transport.close()
            self.count("refused")

    def _make_room(self, open_: list) -> bool:
        """Close the connection longest without an authorised request in progress; False if none."""
        idle = [c for c in open_ if c is not self and isinstance(c, Deadlines) and not c.busy()]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c._since)
        victim.transport.close()
        self.count("made_room")
        return True

    def busy(self) -> bool:
        cycle = self.cycle
        if cycle is None or cycle.response_complete or cycle.disconnected:
            return False
        if self._auth_of[0] is not cycle:
            self._auth_of = (cycle, authorised(cycle.scope["headers"], self.token))
        return self._auth_of[1]

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow(bool(data))

    def on_response_complete(self) -> None:
        self._since = time.monotonic()
        super().on_response_complete()
        self._follow(False)

    def connection_lost(self, exc) -> None:
        self._arm(None)
        super().connection_lost(exc)

    def _follow(self, bytes_came: bool) -> None:
        """Set the deadline for where the connection now is in reading a request."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            self._arm("body")
        elif state is h11.IDLE and (bytes_came or self.conn.trailing_data[0]):
            self._arm("header")
        else:  # a whole request read, an idle keep-alive (uvicorn's timer), or closing
            self._arm(None)

    def _arm(self, phase: str | None) -> None:
        if phase == self._phase:
            return  # a deadline runs from the start of its phase, not from the last byte
        if self._timer is not None:
            self._timer.cancel()
        self._phase, self._timer = phase, None
        if phase is not None:
            timeout = self.header_timeout if phase == "header" else self.body_timeout
            self._timer = self.loop.call_later(timeout, self._expired, phase)

    def _expired(self, phase: str) -> None:
        if self._phase == phase and not self.transport.is_closing():
            self.transport.close()
            self.count(f"{phase}_timeout")


def protocol_class(config: ServeConfig, count=None):
    """uvicorn's h11 protocol with `Deadlines` set from `config` (pass as uvicorn's `http=`);
    `count(reason)` is told of each connection closed by these rules."""
    # uvicorn is heavy and needed only to serve (see app.py)
    from uvicorn.protocols.http.h11_impl import H11Protocol

    return type("SandboxH11Protocol", (Deadlines, H11Protocol), {
        "token": config.token, "max_connections": config.max_connections,
        "header_timeout": config.header_timeout, "body_timeout": config.body_timeout,
        "count": staticmethod(count or Deadlines.count)})
