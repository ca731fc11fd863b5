"""Fixtures shared by the test suite (plain helper functions are in helpers.py).

Where the real MNIST files are and their images, read once per run; a writer
for tiny synthetic datasets in the standard IDX layout, so tests never need
the 11 MB originals unless they are about them; and one small trained run.
"""

from __future__ import annotations

import os

# One backend per test process (Keras fixes it at import): JAX, the default, unless the caller chose.
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from digits.datasets import Dataset, load_dataset, write_idx
from helpers import skip_or_fail

MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

TinyArrays = dict[str, np.ndarray]


def _holds_mnist(folder: Path) -> bool:
    return all((folder / n).is_file() or (folder / n.removesuffix(".gz")).is_file() for n in MNIST_FILES)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Folder with the four real MNIST IDX files: $DIGITS_DATA_DIR or ../shared/datasets/mnist.

    Session-scoped so it reads the environment before any test patches it.
    Missing data skips the test locally but fails it on CI, where a silent
    skip would hide that the real-data tests never ran.
    """
    configured = os.environ.get("DIGITS_DATA_DIR")
    if configured:
        folder = Path(configured).expanduser()
    else:
        folder = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist"
    if (folder / "mnist").is_dir():
        folder = folder / "mnist"
    if not _holds_mnist(folder):
        skip_or_fail(f"no MNIST IDX files in {folder}; set DIGITS_DATA_DIR to a folder that has them")
    return folder


@pytest.fixture(scope="session")
def mnist_data(mnist_dir) -> Dataset:
    """The real MNIST dataset, read once per test run; its arrays are read-only, as tests share them."""
    data = load_dataset("mnist", data_dir=mnist_dir, progress=False)
    for array in (data.x_train, data.y_train, data.x_test, data.y_test):
        array.flags.writeable = False
    return data


def _tiny_arrays(n_train: int = 50, n_test: int = 20, seed: int = 0) -> TinyArrays:
    """Random uint8 images and labels 0..9 shaped like MNIST."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


@pytest.fixture
def make_tiny_arrays() -> Callable[..., TinyArrays]:
    """Return ``make(n_train=50, n_test=20, seed=0)`` -> dict x_train, y_train, x_test, y_test."""
    return _tiny_arrays


@pytest.fixture
def write_tiny_idx() -> Callable[..., TinyArrays]:
    """Return ``write(folder, arrays=None, *, gzip=True, skip=())`` -> the arrays written.

    Writes the four standard IDX files (``.gz`` names if ``gzip``, else the
    uncompressed names), leaving out any file whose .gz name is in ``skip``.
    """

    def write(folder: Path, arrays: TinyArrays | None = None, *, gzip: bool = True, skip=()) -> TinyArrays:
        arrays = _tiny_arrays() if arrays is None else arrays
        folder.mkdir(parents=True, exist_ok=True)
        for name, key in zip(MNIST_FILES, ("x_train", "y_train", "x_test", "y_test")):
            if name not in skip:
                write_idx(folder / (name if gzip else name.removesuffix(".gz")), arrays[key])
        return arrays

    return write


@pytest.fixture
def tiny_mnist_dir(tmp_path: Path, write_tiny_idx) -> Path:
    """A folder holding a 50-train / 20-test MNIST look-alike in IDX .gz files."""
    folder = tmp_path / "tiny-mnist"
    write_tiny_idx(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_mlp_run(tmp_path_factory, mnist_dir):
    """One small trained run (mlp, 3,000 images, 2 epochs, seed 1) shared by the tests that need a model.

    Tests that write into a run directory copy it first (see test_export.py).
    """
    from digits.training import train

    return train(model="mlp", limit=3000, epochs=2, seed=1, out=tmp_path_factory.mktemp("tiny") / "mlp",
                 data_dir=mnist_dir, verbose=0)
