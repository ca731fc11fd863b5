"""The run directory: everything a later command needs, written all at once or not at all.

A run is a folder::

    model.keras     the trained Keras model
    config.json     the full resolved configuration, data source, backend, versions
    history.csv     per-epoch loss, accuracy, val_loss, val_accuracy
    metrics.json    test_accuracy, test_loss, train_seconds, ...
    summary.txt     Keras's model summary
    plots/          samples.png, curves.png
    tensorboard/    Keras's TensorBoard logs (train/, validation/), with ``--tensorboard`` only

:class:`RunWriter` builds it in a hidden sibling folder and renames it into
place at the end, so a crash, a Ctrl-C or a full disk never leaves a
half-written run that a later command would trust.  :class:`Run` reads one
back and checks it, with one clear error naming the file that is missing or
broken.
"""

from __future__ import annotations

import csv
import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any

from digits import files
from digits.errors import DigitsError

MODEL_FILE = "model.keras"
REQUIRED = (MODEL_FILE, "config.json", "metrics.json")

MAX_MODEL_BYTES = 1 << 30
"""The most a ``model.keras`` may unpack to (its members' declared sizes together), checked
before Keras reads it: the largest model the registry can build (mlp2, 8 layers of 4096)
is about 480 MB, and a small archive declaring gigabytes is a zip bomb."""

MODEL_INPUT = (None, 28, 28)
MODEL_OUTPUT = (None, 10)
"""What every Digits model takes and gives: (N, 28, 28) images, (N, 10) probabilities."""


def read_json_object(path: str | os.PathLike, what: str) -> dict:
    """A JSON file holding one object (a config, a search space), or one clear error naming it."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DigitsError(f"{path}: no such {what} file") from None
    except (OSError, ValueError) as e:
        raise DigitsError(f"{path}: not a readable JSON {what} ({e})") from None
    if not isinstance(doc, dict):
        raise DigitsError(f"{path}: expected a JSON object, the {what}")
    return doc


class RunWriter:
    """Collects a run in a hidden folder; `with` renames it into place on success.

    It writes bytes, text and JSON (through :mod:`digits.files`) and the
    model; the figures come from :mod:`digits.plots` as PNG bytes, drawn by
    the caller, so the run directory knows nothing of matplotlib.
    """

    def __init__(self, final_path: Path):
        self.final_path = final_path
        self.path: Path | None = None  # the temporary folder, from `with` on

    @classmethod
    def create(cls, out: str | os.PathLike | None, model_name: str) -> "RunWriter":
        if out is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            out = Path("runs") / f"{model_name}-{stamp}"
            n = 1
            while out.exists():
                n += 1
                out = Path("runs") / f"{model_name}-{stamp}-{n}"
        out = Path(out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise DigitsError(f"{out}: already exists and is not an empty folder; choose another --out")
        return cls(out)

    def __enter__(self) -> "RunWriter":
        self._build = files.atomic_folder(self.final_path)
        self.path = self._build.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool | None:
        return self._build.__exit__(exc_type, exc, tb)

    def write_bytes(self, name: str, data: bytes) -> None:
        """`name` (may be in a subfolder, e.g. ``plots/curves.png``) holds `data`."""
        path = self.path / name
        try:
            path.parent.mkdir(exist_ok=True)
        except OSError as e:
            raise files.cannot_write(path, e) from None
        files.write_bytes(path, data)

    def write_json(self, name: str, doc: Any) -> None:
        files.write_json(self.path / name, doc)

    def write_text(self, name: str, text: str) -> None:
        files.write_text(self.path / name, text)

    def save_model(self, model) -> None:
        model.save(self.path / MODEL_FILE)


class Run:
    """A finished run directory, checked on opening."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            exists, folder = self.path.exists(), self.path.is_dir()
            missing = [name for name in REQUIRED if not (self.path / name).is_file()]
        except OSError as e:  # pathlib raises for a folder without search permission
            raise DigitsError(f"{self.path}: cannot read the run directory ({e.strerror or e})") from None
        if not exists:
            raise DigitsError(f"{self.path}: no such run directory")
        if not folder:
            raise DigitsError(f"{self.path}: not a run directory (it is a file)")
        if missing:
            raise DigitsError(
                f"{self.path}: not a complete run, missing {', '.join(missing)} "
                "(train one with `digits train --out DIR`)"
            )

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    def _json(self, name: str) -> dict:
        try:
            doc = json.loads((self.path / name).read_text())
        except (OSError, ValueError) as e:
            raise DigitsError(f"{self.path / name}: unreadable JSON ({e})") from None
        if not isinstance(doc, dict):
            raise DigitsError(f"{self.path / name}: expected a JSON object")
        return doc

    @property
    def config(self) -> dict:
        return self._json("config.json")

    @property
    def metrics(self) -> dict:
        return self._json("metrics.json")

    def history(self) -> dict[str, list[float]]:
        """history.csv as columns of floats (empty if the run has none)."""
        path = self.path / "history.csv"
        if not path.exists():
            return {}
        try:
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
            history = {k: [float(r[k]) for r in rows] for k in (rows[0] if rows else {})}
        except (OSError, ValueError, KeyError, TypeError, csv.Error) as e:
            raise DigitsError(f"{path}: unreadable history ({e})") from None
        if "loss" not in history:  # training writes a header and one row per epoch, loss always
            raise DigitsError(f"{path}: unreadable history (no epochs with a loss column)")
        return history

    def load_model(self):
        """The Keras model (imports Keras; choose the backend first), checked before and after loading.

        Before: the archive is whole (every member's CRC) and unpacks to at
        most :data:`MAX_MODEL_BYTES`, because Keras reports a damaged file as
        "File not found" and would fill the memory with a zip bomb.  After:
        the model takes :data:`MODEL_INPUT` and gives :data:`MODEL_OUTPUT`,
        because everything downstream (predict, serve, export, ensemble)
        assumes it and would otherwise fail on every image instead of once here.
        """
        import keras

        import digits.layers  # noqa: F401  (registers the custom layers a saved model may use)

        self._check_archive()
        try:
            model = keras.saving.load_model(self.model_path, compile=False)
        except Exception as e:  # Keras raises many types for a broken archive
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DigitsError(f"{self.model_path}: cannot load the model ({first})") from None
        self._check_shapes(model)
        return model

    def _check_archive(self) -> None:
        path = self.model_path
        try:
            with zipfile.ZipFile(path) as archive:
                declared = sum(info.file_size for info in archive.infolist())
                if declared > MAX_MODEL_BYTES:
                    raise DigitsError(f"{path}: the model archive unpacks to {declared:,} bytes, over the "
                                      f"{MAX_MODEL_BYTES:,} a Digits model may take; refusing to load it")
                damaged = archive.testzip()
        except DigitsError:
            raise
        except PermissionError:
            raise DigitsError(f"{path}: cannot read: permission denied") from None
        except zipfile.BadZipFile as e:
            raise DigitsError(f"{path}: corrupt or truncated model archive ({e})") from None
        except Exception as e:  # zlib, struct and EOF errors from damaged members
            raise DigitsError(f"{path}: corrupt model archive ({type(e).__name__}: {e})") from None
        if damaged is not None:
            raise DigitsError(f"{path}: corrupt model archive ({damaged} is damaged)")

    def _check_shapes(self, model) -> None:
        try:
            shapes = {"input": model.input_shape, "output": model.output_shape}
        except (AttributeError, ValueError):  # a subclassed model saved unbuilt has neither
            raise DigitsError(f"{self.path}: the model has no fixed input and output shape; "
                              "a Digits model takes (N, 28, 28) images and gives (N, 10)") from None
        for what, want in (("input", MODEL_INPUT), ("output", MODEL_OUTPUT)):
            got = shapes[what]
            if not isinstance(got, tuple) or tuple(got) != want:
                raise DigitsError(f"{self.path}: the model's {what} has shape {_shape(got)}; "
                                  "a Digits model takes (N, 28, 28) images and gives (N, 10) probabilities")

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def _repr_html_(self) -> str:
        """Jupyter's view: the model, the headline metrics and the path (:mod:`digits.display`)."""
        from digits import display

        try:
            return display.run_html(self.path, self.config, self.metrics)
        except DigitsError as e:  # a notebook shows the broken file's one line, not a traceback
            return display.error_html(f"Run {self.path.name}", str(e))


def _shape(shape) -> str:
    """A Keras shape as people write it: (N, 28, 28), several as a list."""
    if isinstance(shape, list):
        return "[" + ", ".join(_shape(s) for s in shape) + "]"
    if isinstance(shape, tuple):
        return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"
    return str(shape)
