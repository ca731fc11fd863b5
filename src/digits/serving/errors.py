"""Every error the API answers is JSON ``{"error": code, "detail": one line}``, never a traceback.

400 for an empty or malformed body; 413 for a request over the size limit, a
batch over the length limit or an image with too many pixels; 415 for content
that is not an image (or a body of the wrong kind for the route); 422 for
wrong shapes, NaN or out-of-range pixels and corrupt images.  A
:class:`digits.errors.DigitsError` raised while answering is a 4xx too, since
it is the library's one-line account of bad input.  Anything unexpected is
logged with its traceback on the server and answered 500 with no details.
A client that disconnects before its request is complete is not an error:
one short log line at INFO, no traceback.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from digits.errors import DigitsError
from digits.serving.logs import request_id

log = logging.getLogger("digits.serving")


class ApiError(Exception):
    """A client error with its status, code and one-line detail."""

    def __init__(self, status: int, error: str, detail: str):
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


def _one_line(text: Any, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


NOSNIFF = {"X-Content-Type-Options": "nosniff"}
"""On every answer: a browser takes each one as the type it says (see :mod:`digits.serving.protect`)."""


def error_response(status: int, error: str, detail: Any, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": _one_line(detail)}, status_code=status, headers=headers)


_DECODE_STATUS = {"empty": (400, "empty_body"), "not_image": (415, "not_an_image"),
                  "unsupported": (415, "unsupported_image_format"),
                  "corrupt": (422, "corrupt_image"), "too_large": (413, "image_too_large")}
"""An upload :func:`digits.vision.decode_image` refused, by its ``kind``: the status and code."""


def validation_detail(errors: list[dict]) -> str:
    """Pydantic errors as one line: the first error's place and message, and how many more."""
    first = errors[0]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.get("loc", ()) if p != "body")
    where = loc.lstrip(".") or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.error, exc.detail)


async def _digits_error(request: Request, exc: DigitsError) -> JSONResponse:
    from digits.vision import ImageDecodeError

    if isinstance(exc, ImageDecodeError) and exc.kind in _DECODE_STATUS:
        return error_response(*_DECODE_STATUS[exc.kind], exc)
    return error_response(422, "invalid_input", exc)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(422, "validation_error", validation_detail(list(exc.errors())))


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    try:
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        code = "http_error"
    return error_response(exc.status_code, code, exc.detail, headers=getattr(exc, "headers", None))


async def _client_gone(request: Request, exc: ClientDisconnect) -> Response:
    # Not an error: the client closed the connection while sending.  Nobody reads the answer.
    log.info("client disconnected before its request was complete: %s %s", request.method, request.url.path)
    return Response(status_code=400)


INTERNAL_DETAIL = "the server failed to answer this request; the error was logged"


def _log_unexpected(method: str, path: str, exc: Exception) -> None:
    log.error("unexpected error answering %s %s", method, path, exc_info=(type(exc), exc, exc.__traceback__))


class InternalErrors:
    """Pure ASGI middleware, the innermost: an unexpected exception is logged and answered 500 JSON.

    Answered here, inside the other middleware, the 500 gets the request id,
    nosniff, its access line and its count like any other answer.  Once an
    answer has begun it cannot be replaced: the exception goes on to the
    server, which closes the connection.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if started:
                raise
            _log_unexpected(scope["method"], scope["path"], exc)
            await error_response(500, "internal_error", INTERNAL_DETAIL)(scope, receive, send)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # Only for a failure in the middleware itself: this answer leaves through Starlette's outermost
    # layer, past NoSniff and the access middleware, so it carries their headers by hand.
    _log_unexpected(request.method, request.url.path, exc)
    rid = request_id.get()
    return error_response(500, "internal_error", INTERNAL_DETAIL,
                          headers={**NOSNIFF, **({"X-Request-ID": rid} if rid else {})})


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of `app` as JSON ``{"error", "detail"}``.

    Call it before adding any other middleware: :class:`InternalErrors` must be the innermost.
    """
    app.add_middleware(InternalErrors)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(DigitsError, _digits_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _internal_error)
