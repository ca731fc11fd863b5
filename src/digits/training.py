"""Training: the seed recipe, run as fast as this machine allows.

`train()` is the whole of ``digits train``: load the data, build the model
from the registry, fit it with Keras (progress bar, early stopping, best
checkpoint), evaluate on the official test split, and write a run
directory.  The only backend-specific code is :mod:`digits.fastfit`, which
keeps Keras's ``fit`` but runs many batch-32 steps per compiled call on JAX.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import typing
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from digits import distribute, interrupts
from digits.backend import native_bfloat16, running_backend, use_backend
from digits.datasets import load_dataset, to_inputs
from digits.errors import DigitsError
from digits.models import build_model, get_model_spec
from digits.runs import Run, RunWriter, read_json_object


SCHEDULES = ("cosine", "constant", "onecycle")
PRECISIONS = ("float32", "mixed_bfloat16")


def learning_rate_schedule(name: str, peak: float, steps: int):
    """Adam's learning rate over `steps` optimizer steps, from Keras's own schedules.

    - ``cosine``: from `peak` down to 0 along a cosine (the default: seed accuracy, reliably);
    - ``constant``: `peak` throughout (the seeds' Adam);
    - ``onecycle``: up from peak/10 to `peak` over the first quarter, then a cosine to 0
      (large rates early, for the few-epoch ``fast`` recipe).
    """
    import keras

    if name == "constant":
        return peak
    if name == "onecycle":
        warmup = max(1, steps // 4)
        return keras.optimizers.schedules.CosineDecay(
            peak / 10, decay_steps=max(1, steps - warmup), warmup_target=peak, warmup_steps=warmup)
    return keras.optimizers.schedules.CosineDecay(peak, decay_steps=max(1, steps))


@dataclass
class TrainConfig:
    """Everything that decides a run; saved as ``config.json`` beside the model."""

    model: str = "mlp"
    dataset: str = "mnist"
    epochs: int | None = None  # None: the model's own recipe
    batch_size: int | None = None
    learning_rate: float | None = None
    lr_schedule: str | None = None  # None: the model's; see SCHEDULES
    validation_split: float = 0.05
    seed: int | None = None  # None: a random seed, recorded so the run can be repeated
    early_stopping: int | None = None  # patience in epochs on val_loss; None: off
    checkpoint_best: bool = False  # keep the epoch with the best val_loss, not the last
    limit: int | None = None  # train on the first N training images (quick tries, tests)
    backend: str | None = None  # None: the model's measured fastest (see digits.models)
    extra: dict = field(default_factory=dict)  # "architecture": the model's settings (digits tune)
    distribute: bool = False  # data-parallel over every device (digits.distribute)
    precision: str | None = None  # None: the model's, if this processor does bfloat16 natively; see PRECISIONS
    tensorboard: bool = False  # Keras's TensorBoard logs in RUN/tensorboard/ (imports TensorFlow only when on)

    def resolved(self) -> "TrainConfig":
        """Fill every None from the model's recipe and check the values."""
        spec = get_model_spec(self.model)
        cfg = TrainConfig(**asdict(self))
        cfg.epochs = spec.epochs if cfg.epochs is None else cfg.epochs
        cfg.batch_size = spec.batch_size if cfg.batch_size is None else cfg.batch_size
        cfg.learning_rate = spec.learning_rate if cfg.learning_rate is None else cfg.learning_rate
        cfg.lr_schedule = cfg.lr_schedule or spec.lr_schedule
        if cfg.precision is None:
            cfg.precision = spec.precision if native_bfloat16() else "float32"
        cfg.seed = random.randrange(2**31) if cfg.seed is None else cfg.seed
        cfg.backend = cfg.backend or running_backend() or os.environ.get("KERAS_BACKEND") or spec.backend
        _check(cfg)
        return cfg


def check_types(values: typing.Mapping, where: str = "") -> None:
    """Each value of `values` has its TrainConfig field's type, or one DigitsError naming the key.

    The field annotations are the schema, checked strictly by pydantic: a
    config file is JSON written by hand, so "32" is not 32, 1.0 is not an
    epoch count, "no" is not false and Infinity is not a learning rate.  The
    flags arrive typed by argparse; :func:`_check` then applies the same
    ranges to both.  `where` prefixes the message (a file's path).
    """
    from pydantic import ValidationError

    adapters = _field_adapters()
    for key, value in values.items():
        if key not in adapters:
            continue
        try:
            adapters[key].validate_python(value)
        except ValidationError as e:
            kind = e.errors()[0]["type"]
            what = _TYPE_WORDS.get(kind, e.errors()[0]["msg"].lower())
            raise DigitsError(f"{where}{key} must be {what}, got {_as_json(value)}") from None


_TYPE_WORDS = {"int_type": "a whole number", "float_type": "a number", "finite_number": "a finite number",
               "string_type": "a string", "bool_type": "true or false", "dict_type": "a JSON object"}


@functools.cache
def _field_adapters() -> dict:
    """A strict pydantic validator for each TrainConfig field, from its annotation."""
    from pydantic import ConfigDict, TypeAdapter

    strict = ConfigDict(strict=True, allow_inf_nan=False)
    return {name: TypeAdapter(hint, config=strict) for name, hint in typing.get_type_hints(TrainConfig).items()}


def _as_json(value) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _check(cfg: TrainConfig) -> None:
    """The ranges and names every config must keep, whether from flags, a file or a Python call."""
    from digits.backend import BACKENDS
    from digits.datasets.sources import get_spec

    check_types(asdict(cfg))
    if cfg.epochs < 1:
        raise DigitsError(f"epochs must be at least 1, got {cfg.epochs}")
    if cfg.batch_size < 1:
        raise DigitsError(f"batch size must be at least 1, got {cfg.batch_size}")
    if not (cfg.learning_rate > 0 and math.isfinite(cfg.learning_rate)):
        raise DigitsError(f"learning rate must be positive and finite, got {cfg.learning_rate}")
    if not 0 <= cfg.seed < 2**32:
        raise DigitsError(f"seed must be a whole number from 0 to {2**32 - 1}, got {cfg.seed}")
    if not 0 <= cfg.validation_split < 1:
        raise DigitsError(f"validation split must be in [0, 1), got {cfg.validation_split}")
    if cfg.lr_schedule not in SCHEDULES:
        raise DigitsError(f"unknown learning-rate schedule {cfg.lr_schedule!r}; use {', '.join(SCHEDULES)}")
    if cfg.precision not in PRECISIONS:
        raise DigitsError(f"unknown precision {cfg.precision!r}; use {', '.join(PRECISIONS)}")
    if cfg.early_stopping is not None and cfg.early_stopping < 1:
        raise DigitsError(f"early-stopping patience must be at least 1, got {cfg.early_stopping}")
    if cfg.limit is not None and cfg.limit < 10:
        raise DigitsError(f"limit must be at least 10 images, got {cfg.limit}")
    if (cfg.early_stopping or cfg.checkpoint_best) and cfg.validation_split == 0:
        raise DigitsError("early stopping and --checkpoint-best need a validation split above 0")
    if cfg.backend not in BACKENDS:
        raise DigitsError(f"unknown backend {cfg.backend!r}; choose one of {', '.join(BACKENDS)}")
    if cfg.tensorboard:
        _check_tensorboard()
    get_spec(cfg.dataset)
    architecture = cfg.extra.get("architecture")
    if architecture is not None and not isinstance(architecture, dict):
        raise DigitsError(f"extra.architecture must be a JSON object, got {_as_json(architecture)}")
    get_model_spec(cfg.model).architecture(architecture)


def train(
    config: TrainConfig | None = None,
    *,
    out: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    verbose: int = 1,
    **overrides,
) -> Run:
    """Train a registry model and save a complete run directory; returns the run.

    ``train(model="mlp", epochs=5)`` is seed 001.  Keyword overrides are
    fields of :class:`TrainConfig`.  Ctrl-C and SIGTERM always stop it with
    nothing written (:mod:`digits.interrupts`), even when Python drops the
    KeyboardInterrupt.
    """
    with interrupts.stop_on_signals():
        return _train(config, out=out, data_dir=data_dir, verbose=verbose, **overrides)


def _train(config, *, out, data_dir, verbose, **overrides) -> Run:
    config = (config or TrainConfig())
    cfg = TrainConfig(**{**asdict(config), **overrides}).resolved()
    writer = RunWriter.create(out, cfg.model)  # fails early, before any training, on a bad --out
    use_backend(cfg.backend)
    if cfg.distribute:  # multi-host: every process trains alike, the first one writes the run
        cfg.seed = distribute.shared_seed(cfg.backend, cfg.seed)
        if not distribute.is_chief(cfg.backend):
            writer = RunWriter.create(Path(tempfile.mkdtemp(prefix="digits-worker-")) / "run", cfg.model)
    data = load_dataset(cfg.dataset, data_dir=data_dir, progress=verbose > 0)

    import keras

    from digits import fastfit
    from digits.evaluation import evaluate_arrays

    x, y = training_arrays(cfg, data)

    with writer, ThreadPoolExecutor(max_workers=1) as background:
        # The figures are drawn in the background: the samples (which need only the data) while
        # the model trains, the curves while it is evaluated and saved (Matplotlib's import, which
        # happens there too, and the drawing, 1-3 s of CPU on a busy machine, overlap the rest).
        samples_figure = background.submit(_figure, "samples_png", data.x_train, data.y_train, data.class_names)
        callbacks = [keras.callbacks.CSVLogger(str(writer.path / "history.csv"))]
        if cfg.checkpoint_best:
            callbacks.append(fastfit.BestCheckpoint(writer.path / "best.keras", verbose=verbose))
        if cfg.tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(log_dir=str(writer.path / TENSORBOARD_DIR)))
        started = time.perf_counter()
        model, history, placement = fit_model(cfg, x, y, callbacks=callbacks, verbose=verbose)
        train_seconds = time.perf_counter() - started
        n_fit = held_out_images(len(x), cfg.validation_split).start
        if cfg.checkpoint_best and (writer.path / "best.keras").exists():
            model.load_weights(writer.path / "best.keras")
        model = inference_copy(model)
        curves_figure = background.submit(_figure, "curves_png", history.history)

        result = evaluate_arrays(model, to_inputs(data.x_test), data.y_test)
        threshold = _validation_threshold(model, x[n_fit:], y[n_fit:])
        metrics = {
            "test_accuracy": result.accuracy,
            "test_loss": result.loss,
            "train_seconds": round(train_seconds, 3),
            "epochs_run": len(history.epoch),
            "parameters": model.count_params(),
            "train_images": n_fit,
            "validation_images": len(x) - n_fit,
            "test_images": len(data.y_test),
            **threshold,
        }
        last = {k: float(v[-1]) for k, v in history.history.items() if v}
        metrics.update({f"final_{k}": round(v, 6) for k, v in last.items()})
        config_doc = {
            **asdict(cfg),
            "devices": placement.devices,
            "dataset_source": data.source,
            "class_names": list(data.class_names),
            # The recipe's optimizer settings that are not TrainConfig fields, so the file says all.
            "optimizer": _optimizer_settings(cfg),
            "versions": _versions(),
        }
        writer.save_model(model)
        writer.write_json("config.json", config_doc)
        writer.write_json("metrics.json", metrics)
        writer.write_text("summary.txt", _summary_text(model))
        writer.write_bytes("plots/samples.png", samples_figure.result())
        writer.write_bytes("plots/curves.png", curves_figure.result())
        interrupts.check()  # the last moment a stop request keeps the run from being renamed into place
    return Run(writer.final_path)


TENSORBOARD_DIR = "tensorboard"
"""Where ``--tensorboard`` puts Keras's logs in a run: ``train/`` and ``validation/`` event files, so
``tensorboard --logdir runs/`` lists every run's curves side by side."""


def _check_tensorboard() -> None:
    """Keras's TensorBoard callback writes through ``tf.summary`` on every backend (JAX, torch too)."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        raise DigitsError("--tensorboard needs TensorFlow to write its logs, and it is not installed "
                          "(pip install tensorflow-cpu)")


def _figure(name: str, *args) -> bytes:
    """``digits.plots.NAME(*args)``, importing Matplotlib in the thread that draws."""
    from digits import plots

    return getattr(plots, name)(*args)


def _validation_threshold(model, x_val: np.ndarray, y_val: np.ndarray) -> dict:
    """The run's abstain threshold, measured on its validation images (none held out: the default)."""
    from digits.evaluation import predict_probabilities
    from digits.inference import ABSTAIN_BELOW, measure_threshold

    if len(x_val) == 0:
        return {"threshold": ABSTAIN_BELOW, "threshold_measured_on": "nothing: no validation split (the default)"}
    labels = y_val.argmax(axis=1) if y_val.ndim == 2 else y_val
    value = measure_threshold(predict_probabilities(model, x_val), labels)
    return {"threshold": value, "threshold_measured_on": f"{len(x_val)} validation images"}


def held_out_images(n: int, split: float) -> range:
    """Which of `n` training images a run holds out for validation, as ``fit`` carves them.

    Keras's ``fit(validation_split=split)`` trains on the first ``floor(n * (1 - split))``
    and validates on the rest; every count and slice of a run's held-out images comes from here.
    """
    return range(math.floor(n * (1.0 - split)), n)


def training_arrays(cfg: TrainConfig, data) -> tuple[np.ndarray, np.ndarray]:
    """The training images a run uses (the first `limit`), as model inputs and labels.

    ``validation_split`` is carved from their end by ``fit``; the test split is not here.
    """
    x_train, y_train = data.x_train, data.y_train
    if cfg.limit:
        x_train, y_train = x_train[: cfg.limit], y_train[: cfg.limit]
    return to_inputs(x_train), _labels(y_train, get_model_spec(cfg.model).one_hot)


def fit_model(cfg: TrainConfig, x: np.ndarray, y: np.ndarray, *, callbacks=(), verbose: int = 0):
    """Build `cfg`'s model and fit it: the recipe of ``digits train``, and of every tuning trial.

    `cfg` is resolved and its backend chosen.  Seeds Keras, builds the model
    with its architecture settings, schedules the learning rate, adds early
    stopping if asked, and fits on (`x`, `y`) less the validation split (on
    every device if ``cfg.distribute``).  Returns (model, history, placement).
    """
    import keras

    from digits import fastfit

    spec = get_model_spec(cfg.model)
    keras.utils.set_random_seed(cfg.seed)
    callbacks = list(callbacks)
    if cfg.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(
            patience=cfg.early_stopping, restore_best_weights=True, verbose=verbose))
    with distribute.data_parallel(cfg.distribute, cfg.batch_size) as placement, _dtype_policy(cfg.precision):
        model = build_model(cfg.model, cfg.extra.get("architecture"))
        n_fit = held_out_images(len(x), cfg.validation_split).start
        steps = cfg.epochs * -(-n_fit // cfg.batch_size)
        lr = learning_rate_schedule(cfg.lr_schedule, cfg.learning_rate, steps)
        adam = _optimizer_settings(cfg)  # what config.json records, so the two cannot differ
        loss = "categorical_crossentropy" if spec.one_hot else "sparse_categorical_crossentropy"
        if verbose:
            model.summary()
        history = fastfit.fit(
            model,
            optimizer=keras.optimizers.Adam(lr, beta_1=adam["beta_1"], beta_2=adam["beta_2"]),
            loss=loss,
            x=x,
            y=y,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            validation_split=cfg.validation_split,
            callbacks=callbacks,
            verbose=verbose,
            jit_compile=spec.jit_compile,
        )
    return model, history, placement


def _optimizer_settings(cfg: TrainConfig) -> dict:
    """The recipe's optimizer: Adam with its betas (`fit_model` builds it, config.json records it)."""
    beta_1, beta_2 = get_model_spec(cfg.model).adam_betas
    return {"name": "adam", "beta_1": beta_1, "beta_2": beta_2}


@contextmanager
def _dtype_policy(name: str):
    """Build layers under Keras's dtype policy `name` (mixed: float32 weights, `name`'s compute dtype)."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def inference_copy(model):
    """The trained `model` as a run saves it: the same layers and weights, float32, no optimizer.

    Adam's moments would triple the file (cnn-bn: 4.27 MB against 1.48 MB)
    and nothing resumes training from a run.  A mixed-precision model comes
    back computing in float32, so the saved model answers alike on every
    processor (bfloat16 is slow where it is emulated) and its test accuracy
    is measured as it will be served.
    """
    config = model.get_config()  # the architecture alone; keras.models.clone_model would copy the compile too
    for layer in config["layers"]:
        layer["config"]["dtype"] = "float32"
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def _labels(y: np.ndarray, one_hot: bool) -> np.ndarray:
    y = y.astype(np.int32)
    return np.eye(10, dtype=np.float32)[y] if one_hot else y


def _summary_text(model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    return "\n".join(lines) + "\n"


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    import keras

    versions = {"python": platform.python_version(), "keras": keras.__version__}
    for dist in ("digits", "numpy", "jax", "jaxlib", "tensorflow-cpu", "tensorflow", "torch"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    versions["backend"] = keras.backend.backend()
    return versions


def load_config_file(path: str | os.PathLike) -> TrainConfig:
    """A ``config.json`` from a run (or one written by hand) as a TrainConfig.

    Unknown keys and values of the wrong type are refused here, with the
    file's path and the key (:func:`check_types`); the ranges are checked
    when the config is resolved, as for flags.
    """
    doc = read_json_object(path, "config")
    known = TrainConfig.__dataclass_fields__
    unknown = sorted(set(doc) - set(known) - {"dataset_source", "class_names", "versions", "devices", "optimizer"})
    if unknown:
        raise DigitsError(f"{path}: unknown config keys {', '.join(unknown)}")
    values = {k: v for k, v in doc.items() if k in known}
    check_types(values, f"{path}: ")
    return TrainConfig(**values)
