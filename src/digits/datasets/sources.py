"""Where the digit datasets come from: a local folder, the cache, or a mirror.

:func:`load_dataset` tries, in order:

1. the ``data_dir`` argument, else 2. the ``DIGITS_DATA_DIR`` environment
   variable: a folder with the four IDX files (``.gz`` or uncompressed), a
   folder with a subfolder named after the dataset that holds them, or a
   Keras-style ``.npz`` (the file, or a folder holding ``<name>.npz``).
   Such a copy is the user's own, so it is checked for structure only, never
   against the official md5s (a faithful re-encoding must still load).
3. the cache, ``<cache_dir>/<name>/``, whose files were md5-verified when
   they were downloaded; else
4. a download from the dataset's mirrors into the cache.

Downloads stream into a hidden temporary file beside the final name while
hashing (:func:`digits.files.atomic_file`); only a complete response with
the official md5 is renamed into place, and the temporary is removed on
every failure, so a later run never trusts a partial or corrupt file.
``$DIGITS_MIRRORS`` (base URLs separated by commas or spaces; ``{name}``
expands to the dataset name) replaces the registry's mirrors, e.g. for a
local mirror or tests.

This module must not import Keras: it runs before the backend is chosen.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from digits import files
from digits.datasets.arrays import MNIST_SIDE
from digits.datasets.idx import read_idx
from digits.errors import DigitsError

DATA_DIR_ENV = "DIGITS_DATA_DIR"
CACHE_DIR_ENV = "DIGITS_CACHE_DIR"
MIRRORS_ENV = "DIGITS_MIRRORS"

# The four files every MNIST-style dataset ships, in Dataset field order:
# train images, train labels, test images, test labels.
STANDARD_FILES: tuple[str, str, str, str] = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

DOWNLOAD_TIMEOUT_S = 30.0
USER_AGENT = "digits-dataset-loader (python urllib)"
_CHUNK = 1 << 16
DATA_DIR_HINT = "--data-dir/DIGITS_DATA_DIR"


@dataclass(frozen=True)
class DatasetSpec:
    """Registry entry: what a dataset's files are called, their md5s, where to get them."""

    name: str
    md5: Mapping[str, str]  # file name -> official md5 of the .gz file
    mirrors: tuple[str, ...]  # base URLs; a file's URL is base + file name
    class_names: tuple[str, ...]
    files: tuple[str, str, str, str] = STANDARD_FILES


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A loaded dataset: uint8 images (N, 28, 28) and uint8 labels (N,) per split.

    ``eq=False`` because comparing numpy arrays with ``==`` has no single
    truth value; the short ``repr`` keeps 47 MB of pixels out of logs.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={len(self.x_train)}, test={len(self.x_test)}, "
            f"source={self.source!r})"
        )


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="mnist",
            md5={
                "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
            },
            mirrors=(
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
                "http://yann.lecun.com/exdb/mnist/",
            ),
            class_names=tuple(str(d) for d in range(10)),
        ),
        DatasetSpec(
            name="fashion-mnist",
            md5={
                "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
            },
            mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
            class_names=(
                "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
            ),
        ),
        DatasetSpec(
            name="kmnist",
            md5={
                "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
                "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
                "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
                "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
            },
            mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
            class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        ),
    )
}


def default_cache_dir() -> Path:
    """``$DIGITS_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/digits``, else ``~/.cache/digits``."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():  # the XDG spec: a relative value is to be ignored
        return Path(xdg) / "digits"
    return Path.home() / ".cache" / "digits"


def load_dataset(
    name: str = "mnist",
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    progress: bool = True,
) -> Dataset:
    """Load ``name`` from ``data_dir``, ``$DIGITS_DATA_DIR``, the cache, or a mirror.

    An explicit data dir is authoritative: if it is incomplete this raises
    rather than quietly downloading something else.
    """
    spec = get_spec(name)
    local = os.fspath(data_dir) if data_dir is not None else ""
    local = local or os.environ.get(DATA_DIR_ENV, "")
    if local:
        root = Path(local).expanduser()
        try:
            return _load_local(spec, root)
        except OSError as e:  # pathlib's is_file and is_dir raise for a folder without search permission
            raise DigitsError(f"{e.filename or root}: cannot read ({e.strerror or e})") from None

    folder = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / spec.name
    missing = [f for f in spec.files if not (folder / f).is_file()]
    source = str(folder)
    if missing:
        if not download:
            raise DigitsError(
                f"no local copy of {spec.name}: {folder} lacks {', '.join(missing)}; "
                f"put the four IDX files there, point {DATA_DIR_HINT} at a folder that has them, "
                "or allow a download"
            )
        used = download_files(spec, folder, missing, progress=progress)
        source = f"{folder} (downloaded from {', '.join(used)})"
    try:
        return _dataset_from_idx(spec, [folder / f for f in spec.files], source)
    except DigitsError as exc:
        # Verified when written, so this is disk damage or a hand-placed file.
        raise DigitsError(f"{exc}; delete {folder} to download {spec.name} again") from None


def get_spec(name: str) -> DatasetSpec:
    """Look up a registry entry; ``fashion_mnist`` and ``MNIST`` are accepted too."""
    key = name.strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise DigitsError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[key]


# --------------------------------------------------------------------------
# Local sources


def _load_local(spec: DatasetSpec, root: Path) -> Dataset:
    """Load from a user-supplied folder or .npz; structure-checked, not md5-checked."""
    if root.is_file():
        if root.suffix == ".npz":
            return _load_npz(spec, root)
        raise DigitsError(f"{root}: expected a folder with the four IDX files or a .npz file")
    if not root.is_dir():
        raise DigitsError(
            f"data dir {root} does not exist; point {DATA_DIR_HINT} at a folder with the {spec.name} files"
        )

    if (root / spec.name).is_dir():
        root = root / spec.name
    found = {name: _idx_file(root, name) for name in spec.files}
    if all(found.values()):
        _refuse_other_dataset_folder(spec, root)
        return _dataset_from_idx(spec, [found[n] for n in spec.files], str(root))
    npz = root / f"{spec.name}.npz"
    if npz.is_file():
        return _load_npz(spec, npz)

    missing = [name for name, path in found.items() if path is None]
    raise DigitsError(
        f"no local copy of {spec.name}: {root} lacks {', '.join(missing)}; "
        f"put the four IDX files there (.gz or uncompressed), point {DATA_DIR_HINT} at a folder "
        "that has them, or unset both to download into the cache"
    )


def _idx_file(folder: Path, gz_name: str) -> Path | None:
    """The file for ``gz_name`` in ``folder``: uncompressed first (faster to read), else .gz."""
    for candidate in (folder / gz_name.removesuffix(".gz"), folder / gz_name):
        if candidate.is_file():
            return candidate
    return None


def _refuse_other_dataset_folder(spec: DatasetSpec, folder: Path) -> None:
    """Stop ``DIGITS_DATA_DIR=.../mnist`` from being loaded as fashion-mnist.

    All three datasets use the same four file names, so the folder name is
    the only hint left that a folder holds a different dataset.
    """
    other = folder.name.lower()
    if other in DATASETS and other != spec.name:
        raise DigitsError(
            f"{folder} holds {other}, not {spec.name}; point {DATA_DIR_HINT} at a {spec.name} folder "
            f"or at a parent folder with a {spec.name}/ subfolder"
        )


def _load_npz(spec: DatasetSpec, path: Path) -> Dataset:
    """Load a Keras-style .npz with x_train, y_train, x_test, y_test."""
    try:
        # Our own file handle: np.load leaks its handle when the zip is corrupt.
        with open(path, "rb") as handle:
            npz = np.load(handle, allow_pickle=False)
            if not isinstance(npz, Mapping):  # a plain .npy renamed: one bare array
                raise ValueError("holds a single array")
            missing = [key for key in NPZ_KEYS if key not in npz.files]
            if missing:
                raise DigitsError(
                    f"{path}: lacks arrays {', '.join(missing)} (needs {', '.join(NPZ_KEYS)})"
                )
            arrays = [npz[key] for key in NPZ_KEYS]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DigitsError(f"{path}: not a readable .npz archive ({exc})") from None
    names = [f"{path}:{key}" for key in NPZ_KEYS]
    return _checked_dataset(spec, arrays, names, str(path))


# --------------------------------------------------------------------------
# Structure checks


def _dataset_from_idx(spec: DatasetSpec, paths: Sequence[Path], source: str) -> Dataset:
    """The four IDX files as a Dataset, through the decoded copy when they are gzip (see below)."""
    names = [str(p) for p in paths]
    cache = _decoded_cache(spec, paths)
    if cache is not None:
        arrays = _read_decoded(*cache)
        if arrays is not None:
            try:
                return _checked_dataset(spec, arrays, names, source)
            except DigitsError:
                pass  # a damaged copy: decode the originals and write it again
    dataset = _checked_dataset(spec, [read_idx(path) for path in paths], names, source)
    if cache is not None:
        _write_decoded(*cache, dataset)
    return dataset


# --------------------------------------------------------------------------
# The decoded copy
#
# Inflating MNIST's 9.5 MB of gzip took 0.68-0.71 s a run, where an
# uncompressed .npz of the same arrays loaded, checks included, in 0.12-0.34 s
# (side by side in one process on a busy 2-core machine).  So the first load of gzip IDX files
# keeps one: ``<cache_dir>/decoded/<dataset>-<hash of the folder>.npz``, one
# per source folder, replaced when its files change.  It is keyed by the
# files' resolved paths, sizes, inodes and modification times (stored inside
# the .npz and compared on every load), written atomically, and anything wrong
# with it (unreadable, another key, arrays that fail the structure checks) is
# ignored and the copy rebuilt.  Raw IDX files are read as fast as the copy, and
# files under DECODED_MIN_BYTES decode faster than the copy loads, so neither
# gets one.  A cache folder that cannot be written only costs the time.

DECODED_FOLDER = "decoded"
DECODED_MIN_BYTES = 1 << 20  # gzip bytes below which decoding beats loading a copy
_DECODED_FORMAT = 1


def _decoded_cache(spec: DatasetSpec, paths: Sequence[Path]) -> tuple[Path, str] | None:
    """(where the decoded copy of `paths` lives, the key it must carry), or None if not worth one."""
    try:
        stats = [p.stat() for p in paths]
        resolved = [str(p.resolve()) for p in paths]
    except OSError:
        return None
    gzip_bytes = sum(st.st_size for p, st in zip(paths, stats) if p.name.endswith(".gz"))
    if not gzip_bytes or gzip_bytes < DECODED_MIN_BYTES:
        return None
    key = json.dumps([_DECODED_FORMAT, spec.name,
                      [[r, st.st_size, st.st_ino, st.st_mtime_ns] for r, st in zip(resolved, stats)]])
    folder_id = hashlib.sha256(str(Path(resolved[0]).parent).encode()).hexdigest()[:16]
    return default_cache_dir() / DECODED_FOLDER / f"{spec.name}-{folder_id}.npz", key


def _read_decoded(path: Path, key: str) -> list[np.ndarray] | None:
    """The arrays of the copy at `path` if it exists, reads whole and carries `key`; else None."""
    try:
        with open(path, "rb") as handle:
            npz = np.load(handle, allow_pickle=False)
            if not isinstance(npz, Mapping) or str(npz["key"]) != key:
                return None
            return [npz[name] for name in NPZ_KEYS]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        return None


def _write_decoded(path: Path, key: str, dataset: Dataset) -> None:
    """Keep `dataset`'s arrays at `path` under `key`, atomically; a failed write is not an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with files.atomic_file(path) as out:
            np.savez(out, key=np.str_(key), **{name: getattr(dataset, name) for name in NPZ_KEYS})
    except (OSError, DigitsError):
        pass


def _checked_dataset(
    spec: DatasetSpec, arrays: Sequence[np.ndarray], names: Sequence[str], source: str
) -> Dataset:
    """Build a Dataset after checking shapes, dtypes, label range and counts."""
    x_train, y_train, x_test, y_test = arrays
    n_train, n_train_labels, n_test, n_test_labels = names
    _check_images(x_train, n_train)
    _check_images(x_test, n_test)
    y_train = _checked_labels(y_train, n_train_labels, len(spec.class_names))
    y_test = _checked_labels(y_test, n_test_labels, len(spec.class_names))
    _check_counts(x_train, y_train, n_train, n_train_labels)
    _check_counts(x_test, y_test, n_test, n_test_labels)
    return Dataset(spec.name, x_train, y_train, x_test, y_test, spec.class_names, source)


def _check_images(images: np.ndarray, name: str) -> None:
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (MNIST_SIDE, MNIST_SIDE):
        raise DigitsError(
            f"{name}: expected uint8 images of shape N×28×28, found {images.dtype} {_shape_text(images)}"
        )
    if len(images) == 0:
        raise DigitsError(f"{name}: holds no images")


def _checked_labels(labels: np.ndarray, name: str, n_classes: int) -> np.ndarray:
    """Labels as uint8; any integer dtype is accepted if every value is a class index."""
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DigitsError(
            f"{name}: expected a 1-D array of integer labels, found {labels.dtype} {_shape_text(labels)}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        bad = labels[(labels < 0) | (labels >= n_classes)][0]
        raise DigitsError(f"{name}: label {bad} is outside 0..{n_classes - 1}")
    return labels.astype(np.uint8, copy=False)


def _shape_text(array: np.ndarray) -> str:
    return "×".join(str(d) for d in array.shape) or "scalar"


def _check_counts(images: np.ndarray, labels: np.ndarray, images_name: str, labels_name: str) -> None:
    if len(images) != len(labels):
        raise DigitsError(
            f"{images_name} has {len(images)} images but {labels_name} has {len(labels)} labels"
        )


# --------------------------------------------------------------------------
# Download


class _DownloadFailed(Exception):
    """One mirror failed for one file; the reason goes into the final message."""


def mirrors_for(spec: DatasetSpec) -> tuple[str, ...]:
    """``$DIGITS_MIRRORS`` (comma/space separated base URLs, ``{name}`` expands) or the registry's."""
    configured = os.environ.get(MIRRORS_ENV, "").replace(",", " ").split()
    if configured:
        return tuple(base.replace("{name}", spec.name) for base in configured)
    return spec.mirrors


def download_files(
    spec: DatasetSpec,
    folder: Path,
    names: Sequence[str],
    *,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
    timeout: float | None = None,
) -> list[str]:
    """Download ``names`` into ``folder``; return the distinct mirrors that served them."""
    mirrors = tuple(mirrors) if mirrors is not None else mirrors_for(spec)
    timeout = DOWNLOAD_TIMEOUT_S if timeout is None else timeout
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DigitsError(
            f"cannot create cache folder {folder} ({exc.strerror or exc}); "
            f"set DIGITS_CACHE_DIR to a writable folder or use {DATA_DIR_HINT}"
        ) from None
    used: list[str] = []
    for name in names:
        base = _download_one(spec, name, folder, mirrors, progress=progress, timeout=timeout)
        if base not in used:
            used.append(base)
    return used


def _download_one(
    spec: DatasetSpec, name: str, folder: Path, mirrors: Sequence[str], *, progress: bool, timeout: float
) -> str:
    """Try each mirror in turn for one file; return the base URL that worked."""
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + name
        try:
            _fetch(url, folder / name, spec.md5[name], progress=progress, timeout=timeout)
            return base
        except _DownloadFailed as exc:
            failures.append(f"{url} ({exc})")
    tried = "; ".join(failures) if failures else "no mirrors configured"
    raise DigitsError(
        f"could not download {spec.name} {name}, tried: {tried}; "
        f"use {DATA_DIR_HINT} to point at a folder that holds the four IDX files"
    )


def _fetch(url: str, dest: Path, md5: str, *, progress: bool, timeout: float) -> None:
    """Download ``url`` to ``dest`` only if it arrives whole and with the right md5.

    What fails on this mirror (the network, the server, the data) raises
    _DownloadFailed inside the atomic write, which discards the partial file;
    a cache folder that cannot be written raises DigitsError naming it.
    """
    with files.atomic_file(dest) as out:
        try:
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                expected = int(length) if length and length.isdigit() else None
                bar = _ProgressBar(dest.name, expected, enabled=progress)
                digest = hashlib.md5(usedforsecurity=False)
                received = 0
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(received)
                bar.close()
        except urllib.error.HTTPError as exc:
            raise _DownloadFailed(f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise _DownloadFailed(str(exc.reason)) from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise _DownloadFailed(str(exc) or type(exc).__name__) from None
        if expected is not None and received != expected:
            raise _DownloadFailed(f"truncated response: {received} of {expected} bytes")
        if digest.hexdigest() != md5:
            raise _DownloadFailed(f"md5 {digest.hexdigest()}, expected {md5}")


class _ProgressBar:
    """A one-line ``\\r`` progress bar on stderr, redrawn at most ten times a second.

    Written here rather than using tqdm so the package needs no extra dependency.
    """

    WIDTH = 30

    def __init__(self, label: str, total: int | None, *, enabled: bool, stream: TextIO | None = None):
        self.label = label
        self.total = total
        self.enabled = enabled
        self.stream = stream
        self.done = 0
        self._last_draw = 0.0

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if self.enabled and now - self._last_draw >= 0.1:
            self._last_draw = now
            self._draw()

    def close(self) -> None:
        if self.enabled:
            self._draw()
            self._out().write("\n")
            self._out().flush()

    def _out(self) -> TextIO:
        return self.stream or sys.stderr

    def _draw(self) -> None:
        mb = self.done / 1e6
        if self.total:
            filled = min(self.WIDTH, self.WIDTH * self.done // self.total)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            percent = 100 * self.done // self.total
            text = f"{self.label} [{bar}] {percent:3d}% {mb:.1f}/{self.total / 1e6:.1f} MB"
        else:
            text = f"{self.label} {mb:.1f} MB"
        self._out().write(f"\rdownloading {text}")
        self._out().flush()
