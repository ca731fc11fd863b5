"""Ctrl-C always stops training: exit 130, no run folder, also when Python drops the KeyboardInterrupt.

Python loses an exception raised inside a garbage-collection callback or a
``__del__`` method; a signal whose handler runs there is the Ctrl-C that
training used to swallow (JAX's ``_xla_gc_callback``).  The first tests drop
one on purpose, the last sends real SIGINTs to `digits train` at several
moments.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from digits import interrupts


class _DropsASignal:
    """Delivers `sig` while being destroyed, where Python can only print the exception and go on."""

    def __init__(self, sig: int = signal.SIGINT):
        self.sig = sig

    def __del__(self):
        signal.raise_signal(self.sig)
        for _ in range(3):  # a few bytecodes, so the handler runs (and raises) in here
            pass


def _drop_a_signal(sig: int = signal.SIGINT) -> None:
    _DropsASignal(sig)
    gc.collect()


@pytest.mark.parametrize("sig, stop", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, interrupts.Terminated)])
def test_a_dropped_signal_is_raised_again_at_the_next_check(sig, stop, capsys):
    with interrupts.stop_on_signals():
        _drop_a_signal(sig)  # no exception comes out of here...
        with pytest.raises(stop):
            interrupts.check()  # ...but the stop is not lost
    interrupts.check()  # the block forgot it: a later job starts clean
    assert "Exception ignored" not in capsys.readouterr().err  # nor printed as a traceback


def test_blocks_nest_and_restore_the_handlers():
    before = signal.getsignal(signal.SIGINT)
    with interrupts.stop_on_signals():
        with interrupts.stop_on_signals():
            _drop_a_signal()
        with pytest.raises(KeyboardInterrupt):  # the inner block ended; the outer one still knows
            interrupts.check()
    assert signal.getsignal(signal.SIGINT) is before


def test_training_stops_at_the_next_step_after_a_dropped_ctrl_c():
    import keras

    from digits import fastfit

    class DropAfterFirstBatch(keras.callbacks.Callback):
        batches = 0

        def on_train_batch_end(self, batch, logs=None):
            DropAfterFirstBatch.batches += 1
            if DropAfterFirstBatch.batches == 1:
                _drop_a_signal()

    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(10)])
    with interrupts.stop_on_signals(), pytest.raises(KeyboardInterrupt):
        # fastfit's own stop check comes before the next compiled call, or at the epoch's end
        fastfit.fit(model, optimizer="adam", loss="sparse_categorical_crossentropy",
                    x=np.zeros((200, 28, 28), np.float32), y=np.zeros(200, np.int32), batch_size=32,
                    epochs=3, verbose=0, callbacks=[DropAfterFirstBatch()])
    assert DropAfterFirstBatch.batches == 1


SIGINT_MOMENTS = [("while starting", None), ("as training starts", 0.0), ("in training", 0.8), ("later", 2.0)]
"""When each `digits train` gets its Ctrl-C: seconds after its run folder appears (None: 1.5 s after launch)."""


@pytest.mark.parametrize("moment, after", SIGINT_MOMENTS, ids=[m for m, _ in SIGINT_MOMENTS])
def test_ctrl_c_stops_digits_train_with_nothing_written(moment, after, tmp_path, mnist_dir):
    env = {**os.environ, "DIGITS_DATA_DIR": str(mnist_dir), "KERAS_BACKEND": "jax"}
    proc = subprocess.Popen([sys.executable, "-m", "digits.cli", "train", "--limit", "3000", "--epochs", "60",
                             "--out", str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        if after is None:
            time.sleep(1.5)
        else:
            deadline = time.monotonic() + 120
            while not list(tmp_path.glob(".run.partial-*")):
                assert proc.poll() is None and time.monotonic() < deadline, "training never started"
                time.sleep(0.05)
            time.sleep(after)
        assert proc.poll() is None, "training ended before the Ctrl-C"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "digits train: interrupted", err[-2000:]
    assert "Traceback" not in err and "Exception ignored" not in err, err[-2000:]
    assert list(Path(tmp_path).iterdir()) == []
