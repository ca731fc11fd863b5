"""What every answer carries and who may ask: ``nosniff``, a trusted-host check, self-hosted API docs.

- :class:`NoSniff` puts ``X-Content-Type-Options: nosniff`` on every answer,
  so a browser never runs an answer as a type it was not sent as.
- :class:`TrustedHosts` answers 400 JSON ``invalid_host`` to a request whose
  Host header is not one of ``settings.allowed_hosts`` (Starlette's
  ``TrustedHostMiddleware`` decides).  A DNS-rebinding page (evil.example
  resolving to 127.0.0.1) sends its own name as the Host, so it cannot talk
  to a server bound to loopback.  :func:`default_allowed_hosts` is what
  ``digits serve`` allows when not told.
- :func:`add_docs_routes` serves ``/docs`` (Swagger UI) and ``/redoc`` with
  their scripts and styles from the package (``serving/apidocs/``, FastAPI's
  documented way to self-host them) instead of a CDN and Google Fonts, so
  they work offline, and a Content-Security-Policy keeps them from loading
  anything from elsewhere (:data:`DOCS_CSP`).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digits.serving.errors import NOSNIFF, error_response

APIDOCS_DIR = Path(__file__).resolve().parent / "apidocs"
APIDOCS_URL = "/apidocs"

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
            "frame-ancestors 'none'")
"""The docs pages load nothing from elsewhere: ReDoc's bundle asks cdn.redoc.ly for its logo, and
this refuses it.  Swagger UI is started by an inline script, and both inject inline styles."""


def protect(app: FastAPI, allowed_hosts: str | None) -> None:
    """Install the trusted-host check (unless any host is allowed), nosniff and the self-hosted docs on `app`."""
    hosts = [h.strip() for h in (allowed_hosts or "*").split(",") if h.strip()]
    if "*" not in hosts:
        app.add_middleware(TrustedHosts, allowed_hosts=hosts)
    app.add_middleware(NoSniff)  # added last: outermost, so the trusted-host refusal gets it too
    add_docs_routes(app)


def default_allowed_hosts(host: str) -> str:
    """The Host names a server bound to `host` answers to: that name, and every loopback name when
    it is a loopback address; any (``*``) when bound to all interfaces (0.0.0.0, ::)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and address.is_unspecified:
        return "*"
    if host == "localhost" or (address is not None and address.is_loopback):
        return ",".join(dict.fromkeys((host, *LOOPBACK_NAMES)))
    return host


class NoSniff:
    """Pure ASGI middleware: ``X-Content-Type-Options: nosniff`` on every HTTP answer."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_nosniff(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in NOSNIFF.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_nosniff)


_ADMITTED = "digits.host_admitted"  # set in the scope once the Host header passed


class TrustedHosts:
    """Starlette's ``TrustedHostMiddleware``, with its refusal answered as the API's JSON 400."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]):
        self.app = app
        self.allowed_hosts = allowed_hosts
        self._check = TrustedHostMiddleware(self._admit, allowed_hosts=allowed_hosts, www_redirect=False)

    async def _admit(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_ADMITTED] = True
        await self.app(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_if_admitted(message: Message) -> None:  # drops Starlette's plain-text refusal
            if scope.get(_ADMITTED):
                await send(message)

        await self._check(scope, receive, send_if_admitted)
        if not scope.get(_ADMITTED):
            host = dict(scope.get("headers") or ()).get(b"host", b"").decode("latin-1")
            detail = (f"this server does not answer to the Host {host!r}; it answers to "
                      f"{', '.join(self.allowed_hosts)} (digits serve --allowed-hosts)")
            await error_response(400, "invalid_host", detail)(scope, receive, send)


def add_docs_routes(app: FastAPI) -> None:
    """``/docs`` and ``/redoc`` with their assets from ``serving/apidocs/`` (create the app with
    ``docs_url=None, redoc_url=None``)."""
    app.mount(APIDOCS_URL, StaticFiles(directory=APIDOCS_DIR), name="apidocs")

    def assets(request: Request) -> tuple[str, str]:
        root = request.scope.get("root_path", "").rstrip("/")
        return root + (app.openapi_url or "/openapi.json"), root + APIDOCS_URL

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request):
        openapi, base = assets(request)
        page = get_swagger_ui_html(
            openapi_url=openapi, title=f"{app.title} - API docs",
            swagger_js_url=f"{base}/swagger-ui-bundle.js", swagger_css_url=f"{base}/swagger-ui.css",
            swagger_favicon_url=f"{base}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None})  # no badge fetched from validator.swagger.io
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request):
        openapi, base = assets(request)
        page = get_redoc_html(openapi_url=openapi, title=f"{app.title} - API reference",
                              redoc_js_url=f"{base}/redoc.standalone.js",
                              redoc_favicon_url=f"{base}/favicon-32x32.png", with_google_fonts=False)
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page
