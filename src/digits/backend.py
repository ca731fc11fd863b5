"""Choosing the Keras backend, the one decision that must come before `import keras`.

Measured on a 2-core CPU (BENCHMARKS.md, "Backends per 60k-image epoch"): JAX trains the
small dense networks fastest and answers a single prediction in about a
millisecond; TensorFlow (without XLA) runs convolutions several times faster
than JAX on the CPU. So each model in the registry names the backend it
trains best on, and `--backend` / ``KERAS_BACKEND`` override it.
"""

from __future__ import annotations

import functools
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from digits.errors import DigitsError

BACKENDS = ("jax", "tensorflow", "torch")


def use_backend(name: str | None) -> str:
    """Select the Keras backend `name` (or keep ``KERAS_BACKEND``, else JAX).

    Must run before Keras is imported; once Keras is loaded the backend it
    chose is final, and asking for another one is an error, not a silent
    no-op.
    """
    wanted = name or os.environ.get("KERAS_BACKEND") or "jax"
    if wanted not in BACKENDS:
        raise DigitsError(f"unknown backend {wanted!r}; choose one of {', '.join(BACKENDS)}")
    if "keras" in sys.modules:
        import keras

        current = keras.backend.backend()
        if current != wanted and name is not None:
            raise DigitsError(
                f"Keras is already running on {current!r}; start a new process to use {wanted!r}"
            )
        return current
    os.environ["KERAS_BACKEND"] = wanted
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter
    if wanted == "jax":
        _enable_jax_compilation_cache()
    if wanted != "tensorflow":
        _keep_tensorflow_unloaded()
    return wanted


@functools.cache
def native_bfloat16() -> bool:
    """Whether this processor computes bfloat16 natively (AVX512-BF16 or AMX), read from /proc/cpuinfo.

    Mixed bfloat16 halves the memory traffic of convolutions and doubles
    the multiply rate there (``fast``: 1.5× faster per epoch on a 2-core
    AMD EPYC); on processors without it, bfloat16 is emulated and slower,
    so recipes asking for it train in float32 instead.  Without Linux's
    /proc/cpuinfo the answer is no.  GPUs are not probed: pass
    ``--precision mixed_bfloat16`` there.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _keep_tensorflow_unloaded() -> None:
    """Stop Keras from importing TensorFlow (2 s) just to ask whether it is installed.

    Keras checks ``tf.available`` when saving a model or seeding, which
    imports TensorFlow whenever it is installed, even on JAX where no
    TensorFlow object can appear.  Telling Keras's lazy module that it is
    absent saves that time; if a future Keras renames the internals, this
    only stops saving time.
    """
    if "tensorflow" in sys.modules:
        return
    try:
        with _without_matplotlib():
            from keras.src.utils import module_utils

        module_utils.tensorflow._available = False
    except (ImportError, AttributeError):  # pragma: no cover - newer Keras
        pass


@contextmanager
def _without_matplotlib():
    """Keep Keras from importing Matplotlib (about 1 s of start-up, measured on a busy 2-core machine).

    Keras imports it for plotting helpers Digits never calls.
    ``keras.visualization`` imports ``matplotlib.pyplot`` when Keras loads,
    inside ``try/except ImportError``; while Keras loads here, Matplotlib
    looks absent, so that helper is left without it, and afterwards Matplotlib
    imports as usual (Digits draws its figures with :mod:`digits.plots`, in
    the background while a model trains).  If Matplotlib is loaded already,
    nothing changes.
    """
    if "matplotlib" in sys.modules:
        yield
        return
    sys.modules["matplotlib"] = None  # `import matplotlib...` raises ImportError
    try:
        yield
    finally:
        if sys.modules.get("matplotlib", 0) is None:
            del sys.modules["matplotlib"]


def running_backend() -> str | None:
    """The backend Keras already runs on in this process, or None if Keras is not loaded."""
    if "keras" not in sys.modules:
        return None
    import keras

    return keras.backend.backend()


def _enable_jax_compilation_cache() -> None:
    """Keep XLA's compiled programs on disk, so a second run skips ~1 s of compiling."""
    from digits.datasets import default_cache_dir

    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(default_cache_dir()) / "jax"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
