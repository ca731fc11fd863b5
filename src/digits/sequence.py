"""Reading a group of touching digits at once: a small CRNN trained with CTC on synthetic groups.

A classifier of single digits is confident on almost anything framed like
a digit, two merged digits included, so cutting a group of touching digits
by its confidence misses cuts and makes extra ones.  This module reads the
group whole instead, as Goodfellow et al. read house numbers: a
convolutional network turns the group's ink (scaled to MNIST's 20-pixel
digit height) into one column of features every 4 pixels, two 1-D
convolutions give each column the context of its neighbours, and each
column says which digit (or none, CTC's blank) it sees.  Greedy CTC
decoding (best class per column, repeats merged, blanks dropped) gives the
digits, each with its confidence and the columns it was read from.

The model is trained on groups made from MNIST's training digits by
:func:`synthetic_groups` (1 to 6 digits, touching, overlapping or just
apart, each scaled, turned and shifted a little, one pen per group), so it
never sees the test digits the benchmarks render.  The bundled reader
(``digits/bundled/group_reader.keras``) was made by the defaults::

    KERAS_BACKEND=tensorflow python -m digits.sequence --out src/digits/bundled/group_reader.keras

:func:`digits.inference.read_number` calls it on every group wider than
one digit; the bundled model card has its recipe and measurements.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import groupby
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from digits.datasets.arrays import MNIST_SIDE
from digits.errors import DigitsError

DIGIT_HEIGHT = 20
"""A group's ink is scaled to this height: MNIST's digits are 20 pixels tall in their 28."""
MARGIN = 4
"""Paper on every side of the scaled ink (MNIST's 28 = 20 + 2 x 4)."""
STRIDE = 4
"""Input columns per output column (two 2x2 poolings)."""
WIDTH_STEP = 32
"""Inputs are padded on the right to a multiple of this width, so few shapes are compiled."""
MAX_WIDTH = 640
"""The widest input read (about 30 digits); a wider group is left to the classifier's cuts."""
TRAIN_WIDTH = 128
"""Training groups are padded to this width (99% of 6-digit groups fit; wider ones are drawn again)."""
BLANK = 10
"""CTC's blank is the last class; digits are classes 0..9."""

BUNDLED = Path(__file__).parent / "bundled" / "group_reader.keras"


def group_input(ink: np.ndarray) -> tuple[np.ndarray, float, float]:
    """A group's ink (0 paper .. 1 ink, any size) as the reader's input: 28 rows, width a multiple of 32.

    The ink is cropped to itself, scaled (keeping its proportions) to
    :data:`DIGIT_HEIGHT` pixels tall, and put on black with :data:`MARGIN`
    pixels of paper around it.  Returns the input and how its columns map
    back to the ink's: ink column = ``offset + input column * scale``.
    Raises DigitsError for a group with no ink or one too wide to read.
    """
    ys, xs = np.nonzero(ink > 0.05)
    if ys.size == 0:
        raise DigitsError("the group holds no ink")
    crop = np.asarray(ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], np.float32)
    h, w = crop.shape
    width = max(1, int(round(w * DIGIT_HEIGHT / h)))
    padded = -(-(width + 2 * MARGIN) // WIDTH_STEP) * WIDTH_STEP
    if padded > MAX_WIDTH:
        raise DigitsError(f"the group is too wide to read at once ({width} columns at digit height)")
    scaled = Image.fromarray(crop).resize((width, DIGIT_HEIGHT), Image.Resampling.BILINEAR)
    out = np.zeros((MNIST_SIDE, padded), np.float32)
    out[MARGIN : MARGIN + DIGIT_HEIGHT, MARGIN : MARGIN + width] = np.clip(np.asarray(scaled), 0.0, 1.0)
    scale = w / width
    return out, float(xs.min() - MARGIN * scale), float(scale)


# ---------------------------------------------------------------------------
# Synthetic groups from MNIST digits


def crop_to_ink(digit: np.ndarray) -> np.ndarray:
    """A digit in [0, 1] cut to the rows and columns with ink (above 0.1); it must have some."""
    ys, xs = np.nonzero(digit > 0.1)
    return digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def synthetic_group(digits: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """MNIST digits (28x28, 0..255 or 0..1) written side by side as one group's ink, at 40 pixels a digit.

    Each digit is cropped to its ink, scaled to 36..44 pixels tall, turned
    up to 8 degrees and shifted up or down by up to a tenth of its height;
    neighbours overlap by up to a fifth of the height, touch, or stand up to
    a third apart (one group in five); then one pen for all (thinner, as
    drawn, thicker, much thicker).
    """
    base = 40
    apart = rng.random() < 0.2
    pieces, x = [], 0
    for d in digits:
        d = np.asarray(d, np.float32)
        d = d / 255.0 if d.max() > 1.0 else d
        d = crop_to_ink(d)
        h = int(round(base * rng.uniform(0.9, 1.1)))
        w = max(1, int(round(d.shape[1] * h / d.shape[0])))
        img = Image.fromarray(np.rint(d * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
        img = img.rotate(float(rng.uniform(-8, 8)), Image.Resampling.BILINEAR, expand=True, fillcolor=0)
        a = np.asarray(img, np.float32) / 255.0
        y = int(round(rng.uniform(-0.1, 0.1) * base))
        pieces.append((x, y, a))
        gap = rng.uniform(0.05, 0.35) if apart else rng.uniform(-0.2, 0.03)
        x += a.shape[1] + int(round(gap * base))
    top = min(y for _, y, _ in pieces)
    height = max(y - top + a.shape[0] for _, y, a in pieces)
    width = max(x0 + a.shape[1] for x0, _, a in pieces)
    left = min(0, min(x0 for x0, _, _ in pieces))
    canvas = np.zeros((height, width - left), np.float32)
    for x0, y, a in pieces:
        region = canvas[y - top : y - top + a.shape[0], x0 - left : x0 - left + a.shape[1]]
        np.maximum(region, a, out=region)
    pen = int(rng.integers(0, 4))
    if pen != 1:
        img = Image.fromarray(np.rint(canvas * 255).astype(np.uint8))
        img = img.filter(ImageFilter.MinFilter(3) if pen == 0 else ImageFilter.MaxFilter(3 if pen == 2 else 5))
        canvas = np.asarray(img, np.float32) / 255.0
    return canvas


GROUP_SIZES = (1, 2, 3, 4, 5, 6)
GROUP_WEIGHTS = (0.2, 0.24, 0.2, 0.16, 0.1, 0.1)
"""How many digits a synthetic group holds: mostly pairs and triples, as touching digits come, and
one in five a single digit (a wide digit alone is one, not two)."""


def synthetic_groups(x: np.ndarray, y: np.ndarray, n: int, rng: np.random.Generator,
                     width: int = TRAIN_WIDTH) -> tuple[np.ndarray, np.ndarray]:
    """`n` synthetic groups of the digits `x` (labels `y`): inputs (n, 28, width, 1) and labels (n, 6).

    Labels are padded with -1.  A group too wide for `width` is drawn again.
    """
    inputs = np.zeros((n, MNIST_SIDE, width, 1), np.float32)
    labels = np.full((n, max(GROUP_SIZES)), -1, np.int32)
    i = 0
    while i < n:
        k = int(rng.choice(GROUP_SIZES, p=GROUP_WEIGHTS))
        idx = rng.integers(0, len(x), k)
        try:
            arr, _, _ = group_input(synthetic_group([x[j] for j in idx], rng))
        except DigitsError:
            continue
        if arr.shape[1] > width:
            continue
        inputs[i, :, : arr.shape[1], 0] = arr
        labels[i, :k] = y[idx]
        i += 1
    return inputs, labels


# ---------------------------------------------------------------------------
# The model


def build_reader(filters: int = 32):
    """The CRNN: 28 x any width x 1 in, one row of 11 logits (digits, then blank) per 4 columns out.

    `filters` is the first convolution's width; the others are 2, 4 and 8 times it.
    """
    import keras
    from keras import layers

    inputs = keras.Input((MNIST_SIDE, None, 1))
    x = layers.Conv2D(filters, 3, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(2 * filters, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(4 * filters, 3, padding="same", activation="relu")(x)  # (7, W/4, 4 filters)
    x = layers.Permute((2, 1, 3))(x)
    x = layers.Reshape((-1, 7 * 4 * filters))(x)  # one feature vector per 4 input columns
    x = layers.Dense(8 * filters, activation="relu")(x)
    x = layers.Dropout(0.2)(x)
    x = layers.Conv1D(8 * filters, 5, padding="same", activation="relu")(x)
    x = layers.Conv1D(8 * filters, 5, padding="same", activation="relu")(x)
    outputs = layers.Dense(BLANK + 1)(x)
    return keras.Model(inputs, outputs, name="group_reader")


def ctc_loss(labels, logits):
    """Keras's CTC loss for labels padded with -1 (blank is :data:`BLANK`)."""
    from keras import ops

    labels = ops.cast(labels, "int32")
    label_length = ops.sum(ops.cast(labels >= 0, "int32"), axis=1)
    steps = ops.shape(logits)[1]
    logit_length = ops.full((ops.shape(logits)[0],), steps, dtype="int32")
    return ops.ctc_loss(ops.where(labels >= 0, labels, 0), logits, label_length, logit_length, mask_index=BLANK)


@dataclass(frozen=True)
class ReadDigit:
    """One digit the reader found: its label, its confidence and the columns it was read from
    (the input's in :func:`decode`, the group's ink's in :meth:`GroupReader.read`)."""

    label: int
    confidence: float
    columns: tuple[int, int]
    probabilities: tuple[float, ...]
    """The ten digits' probabilities at the column most sure of this digit (blank left out)."""


def decode(logits: np.ndarray, width: int) -> list[ReadDigit]:
    """Greedy CTC decoding of one group's logits (steps, 11), over the first `width` input columns.

    Each run of columns with the same best class that is not blank is one
    digit; its confidence is its label's probability at the run's surest
    column (CTC fires a digit at one or two columns, and its edges blur into blank).
    """
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    steps = min(len(p), -(-width // STRIDE))
    best = p[:steps].argmax(axis=1)
    found: list[ReadDigit] = []
    for label, run in groupby(range(steps), key=lambda t: int(best[t])):
        if label == BLANK:
            continue
        t = list(run)
        sure = p[t, label]
        peak = p[t[int(sure.argmax())], :BLANK]
        found.append(ReadDigit(label, float(sure.max()), (t[0] * STRIDE, (t[-1] + 1) * STRIDE),
                               tuple(float(v) for v in peak / peak.sum())))
    return found


class GroupReader:
    """The bundled (or a given) CRNN, reading groups of touching digits."""

    def __init__(self, path: str | Path = BUNDLED):
        import keras

        path = Path(path)
        if not path.is_file():
            raise DigitsError(f"{path}: no group reader model there")
        self.path = path
        self.model = keras.saving.load_model(path, compile=False, safe_mode=True)

    def read(self, inks: list[np.ndarray]) -> list[list[ReadDigit] | None]:
        """Each group's digits left to right, their columns in the group's ink (None: no ink, or too wide)."""
        out: list[list[ReadDigit] | None] = [None] * len(inks)
        by_width: dict[int, list[tuple[int, np.ndarray, float, float]]] = {}
        for i, ink in enumerate(inks):
            try:
                arr, offset, scale = group_input(ink)
            except DigitsError:
                continue
            by_width.setdefault(arr.shape[1], []).append((i, arr, offset, scale))
        for width, items in by_width.items():
            logits = np.asarray(self.model(np.stack([arr for _, arr, _, _ in items])[..., None], training=False))
            for (i, _, offset, scale), row in zip(items, logits):
                out[i] = [replace(d, columns=(int(offset + d.columns[0] * scale), int(np.ceil(offset + d.columns[1] * scale))))
                          for d in decode(row, width)]
        return out


_loaded: dict[Path, GroupReader] = {}


def load_group_reader(path: str | Path | None = None) -> GroupReader:
    """The group reader at `path` (default: the bundled one), loaded once per process."""
    path = Path(path) if path is not None else BUNDLED
    if path not in _loaded:
        _loaded[path] = GroupReader(path)
    return _loaded[path]


# ---------------------------------------------------------------------------
# Training: python -m digits.sequence --out FILE


def exact_rate(model, inputs: np.ndarray, labels: np.ndarray) -> float:
    """The share of groups whose digits are all read, in order, and no others."""
    logits = np.asarray(model.predict(inputs, batch_size=256, verbose=0))
    right = 0
    for row, truth in zip(logits, labels):
        read = [d.label for d in decode(row, inputs.shape[2])]
        right += read == [int(t) for t in truth if t >= 0]
    return right / len(labels)


FINE_TUNE_RATE = 5e-4
"""Where the learning rate starts when training goes on from a saved reader (``--init``)."""


def train_reader(out: Path, *, groups: int = 32_000, epochs: int = 14, batch_size: int = 64,
                 seed: int = 0, data_dir: str | None = None, checkpoints: bool = False,
                 init: Path | None = None, validation: int = 3000, filters: int = 32) -> dict:
    """Train a group reader on synthetic groups of MNIST's training digits, validate, save to `out`.

    The last 5,000 training digits make the `validation` groups; the test set is not read.
    With `checkpoints`, the model is also saved after each epoch, beside `out`.  With `init`
    (a saved reader), training goes on from it, in its own shape: the learning rate decays
    from :data:`FINE_TUNE_RATE`, without the warm-up.  Otherwise a new reader is built with
    :func:`build_reader`'s `filters`.
    """
    import keras

    from digits.datasets import load_dataset
    from digits.errors import DigitsError

    for name, value, least in (("groups", groups, batch_size), ("epochs", epochs, 1), ("validation", validation, 1),
                               ("filters", filters, 1)):
        if value < least:
            raise DigitsError(f"train_reader: {name} must be at least {least}, got {value}")
    data = load_dataset("mnist", data_dir=data_dir, progress=False)
    x, y = data.x_train, data.y_train
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    x_fit, y_fit, x_val, y_val = x[:-5000], y[:-5000], x[-5000:], y[-5000:]
    started = time.perf_counter()
    val_inputs, val_labels = synthetic_groups(x_val, y_val, validation, rng)
    model = GroupReader(init).model if init is not None else build_reader(filters)
    steps = epochs * (groups // batch_size)
    if init is not None:
        schedule = keras.optimizers.schedules.CosineDecay(FINE_TUNE_RATE, steps)
        print({"epoch": 0, "val_exact": exact_rate(model, val_inputs, val_labels), "init": str(init)}, flush=True)
    else:
        schedule = keras.optimizers.schedules.CosineDecay(1e-3, steps, warmup_target=2e-3, warmup_steps=steps // 20)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=ctc_loss)
    history = []
    # Fresh groups every epoch, drawn in a thread while the previous epoch trains.
    seeds = rng.spawn(epochs)
    with ThreadPoolExecutor(1) as pool:
        upcoming = pool.submit(synthetic_groups, x_fit, y_fit, groups, seeds[0])
        for epoch in range(epochs):
            inputs, labels = upcoming.result()
            if epoch + 1 < epochs:
                upcoming = pool.submit(synthetic_groups, x_fit, y_fit, groups, seeds[epoch + 1])
            fit = model.fit(inputs, labels, batch_size=batch_size, epochs=1, verbose=2)
            rate = exact_rate(model, val_inputs, val_labels)
            history.append({"epoch": epoch + 1, "loss": float(fit.history["loss"][-1]), "val_exact": rate,
                            "seconds": round(time.perf_counter() - started, 1)})
            print(history[-1], flush=True)
            if checkpoints:
                model.save(out.with_name(f"{out.stem}-epoch{epoch + 1}{out.suffix}"))
    out.parent.mkdir(parents=True, exist_ok=True)
    inference_copy = GroupReader(init).model if init is not None else build_reader(filters)  # uncompiled
    inference_copy.set_weights(model.get_weights())
    inference_copy.save(out)  # uncompiled: the weights alone, a third of the size with Adam's state
    return {"history": history, "params": model.count_params()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the group reader (a CRNN with CTC) on synthetic groups.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--groups", type=int, default=32_000, help="synthetic groups per epoch")
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--filters", type=int, default=16, help="a new reader's first convolution width (default: 32, the bundled reader's)")
    parser.add_argument("--data-dir")
    parser.add_argument("--checkpoints", action="store_true", help="also save the model after each epoch")
    parser.add_argument("--init", type=Path, metavar="FILE",
                        help="go on training this saved reader (for example the bundled one) instead of a new one")
    args = parser.parse_args(argv)
    for flag, value in (("--groups", args.groups), ("--epochs", args.epochs), ("--filters", args.filters)):
        if value < 1:
            parser.error(f"argument {flag}: must be at least 1, got {value}")
    if args.init is not None and not args.init.is_file():
        parser.error(f"argument --init: {args.init}: no such file")
    print(train_reader(args.out, groups=args.groups, epochs=args.epochs, seed=args.seed, data_dir=args.data_dir,
                       checkpoints=args.checkpoints, init=args.init, filters=args.filters))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
