"""Export a trained model to portable formats, and run the ONNX one with ONNX Runtime.

``digits export RUN_DIR --format onnx`` writes ``RUN_DIR/export/model.onnx``;
the other formats are Keras's own exporters (``model.export``):

=============  ==========================  ===========================================
format         written to (default)        runs with
=============  ==========================  ===========================================
onnx           export/model.onnx           ONNX Runtime, or any ONNX runtime
saved_model    export/saved_model/         TensorFlow (``tf.saved_model.load``), TF Serving
litert         export/model.tflite         LiteRT / TensorFlow Lite interpreters
=============  ==========================  ===========================================

Every format takes the same input as the Keras model, float32 ``(N, 28,
28)`` in [0, 1] (named ``image``), and gives ``(N, 10)`` probabilities; the
test suite checks the probabilities against Keras on 1,000 MNIST test images
(largest absolute difference at most 1e-5).

Exporting runs on the TensorFlow backend, because Keras converts to ONNX
through tf2onnx there (on JAX it would need the jax2onnx package and its many
dependencies).  A process whose Keras already runs on another backend exports
in a child process.  ONNX export needs ``pip install onnx tf2onnx``; running
the result needs ``onnxruntime``.

:class:`OnnxPredictor` is a drop-in for :class:`digits.inference.Predictor`
(same ``probabilities``, ``name``, ``info``), so
:func:`digits.inference.recognize` and ``digits serve --runtime onnx`` use it
unchanged.  On a 2-core CPU its model call takes about 16 µs for one image
against 73 µs for Keras on JAX (``python benchmarks/serve_load.py
--forward``), though over HTTP both serve the same number of requests a
second, since decoding and normalizing the picture cost ten times more; the
ONNX server uses a third of the memory (no JAX or Keras loaded).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from digits.errors import DigitsError
from digits.inference import model_threshold

FORMATS = {"onnx": "model.onnx", "saved_model": "saved_model", "litert": "model.tflite"}
"""Export formats and their default names inside ``RUN_DIR/export/``."""

_KERAS_FORMATS = {"onnx": "onnx", "saved_model": "tf_saved_model", "litert": "litert"}
_NEEDS = {"onnx": "onnx tf2onnx", "saved_model": "tensorflow", "litert": "tensorflow"}


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise DigitsError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def default_path(run, fmt: str) -> Path:
    """Where ``digits export`` writes `fmt` for a run: ``RUN_DIR/export/<name>``."""
    from digits.runs import Run

    run = run if isinstance(run, Run) else Run(run)
    return run.path / "export" / FORMATS[_check_format(fmt)]


def export_model(run, fmt: str = "onnx", out: str | os.PathLike | None = None, *,
                 subprocess_: bool | None = None) -> Path:
    """Export the model of `run` (a run directory) as `fmt`; returns the path written.

    The file (or SavedModel folder) is written under a temporary name and
    renamed into place, replacing an earlier export.  Runs on TensorFlow: in
    this process when Keras is not loaded yet or already runs on TensorFlow,
    else (or when `subprocess_` is True) in a child process.
    """
    from digits.backend import running_backend
    from digits.runs import Run

    run = run if isinstance(run, Run) else Run(run)
    _check_format(fmt)
    out = Path(out) if out is not None else default_path(run, fmt)
    if subprocess_ is None:
        subprocess_ = running_backend() not in (None, "tensorflow")
    if subprocess_:
        _export_in_child(run.path, fmt, out)
    else:
        _export_here(run, fmt, out)
    return out


def _export_here(run, fmt: str, out: Path) -> None:
    from digits.backend import use_backend

    use_backend("tensorflow")
    import keras

    loaded = run.load_model()
    # The forward pass in inference mode, fixed in the graph: without training=False the
    # augmentation layers of some models (cnn-bn) end up in the export as random ops that
    # ONNX cannot run.  The wrapper also names the input "image" in every format.
    image = keras.Input((28, 28), dtype="float32", name="image")
    model = keras.Model(image, loaded(image, training=False), name=f"{loaded.name}_inference")
    model(np.zeros((1, 28, 28), np.float32))  # Keras exports only models that have been called
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    except OSError as e:
        raise DigitsError(f"{out.parent}: cannot write the export ({e.strerror or e})") from None
    target = tmp / out.name
    try:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # Keras's tf2onnx patch pokes at np.object
                model.export(str(target), format=_KERAS_FORMATS[fmt], verbose=False)
        except ImportError as e:
            raise DigitsError(f"exporting as {fmt} needs {_NEEDS[fmt]} (pip install {_NEEDS[fmt]}): "
                              f"{_first_line(e)}") from None
        except Exception as e:  # the converters raise many types
            raise DigitsError(f"{run.path}: cannot export as {fmt} ({type(e).__name__}: {_first_line(e)})") from None
        try:
            if out.is_dir() and not out.is_symlink():
                shutil.rmtree(out)
            elif out.exists():
                out.unlink()
            os.replace(target, out)
        except OSError as e:
            raise DigitsError(f"{out}: cannot write the export ({e.strerror or e})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _export_in_child(run_path: Path, fmt: str, out: Path) -> None:
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "digits.export", str(run_path), fmt, str(out)],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("digits export: error: ")]
        message = errors[-1].removeprefix("digits export: error: ") if errors else (
            f"exporting in a TensorFlow process failed: {lines[-1] if lines else proc.returncode}")
        raise DigitsError(message)


# ---------------------------------------------------------------------------
# Running exported models


class OnnxPredictor:
    """Probabilities from an ONNX file with ONNX Runtime; the interface of :class:`digits.inference.Predictor`.

    ``InferenceSession.run`` is thread-safe, so one instance serves every
    thread.  `threads` is ONNX Runtime's intra-op thread count: 1 (the
    default) is fastest for the small batches a server sees, where requests
    already run in parallel threads.
    """

    runtime = "onnx"

    def __init__(self, path: str | os.PathLike, *, name: str = "model", info: dict | None = None,
                 threads: int = 1):
        try:
            import onnxruntime as ort
        except ImportError:
            raise DigitsError("the ONNX runtime needs onnxruntime (pip install onnxruntime)") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise DigitsError(f"{path}: cannot load the ONNX model ({_first_line(e)})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or list(inputs[0].shape)[1:] != [28, 28]:
            raise DigitsError(f"{path}: expected one input of shape (N, 28, 28), "
                              f"got {[tuple(i.shape) for i in inputs]}")
        if not outputs or list(outputs[0].shape)[1:] != [10]:  # (N, 10) probabilities, as from Keras
            raise DigitsError(f"{path}: expected an output of shape (N, 10), "
                              f"got {[tuple(o.shape) for o in outputs]}")
        self._input = inputs[0].name
        self.path = Path(path)
        self.name = name
        self.info = info or {}
        self.threshold = model_threshold(self.info)

    @classmethod
    def from_run(cls, run, onnx_path: str | os.PathLike | None = None, **kwargs) -> "OnnxPredictor":
        """The ONNX model exported from `run` (default ``RUN_DIR/export/model.onnx``)."""
        from digits.runs import Run

        run = run if isinstance(run, Run) else Run(run)
        path = _existing_export(run, "onnx", onnx_path)
        info = {"config": run.config, "metrics": run.metrics, "path": str(run.path), "onnx": str(path)}
        kwargs.setdefault("name", run.path.name)
        return cls(path, info=info, **kwargs)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, 28, 28) float images in [0, 1] → (N, 10) float32 probabilities."""
        from digits.inference import checked_images

        x = checked_images(images)
        if len(x) == 0:
            return np.zeros((0, 10), np.float32)
        return self.session.run(None, {self._input: x})[0]


def exported_probabilities(path: str | os.PathLike, fmt: str, images: np.ndarray) -> np.ndarray:
    """Run an exported model (`fmt` as written by :func:`export_model`) on float32 (N, 28, 28) images.

    ``saved_model`` and ``litert`` import TensorFlow (not Keras), so this
    works in a process whose Keras runs on any backend.
    """
    x = np.ascontiguousarray(images, dtype=np.float32)
    _check_format(fmt)
    if fmt == "onnx":
        return OnnxPredictor(path, threads=0).probabilities(x)
    import tensorflow as tf

    if fmt == "saved_model":
        loaded = tf.saved_model.load(str(path))
        return np.concatenate([loaded.serve(tf.constant(x[i: i + 1024])).numpy()
                               for i in range(0, len(x), 1024)])
    interpreter = _litert_interpreter(path)
    index_in = interpreter.get_input_details()[0]["index"]
    index_out = interpreter.get_output_details()[0]["index"]
    interpreter.resize_tensor_input(index_in, list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(index_in, x)
    interpreter.invoke()
    return interpreter.get_tensor(index_out).copy()


def _litert_interpreter(path):
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter(model_path=str(path))
    except ImportError:
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            return tf.lite.Interpreter(model_path=str(path))


VERIFY_TOLERANCE = 1e-5
"""The largest difference in probability :func:`verify` accepts between an export and its Keras model."""


def verify(run, fmt: str, n: int, *, path: str | os.PathLike | None = None,
           data_dir: str | os.PathLike | None = None) -> float:
    """Compare the export's probabilities with Keras's on the first `n` test images; returns the largest difference.

    `path` is the export (default: where :func:`export_model` writes `fmt`);
    the images come from the run's own dataset.  Raises :class:`DigitsError`
    when the difference is above :data:`VERIFY_TOLERANCE`.  Keras's
    probabilities are computed once for the run and `n`, so checking several
    formats in a row runs the Keras model once.  Call it after exporting: an
    export in this process must come before Keras starts on another backend
    (see :func:`export_model`).
    """
    from digits.runs import Run

    run = run if isinstance(run, Run) else Run(run)
    path = _existing_export(run, fmt, path)
    if n < 1:
        raise DigitsError(f"verifying needs at least 1 test image, got {n}")
    model = run.model_path.stat()
    images, keras_p = _keras_reference(str(run.path), model.st_mtime_ns, model.st_size, n,
                                       None if data_dir is None else str(data_dir))
    exported = exported_probabilities(path, fmt, images)
    if exported.shape != keras_p.shape:
        raise DigitsError(f"{path}: the export answers shape {exported.shape}, Keras {keras_p.shape}")
    diff = float(np.abs(exported - keras_p).max())
    if not diff <= VERIFY_TOLERANCE:
        raise DigitsError(f"{path}: the export differs from the Keras model by {diff:.2e} "
                          f"(limit {VERIFY_TOLERANCE:g})")
    return diff


@functools.lru_cache(maxsize=1)
def _keras_reference(run_path: str, mtime_ns: int, size: int, n: int, data_dir: str | None):
    """The first `n` test images of the run's dataset and the Keras model's probabilities on them.

    Keyed by the model file's time and size, so a retrained run is not
    answered from the cache.
    """
    from digits.datasets import load_dataset, to_inputs
    from digits.inference import Predictor
    from digits.runs import Run

    run = Run(run_path)
    dataset = run.config.get("dataset", "mnist")
    data = load_dataset(dataset, data_dir=data_dir, progress=False)
    if n > len(data.x_test):
        raise DigitsError(f"{dataset} has {len(data.x_test)} test images; cannot verify on {n}")
    images = to_inputs(data.x_test[:n])
    return images, Predictor.from_run(run).probabilities(images)


def _existing_export(run, fmt: str, path: str | os.PathLike | None) -> Path:
    """`path`, or the default export of `fmt`, checked to exist: a missing one says how to make it."""
    path = Path(path) if path is not None else default_path(run, _check_format(fmt))
    if not path.exists():
        raise DigitsError(f"{path}: no {fmt} export; run `digits export {run.path} --format {fmt}`")
    return path


def ensure_onnx(run) -> Path:
    """An ONNX export of `run` that is current: ``RUN_DIR/export/model.onnx`` when newer than the model.

    Otherwise the model is exported (in a TensorFlow child process, so the
    caller's Keras backend does not matter) into a temporary folder removed
    when this process exits, with a note on stderr because exporting takes
    seconds; the run directory is not written to.
    """
    import atexit

    from digits.runs import Run

    run = run if isinstance(run, Run) else Run(run)
    path = default_path(run, "onnx")
    if path.is_file() and path.stat().st_mtime >= run.model_path.stat().st_mtime:
        return path
    folder = Path(tempfile.mkdtemp(prefix="digits-serve-onnx-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    print(f"digits serve: exporting {run.path} to ONNX (run `digits export {run.path}` once to skip this)",
          file=sys.stderr, flush=True)
    return export_model(run, "onnx", folder / "model.onnx", subprocess_=True)


def _main(argv: list[str]) -> int:
    """``python -m digits.export RUN_DIR FORMAT OUT``: the child process of :func:`export_model`."""
    try:
        export_model(argv[0], argv[1], argv[2], subprocess_=False)
    except DigitsError as e:
        print(f"digits export: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
