"""Ctrl-C and SIGTERM that always stop a long job (training, tuning), leaving nothing half-written.

Python runs a signal handler between two bytecodes of the main thread, and
the KeyboardInterrupt it raises there is lost when that moment falls inside a
garbage-collection callback or a ``__del__`` method: JAX registers such a
callback, and about one Ctrl-C in four during training was printed as
"Exception ignored in _xla_gc_callback" while the run went on and exited 0.
So within :func:`stop_on_signals` the handler also records the request, and
the loops call :func:`check` at safe points (after every compiled training
call, every epoch and trial, before a run is renamed into place), which
raises it again.  Nothing here imports more than the standard library: the
CLI installs it before it knows which command runs.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a scheduler's timeout), raised like Ctrl-C so that the same clean-up runs.

    The CLI exits 143 for it, 130 for Ctrl-C.
    """


_pending: int | None = None
"""The first signal received within :func:`stop_on_signals` and not yet forgotten."""


def _stop(signum: int) -> None:
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def _handler(signum, frame) -> None:
    global _pending
    if _pending is None:
        _pending = signum
    _stop(signum)


def _unraisable(previous):
    """sys.unraisablehook that stays quiet about a stop already recorded (it will be raised again)."""

    def hook(unraisable) -> None:
        if not (_pending is not None and isinstance(unraisable.exc_value, KeyboardInterrupt)):
            previous(unraisable)

    return hook


def check(*_args) -> None:
    """Raise the stop that a signal asked for (KeyboardInterrupt or Terminated), if one did.

    Takes and ignores any arguments, so that it can serve as a callback (Optuna's).
    """
    if _pending is not None:
        _stop(_pending)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block SIGINT raises KeyboardInterrupt and SIGTERM :class:`Terminated`, and both are
    remembered for :func:`check`.

    Blocks may nest (the CLI's around a command, train's or tune's inside
    it); the outermost forgets the request at its end.  Outside the main
    thread Python cannot catch signals, so the block runs with them as they are.
    """
    global _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    hook = sys.unraisablehook
    sys.unraisablehook = _unraisable(hook)  # no "Exception ignored in _xla_gc_callback" traceback
    try:
        yield
    finally:
        sys.unraisablehook = hook
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if previous[signal.SIGINT] is not _handler:
            _pending = None
