"""``GET /metrics``: what the server has done, in the Prometheus text format (prometheus-client).

- ``digits_http_requests_total{method, route, status}`` and
  ``digits_http_request_duration_seconds{method, route, status}`` (a histogram),
  counted by :mod:`digits.serving.access` for every request;
- ``digits_predictions_total{label}``: the digits answered, by label, and
  ``digits_abstentions_total{reason}``: the answers with no label, ``no_ink``
  (a blank picture) or ``unsure`` (below the threshold); ``/v1/predict``,
  ``/v1/predict/batch`` and each digit ``/v1/read`` found;
- ``digits_model_inference_seconds`` and ``digits_model_batch_size``
  (histograms): every model call, timed by :class:`TimedPredictor`, with
  its number of images (under ``--micro-batch``, the shared batches).

The labels cannot multiply without end: ``route`` is the route's template
(``/v1/predict``, ``/static``), ``unmatched`` for any path no route has;
``method`` is one of :data:`METHODS` or ``other``.

With several worker processes each counts in its own memory-mapped files
(prometheus-client's multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR``, which
:func:`digits.serving.server.serve` points at a fresh folder), and every
worker's ``/metrics`` answers the sum over all of them.  The process
metrics (``process_*``, ``python_gc_*``) are a single process's and are left
out then, as prometheus-client does.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator

import numpy as np
from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from starlette.routing import Mount

from digits.inference import ImagePredictor

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"

disable_created_metrics()  # no ``*_created`` series: half the lines, and Prometheus does not need them

REQUESTS = Counter("digits_http_requests", "HTTP requests answered", ["method", "route", "status"])
REQUEST_SECONDS = Histogram(
    "digits_http_request_duration_seconds", "Time from a request's arrival to its answer's last byte",
    ["method", "route", "status"],
    # A request takes about 2 ms on a CPU (BENCHMARKS.md), a big photo seconds.
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
PREDICTIONS = Counter("digits_predictions", "Digits answered with a label", ["label"])
ABSTENTIONS = Counter("digits_abstentions", "Answers without a label: no_ink or unsure", ["reason"])
INFERENCE_SECONDS = Histogram(
    "digits_model_inference_seconds", "Time of one model call (predictor.probabilities)",
    # One image takes 0.07..6 ms by model and runtime (BENCHMARKS.md).
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
BATCH_SIZE = Histogram("digits_model_batch_size", "Images in one model call",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    count, duration = _request_series(method if method in METHODS else "other", route, status)
    count.inc()
    duration.observe(seconds)


@functools.cache  # the labels are few (see above); looking a series up by its labels costs more than counting
def _request_series(method: str, route: str, status: int):
    labels = (method, route, str(status))
    return REQUESTS.labels(*labels), REQUEST_SECONDS.labels(*labels)


def route_of(scope: dict) -> str:
    """The template of the route that answered (``/v1/predict``, ``/static``), or ``unmatched``.

    Read once the request is answered: routing has put its route in the scope
    (a mount, only its app, as the ``endpoint``).
    """
    route = scope.get("route")
    if route is not None:
        return route.path
    endpoint = scope.get("endpoint")
    for mount in getattr(scope.get("app"), "routes", ()):
        if isinstance(mount, Mount) and mount.app is endpoint:
            return mount.path
    return UNMATCHED


def count_answers(answers: Iterable[tuple[int | None, str | None]]) -> None:
    """Count answers given as (label, reason): a label, or an abstention with its reason."""
    from digits.vision import NO_INK

    for label, reason in answers:
        if label is not None:
            PREDICTIONS.labels(str(label)).inc()
        else:
            ABSTENTIONS.labels("no_ink" if reason == NO_INK else "unsure").inc()


class TimedPredictor:
    """Any :class:`~digits.inference.ImagePredictor`, and one itself, that times each model call.

    Everything but ``probabilities`` is the wrapped predictor's.
    """

    def __init__(self, predictor: ImagePredictor):
        self.predictor = predictor

    def __getattr__(self, name: str):
        return getattr(self.predictor, name)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        out = self.predictor.probabilities(images)
        INFERENCE_SECONDS.observe(time.perf_counter() - started)
        BATCH_SIZE.observe(len(out))
        return out


def exposition() -> bytes:
    """The metrics in the text format: this process's, or every worker's summed in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


router = APIRouter(include_in_schema=False)


@router.get("/metrics")
def metrics() -> Response:
    # A plain def: FastAPI runs it in a thread, as reading the workers' files may take a moment.
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)


@contextlib.contextmanager
def shared_between_workers() -> Iterator[None]:
    """Within the block, worker processes started from here count into one fresh folder (then removed).

    A ``PROMETHEUS_MULTIPROC_DIR`` already set is used as it is (it must be
    emptied before each start, as prometheus-client says).  The workers must
    import prometheus-client after this is set: uvicorn starts them as fresh
    interpreters.
    """
    if os.environ.get(MULTIPROC_ENV):
        yield
        return
    folder = tempfile.mkdtemp(prefix="digits-metrics-")
    os.environ[MULTIPROC_ENV] = folder
    try:
        yield
    finally:
        del os.environ[MULTIPROC_ENV]
        shutil.rmtree(folder, ignore_errors=True)
