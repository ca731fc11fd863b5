"""Keras ``fit`` with many small steps per compiled call (the JAX speed-up).

The seeds train with batch size 32: 1,875 tiny optimizer steps an epoch.
Run one at a time, each step costs more in Python and dispatch than in
arithmetic.  On JAX, :class:`MicroBatched` hands Keras batches of
``32 × 64`` images and runs the 64 ordinary batch-32 training steps inside
one compiled ``lax.scan``: the same updates, in the same order, as
``fit(batch_size=32)`` (Keras still shuffles every sample each epoch), at
about 0.3 s an epoch instead of 0.5 s with ``steps_per_execution`` or 2-3 s
by default.  Callbacks, progress bar and metrics are Keras's own.

On TensorFlow the same effect comes from ``steps_per_execution`` with XLA;
on other backends ``fit`` runs as usual.
"""

from __future__ import annotations

from pathlib import Path

import keras

from digits import interrupts

STEPS_PER_CALL = 64


def fit(model, *, callbacks=(), **kwargs):
    """Compile `model` and fit it; returns Keras's History.  `model` ends up trained.

    The progress bar, shown when ``verbose``, counts the steps done
    (:class:`StepProgress`), and a Ctrl-C that Python dropped stops training
    at the next compiled call (:class:`StopCheck`) or as ``fit`` returns.
    Neither waits for a step's results, so where no other callback does,
    Keras queues the next compiled call while one computes (on JAX).
    """
    progress = [StepProgress()] if kwargs.get("verbose") else []
    history = _compile_and_fit(model, callbacks=[*(callbacks or ()), *progress, StopCheck()], **kwargs)
    interrupts.check()
    return history


def _compile_and_fit(model, *, optimizer, loss, x, y, batch_size, jit_compile=True, **fit_kwargs):
    backend = keras.backend.backend()
    metrics = ["accuracy"]
    if backend == "jax":
        trainer = MicroBatched(model, batch_size)
        trainer.compile(optimizer=optimizer, loss=loss, metrics=metrics)
        return trainer.fit(x, y, batch_size=batch_size * STEPS_PER_CALL, **fit_kwargs)
    steps = STEPS_PER_CALL if backend == "tensorflow" else 1
    if backend == "tensorflow" and _tf_strategy_is_active():
        # --distribute: under MirroredStrategy, TensorFlow 2.21 fails ("must feed a value for
        # placeholder tensor") with XLA or with several steps per call: one plain step per call.
        steps, jit_compile = 1, False
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=metrics,
        jit_compile=jit_compile if backend == "tensorflow" else "auto",
        steps_per_execution=steps,
    )
    return model.fit(x, y, batch_size=batch_size, **fit_kwargs)


def _tf_strategy_is_active() -> bool:
    import tensorflow as tf

    return tf.distribute.has_strategy()


class MicroBatched(keras.Model):
    """Trains `inner` on each large batch as consecutive steps of `micro_batch` samples."""

    def __init__(self, inner: keras.Model, micro_batch: int):
        super().__init__(name=f"{inner.name}_microbatched")
        self.inner = inner
        self.micro_batch = micro_batch

    def call(self, x, training=None):
        return self.inner(x, training=training)

    def train_step(self, state, data):
        import jax

        from keras.src.backend.jax.trainer import JAXTrainer

        from digits.distribute import spread_micro_batches

        one_step = JAXTrainer.train_step  # Keras's own batch step, applied per micro-batch
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        b, n = self.micro_batch, x.shape[0]
        full = n // b
        logs = None
        if full:
            def scan_step(carry, batch):
                step_logs, carry = one_step(self, carry, batch)
                return carry, step_logs

            xs = x[: full * b].reshape((full, b) + x.shape[1:])
            ys = y[: full * b].reshape((full, b) + y.shape[1:])
            xs, ys = spread_micro_batches(xs), spread_micro_batches(ys)  # --distribute: split each step
            state, logs = jax.lax.scan(scan_step, state, (xs, ys))
            logs = jax.tree.map(lambda v: v[-1], logs)  # metrics accumulate; the last is the total
        if n % b:  # the epoch's last, smaller batch, exactly as fit(batch_size=b) would do
            logs, state = one_step(self, state, (x[full * b :], y[full * b :]))
        return logs, state


class StopCheck(keras.callbacks.Callback):
    """Stop training for a Ctrl-C or SIGTERM that Python dropped (:func:`digits.interrupts.check`).

    Checked before every compiled call, at most a few hundred milliseconds
    apart, and after every epoch.  Not at a batch's end: a callback there makes
    Keras wait for each call's metrics before it queues the next call (Keras's
    "async dispatch" on JAX), so Python's work between calls would not overlap
    the computation any more.
    """

    def on_train_batch_begin(self, batch, logs=None):
        interrupts.check()

    def on_test_batch_begin(self, batch, logs=None):
        interrupts.check()

    def on_epoch_end(self, epoch, logs=None):
        interrupts.check()


class StepProgress(keras.callbacks.ProgbarLogger):
    """Keras's progress bar, counting the steps actually done.

    With several steps per compiled call (``steps_per_execution``) Keras
    reports each call as ending on its last *possible* step, so an epoch of
    223 steps run 64 at a time showed 256/223.  The count stops at the total.
    """

    def _clamped(self, batch: int) -> int:
        return min(batch, self.target - 1) if self.target else batch

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(self._clamped(batch), logs)

    def on_test_batch_end(self, batch, logs=None):
        super().on_test_batch_end(self._clamped(batch), logs)

    def on_predict_batch_end(self, batch, logs=None):
        super().on_predict_batch_end(self._clamped(batch), logs)


class BestCheckpoint(keras.callbacks.ModelCheckpoint):
    """Keras's best-only checkpoint on val_loss, saving the model itself, not a training wrapper."""

    def __init__(self, path: Path, verbose: int = 0):
        super().__init__(str(path), monitor="val_loss", save_best_only=True, verbose=verbose)

    def set_model(self, model):
        super().set_model(getattr(model, "inner", model))
