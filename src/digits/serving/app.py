"""The app factory: a FastAPI application around one loaded predictor.

- :func:`create_app` wires a predictor, the settings, the routes
  (:mod:`digits.serving.routes`) and the error handlers
  (:mod:`digits.serving.errors`) together;
- :func:`app_for` loads the model the settings name, then builds the app;
- :func:`factory` is uvicorn's ``--factory`` entry for several worker
  processes: each reads the settings from environment variables.

Besides the routes: ``/static/...`` (the page's script and style sheet),
FastAPI's ``/openapi.json``, ``/docs`` and ``/redoc`` with their assets
under ``/apidocs/`` (:mod:`digits.serving.protect`), and ``/metrics``
(:mod:`digits.serving.metrics`) unless the settings turn metrics off.  Every
request passes :mod:`digits.serving.access` (request id, access log,
request metrics) first, outside :mod:`digits.serving.protect`'s nosniff and
trusted-host check, so a request refused there is logged and counted too.
The model is warmed up in a thread once the server starts (the app's
lifespan); ``/v1/ready`` answers 503 until it is done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from pathlib import Path

import numpy as np
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from digits.datasets.arrays import MNIST_SIDE
from digits.errors import DigitsError
from digits.inference import ImagePredictor
from digits.serving import metrics, routes
from digits.serving.access import AccessMiddleware
from digits.serving.errors import install_error_handlers
from digits.serving.protect import protect
from digits.serving.schemas import BatchPixelsRequest, PixelsRequest
from digits.serving.service import Service
from digits.serving.settings import ServeSettings

STATIC_DIR = routes.STATIC_DIR

DESCRIPTION = ("Handwritten digit recognition: upload an image or send 28×28 pixels, get the digit "
               "and the ten probabilities. Errors are JSON `{\"error\": code, \"detail\": line}`.")


def create_app(predictor: ImagePredictor, settings: ServeSettings | None = None, **changes) -> FastAPI:
    """The FastAPI app serving `predictor`.

    `settings` (default :class:`ServeSettings`'s defaults), with `changes` to
    any of its fields (``max_upload_bytes=...``, ``threshold=...``), bound
    the requests; the fields that choose a model are :func:`app_for`'s.
    """
    from digits import __version__

    settings = dataclasses.replace(settings or ServeSettings(), **changes)
    ready = threading.Event()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        # In a thread, so that the server answers /v1/health (and 503 on /v1/ready) meanwhile.
        threading.Thread(target=_warm_up_then_set, args=(predictor, ready), name="digits-warm-up",
                         daemon=True).start()
        yield

    app = FastAPI(title="Digits", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)  # self-hosted by protect()
    app.state.ready = ready  # set once the model is warmed up: what /v1/ready answers
    served = metrics.TimedPredictor(predictor) if settings.metrics else predictor
    app.state.service = Service.start(served, settings)  # what the routes use, settings included
    install_error_handlers(app)
    app.include_router(routes.api)
    app.include_router(routes.page)
    if settings.metrics:
        app.include_router(metrics.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.openapi = lambda: _openapi(app)
    protect(app, settings.allowed_hosts)  # nosniff, the trusted-host check, /docs and /redoc
    # Added last, so outermost (Starlette's last-added middleware runs first): the request id, the
    # access line and the counts cover the answers protect()'s middleware gives, the 400 invalid_host
    # included, and every answer carries both X-Request-ID and nosniff.
    app.add_middleware(AccessMiddleware, access_log=settings.access_log, count=settings.metrics)
    return app


def _openapi(app: FastAPI) -> dict:
    """FastAPI's schema, plus the JSON bodies the routes parse themselves (so the size limit comes first)."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (PixelsRequest, BatchPixelsRequest):
            doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(doc.pop("$defs", {}))
            components[model.__name__] = doc
        app.openapi_schema = schema
    return app.openapi_schema


# ---------------------------------------------------------------------------
# Loading, and uvicorn's factory for several worker processes


def load_serving_predictor(settings: ServeSettings) -> ImagePredictor:
    """Load the model once: Keras (on JAX unless told otherwise) or an ONNX export with ONNX Runtime."""
    if settings.runtime == "onnx":
        from digits.export import OnnxPredictor

        if settings.model is None and settings.onnx_path is None:
            raise DigitsError("--runtime onnx needs --model RUN_DIR (or an exported model)")
        if settings.model is None:
            return OnnxPredictor(settings.onnx_path, name=Path(settings.onnx_path).stem)
        return OnnxPredictor.from_run(settings.model, settings.onnx_path)
    if settings.runtime != "keras":
        raise DigitsError(f"unknown runtime {settings.runtime!r}; choose keras or onnx")
    from digits.backend import use_backend
    from digits.inference import load_predictor

    use_backend(settings.backend)  # JAX unless --backend or KERAS_BACKEND say otherwise
    return load_predictor(settings.model)


def warm_up(predictor: ImagePredictor) -> None:
    """Compile the batch shapes a server meets first (1..8 images), and load the group reader
    that ``/v1/read`` uses for touching digits, before the first request."""
    from digits.sequence import load_group_reader

    for n in (1, 2, 4, 8):
        predictor.probabilities(np.zeros((n, MNIST_SIDE, MNIST_SIDE), np.float32))
    load_group_reader().read([np.ones((MNIST_SIDE, 2 * MNIST_SIDE), np.float32)])


def _warm_up_then_set(predictor: ImagePredictor, ready: threading.Event) -> None:
    try:
        warm_up(predictor)
    except Exception:  # the model cannot answer: the server stays unready, and says why
        logging.getLogger("digits.serving").exception("warming up the model failed; /v1/ready stays 503")
        return
    ready.set()


def app_for(settings: ServeSettings, predictor: ImagePredictor | None = None) -> FastAPI:
    """The app for `settings`: its model loaded (unless `predictor` is given), warmed up once it starts."""
    settings.check()  # a bad limit is one line before the model takes seconds to load
    predictor = predictor if predictor is not None else load_serving_predictor(settings)
    return create_app(predictor, settings)


def factory() -> FastAPI:
    """uvicorn's app factory (``digits.serving.app:factory``): each worker loads the model once."""
    return app_for(ServeSettings.from_env())
