"""Connections: read deadlines, uvicorn's and h11's limits, and the port checked before the model loads.

uvicorn closes a keep-alive connection that stays idle (``timeout_keep_alive``)
and can refuse requests past a number of connections (``limit_concurrency``,
503), and h11 bounds a request's line and headers
(``max_incomplete_event_size``, 400); :func:`uvicorn_options` sets all three
from :class:`~digits.serving.ServeSettings`.  What uvicorn does not have is
a deadline for a request to *arrive*: a connection that never sends a byte,
or one that sends a byte every 10 s, stayed open for ever.
:class:`DeadlineProtocol` is uvicorn's h11 protocol with two:

- the request line and headers must arrive within ``header_timeout`` seconds
  of the connection's opening (or of the previous answer);
- the body within ``body_timeout`` seconds of the headers.

Past one, the connection is closed, after a 408 JSON answer when part of a
request came and no answer has begun (a connection that sent nothing is
closed without one, as uvicorn closes an idle keep-alive connection).
A body's 408 is recorded in the request's scope
(:data:`digits.serving.access.ANSWERED_BELOW`), so the access line and the
count of the request the app was answering say 408 too.

:func:`check_port` binds the port once before the model loads, so a port
already in use is one line, not a traceback after seconds of loading.
"""

from __future__ import annotations

import errno
import functools
import json
import socket

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from digits.errors import DigitsError
from digits.serving.access import ANSWERED_BELOW
from digits.serving.errors import NOSNIFF


def uvicorn_options(settings) -> dict:
    """uvicorn.run's / uvicorn.Config's keywords for `settings`' connection limits (a ServeSettings)."""
    return {
        "http": functools.partial(DeadlineProtocol, header_timeout=settings.header_timeout,
                                  body_timeout=settings.body_timeout),
        "timeout_keep_alive": settings.keep_alive_timeout,
        "limit_concurrency": settings.max_connections,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
    }


class DeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, with deadlines for a request's headers and for its body to arrive."""

    def __init__(self, *args, header_timeout: float, body_timeout: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.deadlines = {"headers": header_timeout, "body": body_timeout}
        self._phase: str | None = None  # what the deadline running now is for
        self._timer = None
        self._started = False  # some bytes of the awaited request have arrived

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._follow()

    def data_received(self, data: bytes) -> None:
        self._started = True
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def connection_lost(self, exc) -> None:
        self._arm(None)
        super().connection_lost(exc)

    def _follow(self) -> None:
        """Run the deadline for what the connection waits for now: a request's headers, its body, or none."""
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        phase = "headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
        if phase != self._phase:
            self._arm(phase)

    def _arm(self, phase: str | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._phase, self._timer = phase, None
        if phase is not None:
            self._started = phase == "body"
            self._timer = self.loop.call_later(self.deadlines[phase], self._expired, phase)

    def _expired(self, phase: str) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        seconds = self.deadlines[phase]
        cycle = self.cycle if phase == "body" else None
        answering = cycle is not None and cycle.response_started
        if self._started:  # a connection that sent nothing is closed as quietly as an idle keep-alive one
            if not answering:
                self.transport.write(_timeout_answer(f"the request's {phase} did not arrive within {seconds:g} s"))
                if cycle is not None:  # the app is reading the body: its access line and count say 408 too
                    cycle.scope[ANSWERED_BELOW] = 408
            self.logger.info("%s - closed: the request's %s did not arrive within %g s",
                             "%s:%d" % self.client if self.client else "client", phase, seconds)
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's answer, if it comes, goes nowhere
            cycle.message_event.set()
        self.transport.close()


def _timeout_answer(detail: str) -> bytes:
    body = json.dumps({"error": "request_timeout", "detail": detail}).encode()
    head = ["HTTP/1.1 408 Request Timeout", "content-type: application/json",
            f"content-length: {len(body)}", *(f"{k.lower()}: {v}" for k, v in NOSNIFF.items()), "connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def host_port(host: str, port: int) -> str:
    """``host:port`` as a URL writes it (an IPv6 address in brackets)."""
    return f"{'[' + host + ']' if ':' in host else host}:{port}"


def check_port(host: str, port: int) -> None:
    """Bind `host`:`port` once and let it go: a name that does not resolve, or a port in use or
    not allowed, is one line (DigitsError) before the model loads, not uvicorn's exit after it."""
    where = host_port(host, port)
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise DigitsError(f"cannot listen on {where}: the host does not resolve ({e.strerror})") from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does: TIME_WAIT is no conflict
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                s.bind(address)
            except OSError as e:
                hint = ("; another program is listening there: stop it or choose another --port"
                        if e.errno == errno.EADDRINUSE else "")
                raise DigitsError(f"cannot listen on {where}: {e.strerror or e}{hint}") from None
