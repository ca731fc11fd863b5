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
    """Requests decoded and classified at once (bounds the memory big photos take); None: the CPU count, at least 2."""
    micro_batch: bool = False
    """Run the model calls of requests that arrive together as one batch (see :mod:`digits.serving.batching`)."""
    metrics: bool = True
    """Count requests, answers and model calls, and serve them at ``GET /metrics`` (:mod:`digits.serving.metrics`)."""
    access_log: bool = True
    """Log one line per request (:mod:`digits.serving.access`); ``--log-level warning`` hides it too."""
    log_format: str = "text"
    """``text`` or ``json`` (one object a line, for log collectors): every log line (:mod:`digits.serving.logs`)."""
    graceful_timeout: float = 10.0
    """On SIGTERM, the seconds requests in flight may take to finish before they are cancelled and
    the process exits (a Kubernetes pod gets 30 s between SIGTERM and SIGKILL)."""

    ENV_PREFIX: ClassVar[str] = "DIGITS_SERVE_"
    LOG_FORMATS: ClassVar[tuple[str, ...]] = ("text", "json")

    def check(self) -> None:
        """Refuse limits that would make every request fail, with one line."""
        if self.max_upload_bytes < 1 or self.max_batch < 1:
            raise DigitsError("max upload size and max batch must be at least 1")
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise DigitsError(f"threshold must be between 0 and 1, got {self.threshold}")
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


def _parse(kind, raw: str):
    """`raw` as the non-None type in the field type `kind` (``int | None`` → int)."""
    base = next(t for t in (typing.get_args(kind) or (kind,)) if t is not type(None))
    return raw == "True" if base is bool else base(raw)
