"""``digits train --distribute``: data-parallel training on every device the job can see.

One model, its weights replicated on every device; each training step's
global batch (``--batch-size``) is split across the devices and the
gradients are averaged, so the updates are those of single-device training
up to floating-point noise (``tests/test_distribute.py`` checks the weights).

* **JAX** (the dense models): Keras's own distribution API,
  ``keras.distribution.DataParallel`` over ``keras.distribution.list_devices()``.
  It works with :class:`digits.fastfit.MicroBatched`: each batch-32 step
  inside the compiled ``lax.scan`` is itself split across the devices
  (:func:`spread_micro_batches`), the gradients all-reduced by XLA.  A batch
  that does not divide by the device count (the epoch's last few images) is
  computed whole on every device, so no sample is dropped or repeated.
* **TensorFlow** (the CNNs' default backend): ``tf.distribute.MirroredStrategy``
  over the local GPUs (the CPU when there is none), one host only: Keras 3
  cannot fit under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585,
  reproduced here with TF 2.21 / Keras 3.15), so ``TF_CONFIG`` is refused
  with a pointer to the JAX backend, which every model also trains on.

Multi-host (docs/SCALING.md): on JAX, when ``KERAS_DISTRIBUTION_NUM_PROCESSES``
(with ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` and ``KERAS_DISTRIBUTION_PROCESS_ID``)
describes a job, every process calls ``keras.distribution.initialize()``
(``jax.distributed.initialize``), reads the whole training set, feeds the same
batches (same seed) and computes its devices' share of every step; process 0
writes the run directory.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from digits.errors import DigitsError

MULTI_HOST_ENV = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                  "KERAS_DISTRIBUTION_PROCESS_ID")


@dataclass(frozen=True)
class Placement:
    """Where a run trains: how many devices in all, of what kind, over how many processes."""

    devices: int = 1
    platform: str = "cpu"
    processes: int = 1
    process_index: int = 0
    strategy: object | None = None  # TensorFlow's tf.distribute strategy, when there is one


@contextlib.contextmanager
def data_parallel(enabled: bool, batch_size: int) -> Iterator[Placement]:
    """Build and fit models inside this block to train them data-parallel (if `enabled`).

    Keras must already be running on its backend.  Outside the block the
    distribution is lifted again; the trained weights stay replicated, which
    prediction and saving handle as usual.
    """
    import keras

    backend = keras.backend.backend()
    if not enabled:
        yield Placement(platform=_platform(backend))
        return
    if backend == "jax":
        with _jax_data_parallel(batch_size) as placement:
            yield placement
    elif backend == "tensorflow":
        with _tf_data_parallel() as placement:
            yield placement
    else:
        raise DigitsError(f"--distribute supports the jax and tensorflow backends, not {backend}")


def _platform(backend: str) -> str:
    if backend == "jax":
        import jax

        return jax.default_backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_logical_devices("GPU") else "cpu"
    return "cpu"


def is_chief(backend: str) -> bool:
    """Join the multi-host job the environment describes (if any); True where files are written.

    Call before Keras computes anything (``jax.distributed.initialize`` must come first).
    Single-host: always True.  Multi-host (JAX only): process 0.
    """
    if backend == "jax" and os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES"):
        initialize_multi_host()
        import jax

        return jax.process_index() == 0
    if backend == "tensorflow":
        _refuse_tf_multi_worker()
    return True


def _refuse_tf_multi_worker() -> None:
    if os.environ.get("TF_CONFIG"):
        raise DigitsError("multi-host training on TensorFlow does not work with Keras 3 "
                          "(keras-team/keras#20585); unset TF_CONFIG and train on JAX across hosts "
                          "with --backend jax (see docs/SCALING.md)")


def shared_seed(backend: str, seed: int) -> int:
    """Process 0's seed on every process of a multi-host JAX job (all must shuffle alike); else `seed`."""
    if backend != "jax" or not os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES"):
        return seed
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    initialize_multi_host()
    if jax.process_count() == 1:
        return seed
    return int(multihost_utils.broadcast_one_to_all(np.int32(seed)))


# --- JAX: Keras's distribution API -------------------------------------------------------------

def initialize_multi_host() -> None:
    """Join the multi-host JAX job the environment describes, once; a no-op otherwise."""
    if not os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES"):
        return
    import jax
    import keras

    if jax.distributed.is_initialized():
        return
    missing = [name for name in MULTI_HOST_ENV if not os.environ.get(name)]
    if missing:
        raise DigitsError(f"multi-host training needs {', '.join(missing)} set as well "
                          "(see docs/SCALING.md)")
    try:
        keras.distribution.initialize()
    except Exception as e:  # a coordinator that never answers, a bad address...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DigitsError(f"cannot join the multi-host job ({first})") from None


def _make_jax_distribution():
    import keras

    class StepSplitDataParallel(keras.distribution.DataParallel):
        """Keras's DataParallel, with each batch handed to every device whole.

        :class:`~digits.fastfit.MicroBatched` receives 64 training steps'
        worth of images per call and splits each step's batch across the
        devices inside the compiled scan (:func:`spread_micro_batches`), so
        the input itself is replicated: no size ever has to divide by the
        device count (``jax.device_put`` refuses to shard 197 images over 2
        devices), and in a multi-host job every process feeds the same
        batches, which keeps multi-host training identical to one host.
        """

        def get_data_layout(self, data_shape):
            return keras.distribution.TensorLayout([None] * len(data_shape), self.device_mesh)

    # Every process feeds the same whole batches: nothing to shard per worker.
    return StepSplitDataParallel(devices=keras.distribution.list_devices(), auto_shard_dataset=False)


@contextlib.contextmanager
def _jax_data_parallel(batch_size: int) -> Iterator[Placement]:
    import jax
    import keras

    initialize_multi_host()
    distribution = _make_jax_distribution()
    devices = distribution.device_mesh.devices.size
    if batch_size % devices:
        warnings.warn(f"batch size {batch_size} does not divide over {devices} devices: every "
                      "device computes whole batches (same results, no speed-up)", stacklevel=3)
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(distribution)
    try:
        yield Placement(devices=devices, platform=jax.default_backend(),
                        processes=jax.process_count(), process_index=jax.process_index())
    finally:
        keras.distribution.set_distribution(previous)


def spread_micro_batches(batches):
    """Inside a compiled step: split each micro-batch (axis 1 of `batches`) across the devices.

    `batches` is a (steps, micro_batch, ...) array that :class:`~digits.fastfit.MicroBatched`
    scans over.  Without a distribution, or when the micro-batch does not
    divide by the device count, it is returned as it is (XLA then computes
    each step replicated: the same numbers, just not faster).
    """
    import keras

    distribution = keras.distribution.distribution()
    if distribution is None or batches.ndim < 2:
        return batches
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    mesh = distribution.device_mesh.backend_mesh
    if batches.shape[1] % mesh.size:
        return batches
    spec = PartitionSpec(None, distribution.batch_dim_name)
    return jax.lax.with_sharding_constraint(batches, NamedSharding(mesh, spec))


# --- TensorFlow: tf.distribute ---------------------------------------------------------------------

@contextlib.contextmanager
def _tf_data_parallel() -> Iterator[Placement]:
    import tensorflow as tf

    _refuse_tf_multi_worker()
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices=devices)
    with strategy.scope():
        yield Placement(devices=strategy.num_replicas_in_sync, platform=_platform("tensorflow"),
                        strategy=strategy)
