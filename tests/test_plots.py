"""The figures: each renders headless, has its fixed size, is not blank, and draws digits sharp."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from digits import plots


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)


def assert_figure(png: bytes, size: tuple[int, int]) -> None:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert plots.png_size(png) == size
    assert Image.open(io.BytesIO(png)).size == size
    assert pixels(png).std() > 10, "the figure is blank"


@pytest.fixture(scope="module")
def fake():
    """Digit-like images, labels and a model's probabilities: 90% right, some confidently wrong."""
    rng = np.random.default_rng(0)
    n = 200
    images = np.zeros((n, 28, 28), np.uint8)
    images[:, 6:22, 10:18] = rng.integers(100, 256, (n, 16, 8), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    predicted = labels.copy()
    wrong = rng.random(n) < 0.1
    predicted[wrong] = (labels[wrong] + rng.integers(1, 10, wrong.sum())) % 10
    probabilities = rng.random((n, 10)) * 0.1
    probabilities[np.arange(n), predicted] += rng.uniform(0.5, 5, n)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return images, labels, probabilities


HISTORY = {
    "accuracy": [0.90, 0.95, 0.97],
    "loss": [0.35, 0.17, 0.10],
    "val_accuracy": [0.94, 0.96, 0.965],
    "val_loss": [0.20, 0.14, 0.12],
}


def test_samples_figure(fake):
    images, labels, _ = fake
    assert_figure(plots.samples_png(images, labels), (906, 410))


def test_curves_figure():
    assert_figure(plots.curves_png(HISTORY), (1000, 400))


def test_curves_without_history_still_draws_labelled_axes():
    assert_figure(plots.curves_png({}), (1000, 400))


def test_confusion_figure(fake):
    _, labels, probabilities = fake
    confusion = np.zeros((10, 10), np.int64)
    np.add.at(confusion, (labels, probabilities.argmax(1)), 1)
    assert_figure(plots.confusion_png(confusion), (1020, 600))


def test_per_class_figure():
    rows = [{"class": str(d), "precision": 0.95 + d / 500, "recall": 0.97 - d / 400, "f1": 0.96,
             "support": 100} for d in range(10)]
    assert_figure(plots.per_class_png(rows), (1000, 420))


def test_mistakes_figure(fake):
    images, labels, probabilities = fake
    assert (probabilities.argmax(1) != labels).sum() >= 16
    png = plots.mistakes_png(images, labels, probabilities, limit=16)
    assert_figure(png, (888, 344))  # 2 rows of 8


def test_mistakes_without_any():
    images = np.zeros((3, 28, 28), np.uint8)
    labels = np.array([0, 1, 2])
    assert_figure(plots.mistakes_png(images, labels, np.eye(10)[labels]), (800, 120))


def test_most_confident_mistakes_come_first():
    labels = np.array([0, 1, 2, 3])
    p = np.full((4, 10), 0.01)
    p[0, 0] = 0.9  # right
    p[1, 5] = 0.6  # wrong, 0.6
    p[2, 7] = 0.95  # wrong, 0.95
    p[3, 3] = 0.2  # right
    assert plots.most_confident_mistakes(labels, p).tolist() == [2, 1]


def test_predictions_figure(fake):
    images, labels, probabilities = fake
    assert_figure(plots.predictions_png(images, labels, probabilities), (1000, 562))


def test_comparison_figure():
    other = {k: [v * 0.98 for v in values] for k, values in HISTORY.items()}
    png = plots.comparison_curves_png({"mlp": HISTORY, "cnn": other, "no-history": {}})
    assert_figure(png, (1000, 760))


def test_long_class_names_do_not_break_the_figures(fake):
    images, labels, probabilities = fake
    names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    assert pixels(plots.samples_png(images, labels, names)).std() > 10
    assert pixels(plots.mistakes_png(images, labels, probabilities, names)).std() > 10
    assert pixels(plots.predictions_png(images, labels, probabilities, names)).std() > 10


def test_digits_are_scaled_exactly_without_blur():
    """Each digit pixel becomes a SCALE×SCALE block of the same grey: nearest, integer scale."""
    checker = ((np.indices((28, 28)).sum(axis=0) % 2) * 255).astype(np.uint8)
    ramp = np.tile(np.arange(0, 252, 9, dtype=np.uint8), (28, 1))
    images = np.stack([checker, ramp])
    png = plots.samples_png(images, np.array([1, 2]), rows=1, cols=2)
    grey = pixels(png)
    s, top = plots.SCALE, plots.TITLE_PX + (plots.PAD + plots.LABEL_BAND) * plots.SCALE
    for k, image in enumerate(images):
        left = (plots.PAD + k * (28 + plots.PAD)) * s
        tile = grey[top: top + 28 * s, left: left + 28 * s]
        blocks = tile.reshape(28, s, 28, s)
        assert (blocks.max(axis=(1, 3)) == blocks.min(axis=(1, 3))).all(), "a digit pixel is smeared"
        # the grey colormap's 256-entry table may round a level by one
        assert np.abs(blocks[:, 0, :, 0] - image).max() <= 1


def test_style_does_not_leak_into_matplotlib():
    import matplotlib

    before = dict(matplotlib.rcParams)
    plots.curves_png(HISTORY)
    assert dict(matplotlib.rcParams) == before


def test_montage_defaults_are_unchanged():
    images = np.full((3, 28, 28), 7, np.uint8)
    out = plots.montage(images, cols=2)
    assert out.shape == (2 * 30 + 2, 2 * 30 + 2)
    assert out[0, 0] == 0 and out[2, 2] == 7 and out[32:, 32:].max() == 0
    banded = plots.montage(images, cols=3, top=5, fill=255)
    assert banded.shape == (5 + 28 + 2 + 2, 3 * 30 + 2)
    assert banded[2, 2] == 255 and banded[7, 2] == 7
