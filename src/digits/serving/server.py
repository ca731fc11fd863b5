"""Starting the server: what ``digits serve`` does once its flags are read.

Everything that can fail with one line (a missing run, a port in use, no
model at all, an ONNX export) is checked here, before uvicorn starts, so
that a mistake is not a traceback in every worker process.
"""

from __future__ import annotations

import os
import sys

from digits.serving.app import app_for
from digits.serving.connections import check_port, uvicorn_options
from digits.serving.protect import default_allowed_hosts
from digits.serving.settings import ServeSettings

FACTORY = "digits.serving.app:factory"
"""The import string uvicorn's worker processes build the app from (each loads the model once)."""


def serve(settings: ServeSettings, *, host: str, port: int, workers: int, log_level: str) -> None:
    """Serve `settings`'s model on `host`:`port` until interrupted.

    One worker loads the model in this process (so its errors are one line);
    several get `settings` through environment variables and each builds its
    app with :func:`digits.serving.app.factory`.  ``runtime="onnx"`` serves
    RUN_DIR/export/model.onnx when it is up to date, else exports first.
    """
    import uvicorn

    from digits.inference import bundled_run_dir
    from digits.runs import Run

    if settings.model is not None:
        Run(settings.model)  # a missing or broken run is one line, before anything starts
    check_port(host, port)  # so is a port in use, before the model takes seconds to load
    if settings.allowed_hosts is None:
        settings.allowed_hosts = default_allowed_hosts(host)
    if settings.runtime == "onnx":
        from digits.export import ensure_onnx

        settings.model = settings.model or str(bundled_run_dir())
        settings.onnx_path = str(ensure_onnx(settings.model))
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    if workers == 1:
        app = app_for(settings)  # the model loads here: its errors are one line too
        service = app.state.service
        print(f"digits serve: model {service.predictor.name} ({service.runtime}) "
              f"on {url}  (API docs: {url}docs)", file=sys.stderr, flush=True)
        uvicorn.run(app, host=host, port=port, log_level=log_level, **uvicorn_options(settings))
        return
    if settings.model is None:
        bundled_run_dir()  # no model at all is one line here, not a crash in every worker
    os.environ.update(settings.to_env())
    print(f"digits serve: {workers} workers on {url}  (API docs: {url}docs)", file=sys.stderr, flush=True)
    _serve_workers(uvicorn.Config(FACTORY, factory=True, workers=workers,
                                  host=host, port=port, log_level=log_level, **uvicorn_options(settings)))


def _serve_workers(config) -> None:
    """uvicorn.run's several-workers path, with TCP_NODELAY kept on the workers' connections.

    uvicorn binds the shared socket with ``proto=0``; connections accepted on
    it inherit that, and asyncio sets TCP_NODELAY only when ``proto`` is
    IPPROTO_TCP, so every keep-alive request after the first waited about
    40 ms for a delayed ACK (uvicorn issue #3149; measured here: 160 instead
    of 450 requests/s).  The socket is re-wrapped with IPPROTO_TCP before the
    workers get it.
    """
    import socket

    from uvicorn.supervisors import Multiprocess

    sock = config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
        sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
