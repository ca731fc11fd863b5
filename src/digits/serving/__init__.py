"""The HTTP API and web page behind ``digits serve``.

- :mod:`~digits.serving.settings`: :class:`ServeSettings`, what to serve and the limits (their defaults live there only);
- :mod:`~digits.serving.app`: :func:`create_app` around a loaded predictor, :func:`factory` for uvicorn's workers;
- :mod:`~digits.serving.routes`: the routes (an ``APIRouter`` for ``/v1``, one for the page);
- :mod:`~digits.serving.schemas`: the request and response bodies;
- :mod:`~digits.serving.body`: reading a body within the limits (multipart, raw image bytes, JSON);
- :mod:`~digits.serving.errors`: every error as JSON ``{"error", "detail"}``;
- :mod:`~digits.serving.service`: the predictor, the worker threads, the library calls behind each route;
- :mod:`~digits.serving.batching`: micro-batching concurrent requests' model calls;
- :mod:`~digits.serving.server`: :func:`serve`, the start-up ``digits serve`` calls once its flags are read.

Importing this package imports FastAPI but not Keras.
"""

from digits.serving.app import create_app, factory, load_serving_predictor
from digits.serving.server import serve
from digits.serving.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "factory", "load_serving_predictor", "serve"]
