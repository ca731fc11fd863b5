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
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from digits.datasets.arrays import MNIST_SIDE
from digits.errors import DigitsError

MAX_CHUNK = 1024  # the largest batch compiled; bigger inputs run in chunks of this size


def _bucket(n: int) -> int:
    """The padded batch size for `n` images: the next power of two, at most MAX_CHUNK."""
    return min(MAX_CHUNK, 1 << max(0, (n - 1).bit_length()))


def checked_images(images) -> np.ndarray:
    """`images` as a contiguous float32 (N, 28, 28) batch (one 28×28 image gets a batch axis).

    Every predictor (Keras or ONNX) refuses the same bad input with the same message.
    """
    x = np.ascontiguousarray(images, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1:] != (MNIST_SIDE, MNIST_SIDE):
        raise DigitsError(f"expected images of shape (N, 28, 28), got {x.shape}")
    if not np.isfinite(x).all():
        raise DigitsError("images contain NaN or infinite values")
    return x


@runtime_checkable
class ImagePredictor(Protocol):
    """What every predictor is: :class:`Predictor` (Keras), :class:`digits.export.OnnxPredictor`
    (ONNX Runtime) and :class:`digits.serving.batching.BatchingPredictor` (several callers, one batch).

    :func:`recognize`, :func:`read_number` and the HTTP service take any of
    them.  ``probabilities`` must be safe to call from several threads at
    once and refuse bad input through :func:`checked_images`, so that every
    runtime says the same one line about the same mistake.
    ``tests/test_predictor_contract.py`` holds each implementation to this.
    """

    name: str
    """The model's id, sent with every answer (the run directory's name, or ``bundled``)."""
    info: dict
    """What is known about the model: ``config`` and ``metrics`` from its run directory, and ``path``."""
    runtime: str
    """What computes the answers, as ``/v1/health`` reports it: ``keras (BACKEND)`` or ``onnx``."""
    threshold: float
    """The model's own abstain threshold in [0, 1] (see :func:`model_threshold`)."""

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, 28, 28) float images in [0, 1] (or one 28×28 image) → (N, 10) float32 probabilities."""
        ...


class Predictor:
    """Wraps a Keras model that maps (N, 28, 28) float32 in [0, 1] to (N, 10) probabilities."""

    def __init__(self, model, *, name: str = "model", info: dict | None = None):
        import keras

        self.model = model
        self.name = name
        self.info = info or {}
        self.threshold = model_threshold(self.info)
        """Below this top probability an answer is "unsure" (the model's own; see :func:`model_threshold`)."""
        self._backend = keras.backend.backend()
        self._lock = threading.Lock()  # guards lazy compilation only
        self._forward = None

    @property
    def runtime(self) -> str:
        """What answers, as ``/v1/health`` reports it: ``keras (BACKEND)``."""
        return f"keras ({self._backend})"

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
        import keras
        import torch

        def forward(x):
            with torch.inference_mode():  # no autograd graph: the weights require gradients
                return keras.ops.convert_to_numpy(model(x, training=False))

        return forward

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, 28, 28) float images in [0, 1] → (N, 10) float32 probabilities."""
        x = checked_images(images)
        forward = self._compiled()
        out = []
        for start in range(0, len(x), MAX_CHUNK):
            chunk = x[start: start + MAX_CHUNK]
            n = len(chunk)
            padded = np.zeros((_bucket(n), MNIST_SIDE, MNIST_SIDE), np.float32)
            padded[:n] = chunk
            out.append(forward(padded)[:n])
        return np.concatenate(out) if out else np.zeros((0, 10), np.float32)


BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
"""The default model that ships inside the package: a run directory (model.keras,
config.json, metrics.json) plus MODEL_CARD.md, which says how it was trained,
how well it does and where it fails."""


def load_predictor(model: str | os.PathLike | None = None) -> Predictor:
    """The predictor for a run directory (``--model RUN_DIR``), or the bundled model when None.

    Keras must already run on the wanted backend (:func:`digits.backend.use_backend`).
    """
    if model is None:
        predictor = Predictor.from_run(bundled_run_dir())
        predictor.name = "bundled"
        return predictor
    return Predictor.from_run(model)


def bundled_run_dir() -> Path:
    """:data:`BUNDLED_DIR`, checked (without loading Keras) to hold its model."""
    if not (BUNDLED_DIR / "model.keras").is_file():
        raise DigitsError(f"{BUNDLED_DIR}: the bundled model is missing from this installation; "
                          "pass --model RUN_DIR")
    return BUNDLED_DIR


# ---------------------------------------------------------------------------
# Recognizing users' pictures: the one code path behind `digits predict FILE`,
# `digits read` and the HTTP API.

ABSTAIN_BELOW = 0.8
"""The abstain threshold of a model that carries none of its own (see :func:`model_threshold`).

A prediction whose top probability is below a model's threshold is reported
as unsure (label None).  Every run made by ``digits train`` measures its own
(:func:`measure_threshold`) and stores it in ``metrics.json``; the bundled
model's was measured on user-like renders of its validation images
(``bundled/MODEL_CARD.md``).  This value is used for older runs only.
"""

THRESHOLD_GRID = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
"""The thresholds :func:`measure_threshold` chooses from: 0.5 .. 0.95."""


def measure_threshold(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The abstain threshold for a model, from its probabilities on held-out (validation) images.

    The lowest threshold in :data:`THRESHOLD_GRID` that refuses at least half
    of the model's wrong answers on those images: the rule by which the
    bundled model's 0.8 was chosen (it halved the wrong answers on renders of
    its validation images while still answering 99% of them).  A model with
    no wrong answers there gets :data:`ABSTAIN_BELOW`.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels).reshape(-1)
    if y.size == 0 or p.shape != (y.size, p.shape[-1]):
        return ABSTAIN_BELOW
    confidence = p.max(axis=1)
    wrong = p.argmax(axis=1) != y
    if not wrong.any():
        return ABSTAIN_BELOW
    for threshold in THRESHOLD_GRID:
        if (wrong & (confidence >= threshold)).sum() <= wrong.sum() / 2:
            return threshold
    return THRESHOLD_GRID[-1]


def model_threshold(info: dict | None) -> float:
    """A loaded model's own abstain threshold: ``metrics.json``'s ``threshold``, else :data:`ABSTAIN_BELOW`."""
    value = ((info or {}).get("metrics") or {}).get("threshold")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return ABSTAIN_BELOW


def _threshold(predictor, threshold: float | None) -> float:
    """`threshold` when given (checked), else the predictor's own."""
    if threshold is None:
        return predictor.threshold
    if not 0 <= threshold <= 1:
        raise DigitsError(f"threshold must be between 0 and 1, got {threshold}")
    return float(threshold)


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

    def _repr_html_(self) -> str:
        """Jupyter's view: the image the model saw, the label or why none, the top three."""
        from digits.display import prediction_html

        return prediction_html(self.label, self.confidence, self.top(3), self.reason, self.image)

    def top(self, k: int) -> list[tuple[int, float]]:
        """The k most probable digits as ``(digit, probability)``, best first (none when no ink)."""
        if self.image is None and not any(self.probabilities):
            return []
        order = sorted(range(len(self.probabilities)), key=lambda d: -self.probabilities[d])
        return [(d, self.probabilities[d]) for d in order[:k]]


def recognize(predictor: ImagePredictor, pictures, *, threshold: float | None = None) -> list[Prediction]:
    """Normalize each picture the way MNIST was made, classify them in one batch, abstain when unsure.

    `pictures` are Pillow images or arrays (a 28×28 MNIST-style array passes
    through unchanged).  A picture with no ink gives ``label=None`` with the
    reason instead of an exception, so one blank page does not fail a batch.
    `threshold` (default: the model's own, ``predictor.threshold``) is the
    top probability below which the answer is "unsure".
    """
    from digits.vision import NoDigitError, to_mnist

    threshold = _threshold(predictor, threshold)
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


SPLIT_WIDTH = 0.7
"""A group of ink wider than this many times its row's digit height may be several touching digits..."""
WIDE = 1.1
"""...a group narrower than this may well be one wide digit (a 0, a 2)..."""
SEVERAL = 1.5
"""...and one wider than this cannot be: it is scored whole with the size prior of :func:`_size_prior`."""
PIECE_WIDTH = (0.12, 1.3)
"""A piece of a split is this many row heights wide, at least and at most (a 1 is about 0.15)."""
PIECE_HEIGHT = 0.6
"""...and its ink at least this many row heights tall: a cut through a stroke leaves no digit."""
SNAP = 0.15
"""A cut the group reader places moves to a least-ink seam at most this many row heights away."""
MAX_PIECES = 8
"""The most digits one group of touching ink is split into."""


class Reading(dict):
    """What :func:`read_number` returns: a plain JSON-ready dict that Jupyter shows as a small table."""

    def _repr_html_(self) -> str:
        from digits.display import reading_html

        return reading_html(self)


def read_number(predictor: ImagePredictor, picture, *, threshold: float | None = None, reader=None) -> Reading:
    """Read the numbers in a picture: rows top to bottom, digits left to right, touching digits split.

    The one code path behind ``digits read``, ``POST /v1/read`` and this
    API.  Returns a JSON-ready dict: ``rows``, one per line of writing, each
    with its ``number`` (the digits, ``?`` for one the model is unsure of),
    ``complete``, ``box`` and ``digits`` (each a :class:`Prediction`'s fields
    plus its ``box`` ``[x0, y0, x1, y1]`` in the picture's pixels); then for
    the whole picture ``number`` (the rows' numbers joined by newlines; None
    when no digit was found), ``complete`` (False when any digit is unsure or
    none was found), ``digits`` (every row's, in reading order) and
    ``reason`` when nothing was found.

    Segmentation is :func:`digits.vision.split_rows` (printed lines removed,
    rows, groups).  A group wider than :data:`SPLIT_WIDTH` row heights may
    hold several touching digits.  The group reader (`reader`, default the
    bundled :class:`digits.sequence.GroupReader`; False for none) reads it
    whole and says how many digits it holds; the group is then cut into that
    many pieces where the classifier is most confident (:func:`_split`), or,
    where no such cut exists, where the reader's digits begin
    (:func:`_reader_cuts`), and
    each digit is the reader's answer where it is sure, else the
    classifier's (:func:`_agree`).  Without a reader, or for a group too wide
    for it, the number of pieces is chosen by the classifier too: each way of
    cutting the group at the candidate seams of
    :func:`digits.vision.segment.cut_paths` into pieces of plausible size is
    scored by the mean log-probability of the pieces' best labels, and the
    best split wins over the whole group when it scores higher (a group
    narrower than :data:`WIDE` row heights may be one wide digit: it is split
    only when the model is unsure of it whole and sure of every piece).
    """
    from digits.vision.normalize import union

    rows = []
    for row in read_rows(predictor, picture, threshold=threshold, reader=reader):
        digits = [{**r.to_dict(), "box": list(s.box)} for s, r in row]
        number = "".join("?" if d["label"] is None else str(d["label"]) for d in digits)
        box = list(union([s.box for s, _ in row]))
        rows.append({"number": number, "complete": "?" not in number, "box": box, "digits": digits})
    if not rows:
        return Reading(number=None, complete=False, reason="no digits found", rows=[], digits=[])
    return Reading(number="\n".join(r["number"] for r in rows), complete=all(r["complete"] for r in rows),
                   rows=rows, digits=[d for r in rows for d in r["digits"]])


def read_rows(predictor: ImagePredictor, picture, *, threshold: float | None = None,
              reader=None) -> list[list[tuple[object, Prediction]]]:
    """What :func:`read_number` reads, before it is formatted: per row, each digit's segment and prediction.

    Each :class:`Prediction` keeps the 28×28 ``image`` the classifier saw
    (what ``benchmarks/paper_crops.py`` trains on).  Rows without a digit are left out.
    """
    from digits.vision import NO_INK
    from digits.vision.segment import split_rows

    threshold = _threshold(predictor, threshold)
    if reader is None:
        from digits.sequence import load_group_reader

        reader = load_group_reader()
    rows = []
    for row in split_rows(picture):
        height = float(np.median([s.box[3] - s.box[1] for s in row]))
        wide = [s for s in row if s.box[2] - s.box[0] > SPLIT_WIDTH * height]
        readings = reader.read([s.ink for s in wide]) if reader and wide else [None] * len(wide)
        read_in = {id(s): r for s, r in zip(wide, readings)}
        pieces: list[tuple[object, object]] = []  # (segment, what the group reader read there, or None)
        for segment in row:
            reading = read_in.get(id(segment))
            if id(segment) not in read_in:
                pieces.append((segment, None))
            elif reading is None:  # no reader, or too wide for it: cut where the classifier is surest
                pieces += [(piece, None) for piece in _split(predictor, segment, height)]
            elif len(reading) >= 2:
                # The reader says how many digits there are; the classifier says where to cut, or where
                # no such cut exists (a narrow 1 leaning into its neighbour), the reader says that too.
                cuts = _split(predictor, segment, height, count=len(reading))
                if len(cuts) != len(reading):
                    cuts = _reader_cuts(segment, reading, height) or cuts
                pieces += list(zip(cuts, reading)) if len(cuts) == len(reading) else [(c, None) for c in cuts]
            else:  # one digit, only wide: the classifier reads whole digits best
                pieces.append((segment, None))
        segments = [s for s, _ in pieces]
        results = recognize(predictor, [_framed(s) for s in segments], threshold=threshold)
        results = [r if read is None else _agree(r, read, threshold) for r, (_, read) in zip(results, pieces)]
        results = _second_opinion(reader, segments, results, [read for _, read in pieces], threshold)
        # What normalization finds no ink in (a faint remnant of a printed line) is no digit.
        kept = [(s, r) for s, r in zip(segments, results) if r.reason != NO_INK]
        if kept:
            rows.append(kept)
    return rows


def _agree(result: Prediction, read, threshold: float) -> Prediction:
    """One digit of a group that the group reader read: the reader's answer when it is sure, else the classifier's.

    The reader saw the digit among its neighbours, while the classifier sees
    only the piece a cut left, which is often confidently wrong (a bad cut
    leaves a fragment that looks like some digit); but where the reader is
    unsure, a sure classifier is usually right.  (Chosen on renders of
    validation digits: BENCHMARKS.md, "Reading real paper".)
    """
    from digits.vision import NO_INK

    if result.reason == NO_INK or (read.confidence < threshold and result.label is not None):
        return result
    confidence = round(read.confidence, 6)
    probabilities = [round(v, 6) for v in read.probabilities]
    if confidence < threshold:
        reason = f"unsure: best guess {read.label} at {confidence:.2f}, below the threshold {threshold:.2f}"
        return Prediction(None, confidence, probabilities, reason, result.image)
    return Prediction(read.label, confidence, probabilities, None, result.image)


def _second_opinion(reader, segments, results: list[Prediction], reads: list, threshold: float) -> list[Prediction]:
    """Digits the classifier alone was unsure of, read again by the group reader: its answer where it
    is sure that the segment holds one digit, and which (chosen on renders of validation digits)."""
    from digits.vision import NO_INK

    unsure = [i for i, (r, read) in enumerate(zip(results, reads))
              if reader and read is None and r.label is None and r.reason != NO_INK]
    if not unsure:
        return results
    results = list(results)
    for i, reading in zip(unsure, reader.read([segments[i].ink for i in unsure])):
        if reading is not None and len(reading) == 1 and reading[0].confidence >= threshold:
            results[i] = _agree(results[i], reading[0], threshold)
    return results


def _reader_cuts(segment, reading, height: float) -> list | None:
    """`segment` cut where the group reader's digits begin (None when a piece would hold no ink).

    CTC fires each digit near its left edge (``benchmarks/reader_columns.py``:
    the middle of the columns it fires at lies at 0.08 of the digit's width,
    83% of them within 0.2 of that), so the cut before each digit but the first is there, moved
    to the nearest least-ink seam of :func:`digits.vision.segment.cut_paths`
    within :data:`SNAP` row heights.
    """
    from digits.vision.segment import cut, cut_paths

    paths = cut_paths(segment, height)
    centres = np.array([float(p.mean()) for p in paths])
    edges: list = [None]
    for digit in reading[1:]:
        x = (digit.columns[0] + digit.columns[1]) / 2
        distance = np.abs(centres - x) if paths else np.array([np.inf])
        if distance.min() <= SNAP * height:
            edges.append(paths[int(distance.argmin())])
        else:
            edges.append(np.full(segment.ink.shape[0], int(round(x)), np.intp))
    edges.append(None)
    pieces = [cut(segment, left, right) for left, right in zip(edges, edges[1:])]
    return None if any(p is None for p in pieces) else pieces


def _size_prior(box, height: float) -> float:
    """A log-prior on a piece's size: digits in a row are rarely wider than 0.8 row heights or
    shorter than 0.75.

    The model reads nearly anything framed to MNIST's 20 pixels with
    confidence, so confidence alone cannot tell a digit from the fragment a
    bad cut leaves, nor a 1 on its own from a 1 inside its neighbour's
    piece; their sizes can.
    """
    w, h = (box[2] - box[0]) / height, (box[3] - box[1]) / height
    return -0.5 * (max(0.0, (w - 0.8) / 0.2) ** 2 + max(0.0, (0.75 - h) / 0.1) ** 2)


def _framed(segment) -> np.ndarray:
    """A segment's ink as the 28×28 MNIST image (already clean ink: only crop, scale and centre)."""
    from digits.vision.normalize import frame

    return frame(segment.ink)


def _split(predictor: ImagePredictor, segment, height: float, count: int | None = None) -> list:
    """`segment` as it is, or cut into the pieces the model reads most confidently (see :func:`read_number`).

    With `count`, the best way of cutting it into exactly that many pieces
    (or the segment whole when there is none).
    """
    from digits.vision.segment import cut, cut_paths

    width = segment.box[2] - segment.box[0]
    if width <= SPLIT_WIDTH * height and count is None:
        return [segment]
    paths = cut_paths(segment, height)
    edges = [None, *paths, None]
    xs = [0.0, *(float(p.mean()) for p in paths), float(segment.ink.shape[1])]
    pieces: dict[tuple[int, int], object] = {}
    for i in range(len(edges)):
        for j in range(i + 1, len(edges)):
            if not PIECE_WIDTH[0] * height <= xs[j] - xs[i] <= PIECE_WIDTH[1] * height:
                continue
            piece = cut(segment, edges[i], edges[j])
            if piece is not None and piece.box[3] - piece.box[1] >= PIECE_HEIGHT * height:
                pieces[(i, j)] = piece
    if not pieces:
        return [segment]
    keys = list(pieces)
    p = predictor.probabilities(np.stack([_framed(segment)] + [_framed(pieces[k]) for k in keys]))
    confidence = np.log(np.clip(p.max(axis=1), 1e-9, 1.0))
    whole = float(confidence[0])
    piece_confidence = {k: float(c) for k, c in zip(keys, confidence[1:])}
    piece_score = {k: c + _size_prior(pieces[k].box, height) for k, c in piece_confidence.items()}
    # best[k][j]: the best total score of cutting edges 0..j into k pieces, and the path there.
    last = len(edges) - 1
    best: list[dict[int, tuple[float, list[tuple[int, int]]]]] = [{0: (0.0, [])}]
    for k in range(1, MAX_PIECES + 1):
        step: dict[int, tuple[float, list[tuple[int, int]]]] = {}
        for (i, j), s in piece_score.items():
            if i in best[k - 1]:
                total, path = best[k - 1][i]
                if j not in step or total + s > step[j][0]:
                    step[j] = (total + s, path + [(i, j)])
        best.append(step)
    if count is not None:
        return [pieces[key] for key in best[count][last][1]] if count < len(best) and last in best[count] \
            else [segment]
    splits = [(total / k, path) for k, step in enumerate(best) if k >= 2 and last in step
              for total, path in [step[last]]]
    if not splits:
        return [segment]
    mean, path = max(splits, key=lambda s: s[0])
    if width <= WIDE * height:
        # Could be one wide digit: split only what the model cannot read whole, into digits it reads well.
        sure = np.log(predictor.threshold)
        if whole >= sure or min(piece_confidence[key] for key in path) < sure:
            return [segment]
    if width > SEVERAL * height:
        whole += _size_prior(segment.box, height)  # far too wide for one digit
    return [pieces[key] for key in path] if mean > whole else [segment]


# ---------------------------------------------------------------------------
# Files and folders: what `digits predict FILE_OR_DIR ...` and `digits read` read.

IMAGE_SUFFIXES = frozenset({
    ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".webp",
    ".pbm", ".pgm", ".ppm", ".pnm",
})
"""The files taken from a folder (case-insensitive); other files there are skipped.
A file named on the command line is always tried, whatever its name."""

BATCH_FILES = 256
"""Files decoded and classified together: large folders stream through in batches."""
BATCH_PIXELS = 64_000_000
"""...and fewer when the pictures are big (phone photos), so memory stays bounded."""


def _natural_key(path: Path) -> list:
    """Sort "digit2.png" before "digit10.png"."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower())
            for part in re.split(r"(\d+)", path.name)]


def image_paths(paths: Iterable[str | os.PathLike]) -> Iterator[tuple[Path, DigitsError | None]]:
    """Expand files and folders into the image files to read, in order.

    A folder gives its image files (by suffix, see :data:`IMAGE_SUFFIXES`;
    hidden files and subfolders skipped) in natural order; a folder with none,
    or one that cannot be listed, gives ``(folder, DigitsError)``.  Anything
    else is passed on as it is: :func:`digits.vision.load_image` reports a
    missing, empty or broken file with one line naming it.
    """
    for raw in paths:
        path = Path(raw)
        try:
            folder = path.is_dir()
        except OSError:  # e.g. a folder above it without search permission: load_image names the cause
            folder = False
        if not folder:
            yield path, None
            continue
        try:
            found = sorted((entry for entry in path.iterdir()
                            if entry.suffix.lower() in IMAGE_SUFFIXES and not entry.name.startswith(".")
                            and entry.is_file()), key=_natural_key)
        except OSError as e:
            yield path, DigitsError(f"{path}: cannot list the folder: {e.strerror or e}")
            continue
        if not found:
            suffixes = ", ".join(sorted(s for s in IMAGE_SUFFIXES if s in (".png", ".jpg", ".jpeg", ".webp")))
            yield path, DigitsError(f"{path}: no image files in this folder (looked for {suffixes}, ...)")
        for entry in found:
            yield entry, None


def recognize_files(
    predictor: ImagePredictor,
    paths: Iterable[str | os.PathLike],
    *,
    threshold: float | None = None,
    batch_files: int = BATCH_FILES,
    batch_pixels: int = BATCH_PIXELS,
) -> Iterator[tuple[Path, Prediction | DigitsError]]:
    """Read and recognize image files and folders, yielding ``(path, result)`` in order.

    ``result`` is a :class:`Prediction` (possibly abstaining), or the
    DigitsError that says why that path could not be read; one bad file
    never stops the others.  Pictures are decoded and classified in batches
    of up to `batch_files` files or `batch_pixels` pixels, so a folder of any
    size needs only one batch in memory.
    """
    from digits.vision import load_image

    threshold = _threshold(predictor, threshold)
    pending: list[tuple[Path, object]] = []
    count = pixels = 0

    def flush():
        pictures = [item for _, item in pending if not isinstance(item, DigitsError)]
        results = iter(recognize(predictor, pictures, threshold=threshold) if pictures else ())
        for path, item in pending:
            yield path, item if isinstance(item, DigitsError) else next(results)
        pending.clear()

    for path, error in image_paths(paths):
        if error is None:
            try:
                picture = load_image(path)
            except DigitsError as e:
                error = e
        if error is not None:
            pending.append((path, error))
            continue
        pending.append((path, picture))
        count += 1
        pixels += picture.width * picture.height
        if count >= batch_files or pixels >= batch_pixels:
            yield from flush()
            count = pixels = 0
    yield from flush()
