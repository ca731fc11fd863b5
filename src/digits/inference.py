"""Fast inference: probabilities for a batch of 28×28 images, cheap even for one image.

``model.predict`` builds a data pipeline on every call: about 33 ms for one
image on TensorFlow and over a millisecond on JAX.  :class:`Predictor`
compiles the model's forward pass once and pads each batch to a power of
two (so only a handful of shapes are ever compiled), which makes a single
image cost a fraction of a millisecond on JAX.  It is safe to call from
several threads at once: the compiled function holds no mutable state.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import numpy as np

from digits.errors import DigitsError

MAX_CHUNK = 1024  # the largest batch compiled; bigger inputs run in chunks of this size


def _bucket(n: int) -> int:
    """The padded batch size for `n` images: the next power of two, at most MAX_CHUNK."""
    return min(MAX_CHUNK, 1 << max(0, (n - 1).bit_length()))


class Predictor:
    """Wraps a Keras model that maps (N, 28, 28) float32 in [0, 1] to (N, 10) probabilities."""

    def __init__(self, model, *, name: str = "model", info: dict | None = None):
        import keras

        self.model = model
        self.name = name
        self.info = info or {}
        self._backend = keras.backend.backend()
        self._lock = threading.Lock()  # guards lazy compilation only
        self._forward = None

    @classmethod
    def from_run(cls, run) -> "Predictor":
        """Load a run directory (a :class:`digits.runs.Run` or its path)."""
        from digits.runs import Run

        run = run if isinstance(run, Run) else Run(run)
        info = {"config": run.config, "metrics": run.metrics, "path": str(run.path)}
        return cls(run.load_model(), name=run.path.name, info=info)

    def _compiled(self):
        with self._lock:
            if self._forward is None:
                self._forward = self._compile()
        return self._forward

    def _compile(self):
        model = self.model
        if self._backend == "jax":
            import jax

            variables = ([v.value for v in model.trainable_variables],
                         [v.value for v in model.non_trainable_variables])
            fn = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=False)[0])
            return lambda x: np.asarray(fn(*variables, x))
        if self._backend == "tensorflow":
            import tensorflow as tf

            fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
            return lambda x: fn(tf.constant(x)).numpy()
        return lambda x: np.asarray(model(x, training=False))

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, 28, 28) float images in [0, 1] → (N, 10) float32 probabilities."""
        x = np.asarray(images, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise DigitsError(f"expected images of shape (N, 28, 28), got {x.shape}")
        if not np.isfinite(x).all():
            raise DigitsError("images contain NaN or infinite values")
        forward = self._compiled()
        out = []
        for start in range(0, len(x), MAX_CHUNK):
            chunk = x[start: start + MAX_CHUNK]
            n = len(chunk)
            padded = np.zeros((_bucket(n), 28, 28), np.float32)
            padded[:n] = chunk
            out.append(forward(padded)[:n])
        return np.concatenate(out) if out else np.zeros((0, 10), np.float32)


def load_predictor(model: str | os.PathLike | None) -> Predictor:
    """The predictor for a run directory (``--model RUN_DIR``)."""
    if model is None:
        raise DigitsError("no model given; pass --model RUN_DIR")
    return Predictor.from_run(model)


# ---------------------------------------------------------------------------
# Recognizing users' pictures: the one code path behind `digits predict FILE`,
# `digits read` and the HTTP API.

ABSTAIN_BELOW = 0.5
"""Below this top probability a prediction is reported as unsure (label None).

Provisional: the measured value and how it was chosen are in the README,
section "Abstaining"; ``--threshold`` / ``threshold=`` adjusts it.
"""


@dataclass
class Prediction:
    """What the model says about one picture.

    ``label`` is None when the picture holds no digit or the model is unsure;
    ``reason`` then says which.  ``image`` is the 28×28 array the model saw
    (None when there was nothing to show it).
    """

    label: int | None
    confidence: float
    probabilities: list[float]
    reason: str | None = None
    image: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        doc = {"label": self.label, "confidence": self.confidence, "probabilities": self.probabilities}
        if self.reason:
            doc["reason"] = self.reason
        return doc


def recognize(predictor: Predictor, pictures, *, threshold: float = ABSTAIN_BELOW) -> list[Prediction]:
    """Normalize each picture the way MNIST was made, classify them in one batch, abstain when unsure.

    `pictures` are Pillow images or arrays (a 28×28 MNIST-style array passes
    through unchanged).  A picture with no ink gives ``label=None`` with the
    reason instead of an exception, so one blank page does not fail a batch.
    """
    from digits.imaging import NoDigitError, to_mnist

    if not 0 <= threshold <= 1:
        raise DigitsError(f"threshold must be between 0 and 1, got {threshold}")
    arrays: list[np.ndarray | None] = []
    reasons: list[str | None] = []
    for picture in pictures:
        try:
            arrays.append(to_mnist(picture))
            reasons.append(None)
        except NoDigitError as e:
            arrays.append(None)
            reasons.append(e.reason)
    seen = [a for a in arrays if a is not None]
    probabilities = iter(predictor.probabilities(np.stack(seen)) if seen else [])
    results = []
    for array, reason in zip(arrays, reasons):
        if array is None:
            results.append(Prediction(None, 0.0, [0.0] * 10, reason))
            continue
        p = next(probabilities)
        best = int(p.argmax())
        confidence = round(float(p[best]), 6)
        rounded = [round(float(v), 6) for v in p]
        if confidence < threshold:
            reason = f"unsure: best guess {best} at {confidence:.2f}, below the threshold {threshold:.2f}"
            results.append(Prediction(None, confidence, rounded, reason, array))
        else:
            results.append(Prediction(best, confidence, rounded, None, array))
    return results
