"""The server's settings, in one place: what to serve and the limits on what a request may send.

The defaults are declared here only.  ``digits serve`` takes its flags'
defaults from :class:`ServeSettings`, :func:`digits.serving.create_app` starts
from them, and worker processes receive the settings through environment
variables (:meth:`ServeSettings.to_env` and :meth:`ServeSettings.from_env`).
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from typing import ClassVar

from digits.errors import DigitsError


@dataclasses.dataclass
class ServeSettings:
    """What to serve and how: everything ``digits serve`` passes to each worker process."""

    model: str | None = None
    """A run directory; None: the bundled default model."""
    runtime: str = "keras"
    """``keras`` or ``onnx`` (ONNX Runtime on an export of `model`)."""
    backend: str | None = None
    """The Keras backend for runtime ``keras``; None: JAX, the fastest for single images."""
    onnx_path: str | None = None
    """The exported model for runtime ``onnx``; None: ``RUN_DIR/export/model.onnx``."""
    max_upload_bytes: int = 10 * 1024 * 1024
    """Largest request body (10 MiB): a phone photo is 2..6 MB."""
    max_batch: int = 64
    """Most images in one batch request."""
    max_pixels: int | None = 25_000_000
    """Most pixels in one decoded upload: a 24-megapixel photo passes; more would take
    seconds and hundreds of MB to normalize, and a small file can claim billions.
    None: Pillow's own decompression-bomb limit."""
    threshold: float | None = None
    """Below this confidence a digit is "unsure"; None: the model's own (``predictor.threshold``)."""
    threads: int | None = None
    """Requests decoded and classified at once (those with big pictures: `big_picture_threads`); None: the CPU
    count, at least 2."""
    micro_batch: bool = False
    """Run the model calls of requests that arrive together as one batch (see :mod:`digits.serving.batching`)."""

    # Observability and shutdown (digits.serving.metrics, access, logs and server)
    metrics: bool = True
    """Count requests, answers and model calls, and serve them at ``GET /metrics`` (:mod:`digits.serving.metrics`)."""
    access_log: bool = True
    """Log one line per request (:mod:`digits.serving.access`); ``--log-level warning`` hides it too."""
    log_format: str = "text"
    """``text`` or ``json`` (one object a line, for log collectors): every log line (:mod:`digits.serving.logs`)."""
    graceful_timeout: float = 10.0
    """On SIGTERM, the seconds requests in flight may take to finish before they are cancelled and
    the process exits (a Kubernetes pod gets 30 s between SIGTERM and SIGKILL)."""

    # The work and memory a request may cost (digits.serving.limits)
    predict_pixels: int = 4_000_000
    """Uploads to /v1/predict and /v1/predict/batch with more pixels are decoded reduced, by a whole
    factor, to at most this many (one digit needs no more): JPEG by Pillow's ``draft``, others by ``reduce``."""
    max_request_pixels: int = 100_000_000
    """Most pixels one request's uploads hold as decoded (after that reduction), checked from their
    headers before any is decoded: a few seconds of work."""
    max_pixels_in_flight: int = 30_000_000
    """Most pixels decoded at once in a worker process, over all requests (others wait their turn):
    bounds the memory big pictures take whatever the number of cores.  One 25-megapixel picture at
    a time: /v1/read normalizes it at full size, which took 470 MB on top of the server's 350."""
    big_picture_threads: int = 2
    """Requests with a picture of a megapixel or more run in these threads per worker, at a lower
    CPU priority, not in the `threads`: however many come, small requests keep their threads and the CPU."""

    # Connections (digits.serving.connections: uvicorn's and h11's settings, and read deadlines)
    header_timeout: float = 10.0
    """Seconds for a request's line and headers to arrive, from the connection's opening or the previous answer."""
    body_timeout: float = 60.0
    """Seconds for a request's whole body to arrive once its headers have (10 MiB at 1.4 Mbit/s)."""
    keep_alive_timeout: float = 5.0
    """Seconds an idle keep-alive connection stays open (uvicorn's ``timeout_keep_alive``)."""
    max_connections: int = 100
    """Connections and requests at once per worker; past it uvicorn answers 503 (its ``limit_concurrency``)."""
    max_header_bytes: int = 16 * 1024
    """Largest request line and headers (h11's ``max_incomplete_event_size``); past it uvicorn answers 400."""
    allowed_hosts: str | None = None
    """Comma-separated names the Host header may carry (Starlette's TrustedHostMiddleware; ``*``: any).
    None: any in :func:`~digits.serving.create_app`; :func:`~digits.serving.serve` fills in its host's names."""

    ENV_PREFIX: ClassVar[str] = "DIGITS_SERVE_"
    LOG_FORMATS: ClassVar[tuple[str, ...]] = ("text", "json")

    def check(self) -> None:
        """Refuse limits that would make every request fail, with one line."""
        if self.max_upload_bytes < 1 or self.max_batch < 1:
            raise DigitsError("max upload size and max batch must be at least 1")
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise DigitsError(f"threshold must be between 0 and 1, got {self.threshold}")
        for name in LIMITS:
            if not getattr(self, name) > 0:
                raise DigitsError(f"{name} must be positive, got {getattr(self, name)}")
        if self.log_format not in self.LOG_FORMATS:
            raise DigitsError(f"unknown log format {self.log_format!r}; choose {' or '.join(self.LOG_FORMATS)}")
        if not self.graceful_timeout > 0:
            raise DigitsError(f"the graceful shutdown timeout must be positive, got {self.graceful_timeout}")

    def to_env(self) -> dict[str, str]:
        """Every field as an environment variable (None as the empty string)."""
        return {self.ENV_PREFIX + f.name.upper(): "" if (v := getattr(self, f.name)) is None else str(v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServeSettings:
        """The settings :meth:`to_env` wrote (default: this process's environment); absent ones keep their defaults."""
        env = os.environ if env is None else env
        types = typing.get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            raw = env.get(cls.ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = None if raw == "" else _parse(types[f.name], raw)
        return cls(**values)


LIMITS = ("predict_pixels", "max_request_pixels", "max_pixels_in_flight", "big_picture_threads",
          "header_timeout", "body_timeout", "keep_alive_timeout", "max_connections", "max_header_bytes")
"""The limits on the work a request may cost and on its connection: each must be positive, and
``digits serve`` has a flag for each (``--max-request-pixels``, ...)."""


def _parse(kind, raw: str):
    """`raw` as the non-None type in the field type `kind` (``int | None`` → int)."""
    base = next(t for t in (typing.get_args(kind) or (kind,)) if t is not type(None))
    return raw == "True" if base is bool else base(raw)
