"""The HTTP API and web page behind ``digits serve``.

- :mod:`~digits.serving.settings`: :class:`ServeSettings`, what to serve and the limits (their defaults live there only);
- :mod:`~digits.serving.app`: :func:`create_app` around a loaded predictor, :func:`factory` for uvicorn's workers;
- :mod:`~digits.serving.routes`: the routes (an ``APIRouter`` for ``/v1``, one for the page);
- :mod:`~digits.serving.schemas`: the request and response bodies;
- :mod:`~digits.serving.body`: reading a body within the limits (multipart, raw image bytes, JSON);
- :mod:`~digits.serving.errors`: every error as JSON ``{"error", "detail"}``;
- :mod:`~digits.serving.service`: the predictor, the worker threads, the library calls behind each route;
- :mod:`~digits.serving.batching`: micro-batching concurrent requests' model calls;
- :mod:`~digits.serving.metrics`: ``GET /metrics`` (Prometheus) and the counts behind it;
- :mod:`~digits.serving.access`: every request's id, access-log line and counts (a middleware);
- :mod:`~digits.serving.logs`: the log lines, text or JSON;
- :mod:`~digits.serving.server`: :func:`serve`, the start-up ``digits serve`` calls once its flags are read;
- :mod:`~digits.serving.limits`: the pixel budgets per request and per process, memory given back;
- :mod:`~digits.serving.connections`: read deadlines, uvicorn's connection limits, the port checked first;
- :mod:`~digits.serving.protect`: nosniff, the trusted-host check, self-hosted ``/docs`` and ``/redoc``.

Importing this package is cheap: FastAPI is imported with the first name
used from it (so ``digits serve --help`` can show the settings' defaults
without it), and Keras only when a model is loaded.
"""

_LAZY = {
    "ServeSettings": "digits.serving.settings",
    "create_app": "digits.serving.app",
    "factory": "digits.serving.app",
    "load_serving_predictor": "digits.serving.app",
    "serve": "digits.serving.server",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'digits.serving' has no attribute {name!r}")
