"""Starting the server: what ``digits serve`` does once its flags are read.

Everything that can fail with one line (a missing run, a port in use, no
model at all, an ONNX export) is checked here, before uvicorn starts, so
that a mistake is not a traceback in every worker process.

On SIGTERM uvicorn stops accepting connections, lets the requests in flight
finish (for at most `graceful_timeout` seconds, then cancels them) and the
process exits 0: a stop asked for is not an error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

from digits.errors import DigitsError
from digits.inference import ImagePredictor
from digits.serving import logs, metrics
from digits.serving.app import app_for
from digits.serving.connections import check_port, host_port, uvicorn_options
from digits.serving.protect import default_allowed_hosts
from digits.serving.settings import ServeSettings

FACTORY = "digits.serving.app:factory"
"""The import string uvicorn's worker processes build the app from (each loads the model once)."""


def serve(settings: ServeSettings, *, host: str, port: int, workers: int, log_level: str,
          predictor: ImagePredictor | None = None) -> None:
    """Serve `settings`'s model on `host`:`port` until interrupted or terminated.

    One worker loads the model in this process (so its errors are one line);
    several get `settings` through environment variables and each builds its
    app with :func:`digits.serving.app.factory`.  ``runtime="onnx"`` serves
    RUN_DIR/export/model.onnx when it is up to date, else exports first.
    `predictor`, for one worker, serves that instead of loading a model.
    uvicorn gets the settings' connection limits and read deadlines
    (:func:`digits.serving.connections.uvicorn_options`), their `log_format`
    (:mod:`digits.serving.logs`) and `graceful_timeout` (how long SIGTERM
    waits for requests in flight).
    """
    import uvicorn

    settings.check()
    # The connection limits and read deadlines (connections: its h11 protocol subclass, as `http`),
    # then the log lines' format (uvicorn's own access log off: access.py writes one) and the graceful stop.
    options = {**uvicorn_options(settings),
               "log_config": logs.log_config(settings.log_format, log_level), "access_log": False,
               "timeout_graceful_shutdown": settings.graceful_timeout}
    if predictor is not None and workers != 1:
        raise DigitsError("a predictor object can be served by one worker only")

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
    url = f"http://{host_port(host, port)}/"
    if workers == 1:
        app = app_for(settings, predictor)  # the model loads here: its errors are one line too
        service = app.state.service
        logs.announce(f"digits serve: model {service.predictor.name} ({service.runtime}) "
                      f"on {url}  (API docs: {url}docs)", settings.log_format)
        with _sigterm_is_a_clean_stop():
            uvicorn.run(app, host=host, port=port, log_level=log_level, **options)
        return
    if settings.model is None:
        bundled_run_dir()  # no model at all is one line here, not a crash in every worker
    os.environ.update(settings.to_env())
    logs.announce(f"digits serve: {workers} workers on {url}  (API docs: {url}docs)", settings.log_format)
    with metrics.shared_between_workers():
        _serve_workers(uvicorn.Config(FACTORY, factory=True, workers=workers,
                                      host=host, port=port, log_level=log_level, **options))


@contextlib.contextmanager
def _sigterm_is_a_clean_stop():
    """Around uvicorn.run: SIGTERM, once uvicorn has shut down gracefully, ends the process with 0.

    uvicorn catches SIGTERM, shuts down, then raises the signal again for the
    handler it found, which in the CLI is :mod:`digits.interrupts`'s (exit
    143); here that handler does nothing, since the stop is already done.
    Ctrl-C keeps the CLI's handler (exit 130).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
