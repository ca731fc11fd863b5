"""What several commands share: argument types, the common flags, opening a run, per-file errors and progress."""

from __future__ import annotations

import argparse
import inspect
import sys
import time

from digits.errors import DigitsError


def _number(parse, ok, requirement: str, kind: str):
    """An argparse type: `parse` the text, then accept it only if `ok(value)`."""

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{requirement}, got {text}")
        return value

    return convert


positive_int = _number(int, lambda v: v >= 1, "must be at least 1", "a whole number")
non_negative_int = _number(int, lambda v: v >= 0, "must not be negative", "a whole number")
positive_float = _number(float, lambda v: 0 < v < float("inf"), "must be a positive number", "a number")
fraction = _number(float, lambda v: 0 <= v < 1, "must be in [0, 1)", "a number")
probability = _number(float, lambda v: 0 <= v <= 1, "must be between 0 and 1", "a number")
top_k = _number(int, lambda v: 1 <= v <= 10, "must be between 1 and 10", "a whole number")
port = _number(int, lambda v: 1 <= v <= 65535, "must be between 1 and 65535", "a port number")


def default_of(function, parameter: str):
    """The default of `function`'s `parameter`: flags take the library's defaults, not a copy of them."""
    return inspect.signature(function).parameters[parameter].default


def add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", metavar="DIR",
                   help="offline copy: a folder with the four IDX files, or Keras's mnist.npz "
                        "(default: $DIGITS_DATA_DIR, then the download cache)")


def add_backend(p: argparse.ArgumentParser) -> None:
    from digits.backend import BACKENDS

    p.add_argument("--backend", choices=BACKENDS,
                   help="Keras backend (default: $KERAS_BACKEND, else the fastest measured for the job)")


def add_model(p: argparse.ArgumentParser) -> None:
    """``--model RUN_DIR``, for the commands that fall back on the bundled model."""
    p.add_argument("--model", metavar="RUN_DIR", dest="run",
                   help="a run directory from `digits train` (default: the model bundled with Digits)")


def open_run(path, backend: str | None):
    """The run at `path`, checked before Keras starts (a missing run is one line), then Keras on `backend`.

    Without `backend`: $KERAS_BACKEND, else JAX, the fastest for inference here.
    """
    from digits.backend import use_backend
    from digits.runs import Run

    run = Run(path)
    use_backend(backend)
    return run


def load_predictor(path, backend: str | None):
    """The predictor of the run at `path` (checked before Keras starts), else of the bundled model, on `backend`."""
    from digits.backend import use_backend
    from digits.inference import load_predictor as load
    from digits.runs import Run

    if path is not None:
        Run(path)
    use_backend(backend)
    return load(path)


class Progress:
    """A one-line count of files done, rewritten in place on stderr (results stay on stdout)."""

    def __init__(self, enabled: bool, every: int = 256):
        self.enabled, self.every, self.count, self.started = enabled, every, 0, time.perf_counter()

    def step(self) -> None:
        self.count += 1
        if self.enabled and self.count % self.every == 0:
            self._show("\r")

    def done(self) -> None:
        if self.enabled:
            self._show("\r")
            print(file=sys.stderr)

    def _show(self, prefix: str) -> None:
        rate = self.count / max(time.perf_counter() - self.started, 1e-9)
        print(f"{prefix}{self.count:,} files done ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)


class Failures:
    """Per-file errors: one line each on stderr, the other files go on; exit 2 at the end.

    When the only input fails, its own line is the error (no summary), so a
    single bad file gives exactly one line.
    """

    def __init__(self, command: str):
        self.command = command
        self.total = self.failed = 0
        self._held: DigitsError | None = None

    def seen(self, error: DigitsError | None) -> None:
        self.total += 1
        if self._held is not None:
            self._print(self._held)
            self._held = None
        if error is None:
            return
        self.failed += 1
        if self.total == 1:
            self._held = error
        else:
            self._print(error)

    def _print(self, error: DigitsError) -> None:
        print(f"digits {self.command}: error: {error}", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self._held is not None:
            raise self._held
        if self.failed:
            raise DigitsError(f"{self.failed} of {self.total} inputs could not be read (see above)")
