"""Every request: a request id, one access-log line and its count in the metrics (an ASGI middleware).

The id is the client's ``X-Request-ID`` when it is a sane one (1..128 of
letters, digits and ``._:/+=-``, as UUIDs and trace ids are), else 32 fresh
random hex digits; it goes back in the answer's ``X-Request-ID`` header,
into the access line and into every line logged while the request is
answered (:data:`digits.serving.logs.request_id`).  A bad incoming id is replaced,
never echoed, so a client cannot write into the logs.

The access line (logger ``digits.access``, at INFO) is written once the
answer has been sent, with ``method``, ``path`` (as sent, still
percent-encoded), ``route`` (the template, as in the metrics), ``status``,
``duration_ms`` and ``client``.  A pure ASGI middleware rather than
Starlette's ``BaseHTTPMiddleware``: it adds no task or stream per request.
"""

from __future__ import annotations

import logging
import os
import re
import time

from digits.serving import logs, metrics

log = logging.getLogger("digits.access")

HEADER = b"x-request-id"
ANSWERED_BELOW = "digits.answered_below"
"""A scope key: the status the protocol itself sent when it answered below the app, cutting the request off
(:class:`digits.serving.connections.DeadlineProtocol`'s 408 for a body that did not arrive); the line says that,
not the app's answer that went nowhere."""
_SANE_ID = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}")
_MAX_PATH = 300


def incoming_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The client's request id if it sent a sane one."""
    for name, value in headers:
        if name == HEADER:
            return value.decode("ascii") if _SANE_ID.fullmatch(value) else None
    return None


class AccessMiddleware:
    """Request ids for every HTTP request; the access log and the request metrics where asked for."""

    def __init__(self, app, *, access_log: bool = True, count: bool = True):
        self.app, self.access_log, self.count = app, access_log, count

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = incoming_id(scope["headers"]) or os.urandom(16).hex()  # 128 random bits, as uuid4 at a sixth of its cost
        # Each request runs in its own task, so the id cannot leak to the next one; it is
        # left set after an error for the traceback that Starlette logs further out.
        logs.request_id.set(rid)
        header = (HEADER, rid.encode("ascii"))
        status = 500  # what the client gets if the app fails before it answers
        started = time.perf_counter()

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            status = scope.get(ANSWERED_BELOW, status)
            route = metrics.route_of(scope)
            if self.count:
                metrics.observe_request(scope["method"], route, status, seconds)
            if self.access_log and log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                path = scope.get("raw_path") or scope["path"].encode("utf-8", "backslashreplace")
                log.info("request", extra={"fields": {
                    "method": scope["method"], "path": path[:_MAX_PATH].decode("ascii", "backslashreplace"),
                    "route": route, "status": status, "duration_ms": round(seconds * 1000, 2),
                    "client": f"{client[0]}:{client[1]}" if client else None, "request_id": rid}})
