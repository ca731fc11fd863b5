"""``digits tune``: hyperparameter search with Optuna, in a study store that survives a kill.

Each trial is one ``digits train`` recipe (:func:`digits.training.fit_model`)
on the study's training images, with a learning rate, batch size, epochs and
the model's architecture settings (width/depth or filters/blocks/dense,
dropout, augmentation strength; see :mod:`digits.models`) drawn by Optuna's
TPE sampler.  The score is the best per-epoch ``val_accuracy`` on a
validation split carved from the *training* images; the test split is never
loaded into a trial.  Bad trials stop early: Optuna's median pruner sees
every epoch's ``val_accuracy`` and ends a trial below the median of earlier
trials at the same epoch; Keras's early stopping ends one that stops improving.

Every trial is written to an Optuna storage as it finishes: by default an
SQLite file (``studies/NAME.db``), or any SQLAlchemy URL such as
``postgresql://user:password@host/db``, which lets several machines run
``digits tune`` on one study at once.  Running the same command again
resumes the study: finished trials are kept; a trial interrupted by Ctrl-C
(or SIGTERM) or by a killed process (its heartbeat stops) is run again with
the same parameters; new trials are added until the study has ``trials``
finished ones.

Results (in ``studies/NAME/`` by default): ``best.json``, the best trial's
complete configuration, which ``digits train --config best.json`` repeats
exactly; ``trials.csv``; ``history.png`` (optimization history) and
``importances.png`` (parameter importances, PED-ANOVA).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import logging
import math
import os
import random
import re
import socket
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from digits import interrupts
from digits.errors import DigitsError
from digits.files import write_bytes, write_json, write_text
from digits.models import get_model_spec
from digits.training import TrainConfig

STUDIES_DIR = Path("studies")
TRAINING_PARAMETERS = ("learning_rate", "batch_size", "epochs")
DEFAULT_HEARTBEAT = 10  # seconds; a running trial silent for 3 heartbeats counts as crashed
MAX_RETRIES = 2  # an interrupted trial is run again at most this often
DIRECTION = "maximize"  # val_accuracy


# --- the search space ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dimension:
    """One searched setting: a range (int or float, optionally log-scaled), a set of choices, or fixed."""

    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple | None = None
    fixed: Any = None

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int) and not isinstance(self.step, float)

    def suggest(self, trial, name: str):
        if self.fixed is not None:
            return self.fixed
        if self.choices is not None:
            return trial.suggest_categorical(name, list(self.choices))
        if self.integer:
            return trial.suggest_int(name, self.low, self.high, log=self.log, step=self.step or 1)
        return trial.suggest_float(name, float(self.low), float(self.high), log=self.log, step=self.step)

    def values(self) -> list:
        """The extreme (or every) value this dimension can produce, for checking."""
        if self.fixed is not None:
            return [self.fixed]
        if self.choices is not None:
            return list(self.choices)
        return [self.low, self.high]

    def contains(self, value) -> bool:
        if self.fixed is not None:
            return value == self.fixed
        if self.choices is not None:
            return value in self.choices
        return self.low <= value <= self.high

    def to_json(self):
        if self.fixed is not None:
            return self.fixed
        if self.choices is not None:
            return list(self.choices)
        doc = {"low": self.low, "high": self.high}
        if self.log:
            doc["log"] = True
        if self.step is not None:
            doc["step"] = self.step
        return doc


#: Where each setting is searched unless a --space file says otherwise.
DEFAULT_RANGES: dict[str, Dimension] = {
    "learning_rate": Dimension(1e-4, 1e-2, log=True),
    "batch_size": Dimension(choices=(32, 64, 128, 256)),
    # "epochs": 1 .. --max-epochs, set per study
    "width": Dimension(choices=(64, 128, 256, 512)),
    "depth": Dimension(1, 3),
    "filters": Dimension(choices=(16, 32, 48, 64)),
    "blocks": Dimension(1, 3),
    "dense": Dimension(choices=(64, 128, 256)),
    "dropout": Dimension(0.0, 0.5),
    "augment": Dimension(0.0, 0.15),
}


def default_space(model: str, max_epochs: int) -> dict[str, Dimension]:
    """The search space for `model`: training settings plus its architecture settings."""
    spec = get_model_spec(model)
    space = {name: DEFAULT_RANGES[name] for name in ("learning_rate", "batch_size")}
    space["epochs"] = Dimension(1, max_epochs)
    for name, hp in spec.hyperparameters.items():
        dim = DEFAULT_RANGES.get(name) or Dimension(hp.low, hp.high)
        space[name] = dim
    return space


def parse_space(doc: Any, model: str, max_epochs: int) -> dict[str, Dimension]:
    """The default space for `model` with the entries of `doc` (a --space JSON object) replacing it.

    Each entry is a fixed value (``"augment": 0``), a list of choices
    (``"batch_size": [64, 128]``) or a range (``"learning_rate": {"low": 1e-4,
    "high": 1e-2, "log": true}``; integers when both ends are).  Any mistake
    is one DigitsError naming the entry.
    """
    space = default_space(model, max_epochs)
    if not isinstance(doc, dict):
        raise DigitsError("search space: expected a JSON object of setting: range")
    spec = get_model_spec(model)
    known = [*TRAINING_PARAMETERS, *spec.hyperparameters]
    for name, value in doc.items():
        if name not in known:
            raise DigitsError(f"search space: {name!r} is not a setting of model {model!r} "
                              f"(searchable: {', '.join(known)})")
        dim = _dimension(name, value)
        real = name == "learning_rate" or (name in spec.hyperparameters and not spec.hyperparameters[name].integer)
        if real and dim.low is not None:  # {"low": 0, "high": 1} of a dropout is a float range
            dim = replace(dim, low=float(dim.low), high=float(dim.high))
        space[name] = dim
    for name, dim in space.items():
        _check_domain(name, dim, spec)
    return space


def _dimension(name: str, value: Any) -> Dimension:
    where = f"search space: {name}"
    if isinstance(value, bool) or value is None:
        raise DigitsError(f"{where}: expected a number, a list of choices or {{\"low\", \"high\"}}")
    if isinstance(value, (int, float)):
        return Dimension(fixed=value)
    if isinstance(value, list):
        if not value:
            raise DigitsError(f"{where}: the list of choices is empty")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise DigitsError(f"{where}: choices must be numbers, got {value!r}")
        if len(set(value)) != len(value):
            raise DigitsError(f"{where}: repeated choices in {value!r}")
        return Dimension(choices=tuple(value))
    if isinstance(value, dict):
        extra = sorted(set(value) - {"low", "high", "log", "step"})
        if extra:
            raise DigitsError(f"{where}: unknown key {', '.join(extra)} (use low, high, log, step)")
        low, high = value.get("low"), value.get("high")
        for end, v in (("low", low), ("high", high)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise DigitsError(f"{where}: {end} must be a number, got {v!r}")
        if not low < high:
            raise DigitsError(f"{where}: low must be below high, got {low} and {high}")
        log = value.get("log", False)
        if not isinstance(log, bool):
            raise DigitsError(f"{where}: log must be true or false, got {log!r}")
        if log and low <= 0:
            raise DigitsError(f"{where}: a log range needs low above 0, got {low}")
        step = value.get("step")
        if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0):
            raise DigitsError(f"{where}: step must be a positive number, got {step!r}")
        if step is not None and log:
            raise DigitsError(f"{where}: a range cannot have both log and step")
        return Dimension(low, high, log=log, step=step)
    raise DigitsError(f"{where}: expected a number, a list of choices or {{\"low\", \"high\"}}, "
                      f"got {value!r}")


def _check_domain(name: str, dim: Dimension, spec) -> None:
    """Every value `dim` can produce must be one a run accepts."""
    if name in spec.hyperparameters:
        hp = spec.hyperparameters[name]
        integer, low, high = hp.integer, hp.low, hp.high
    elif name == "learning_rate":
        integer, low, high = False, 0.0, 10.0
    else:  # batch_size, epochs
        integer, low, high = True, 1, 100_000
    if integer and isinstance(dim.step, float):
        raise DigitsError(f"search space: {name} is a whole number; its step must be one too")
    for v in dim.values():
        if integer and not isinstance(v, int):
            raise DigitsError(f"search space: {name} takes whole numbers, got {v!r}")
        if not low <= v <= high or (name == "learning_rate" and v <= 0):
            bounds = f"(0, {high}]" if name == "learning_rate" else f"[{low}, {high}]"
            raise DigitsError(f"search space: {name} must stay in {bounds}, got {v!r}")


def config_for(base: TrainConfig, params: Mapping[str, Any]) -> TrainConfig:
    """The training configuration of one trial: `base` with the trial's settings."""
    training = {k: params[k] for k in TRAINING_PARAMETERS if k in params}
    architecture = {k: v for k, v in params.items() if k not in TRAINING_PARAMETERS}
    spec = get_model_spec(base.model)
    for name, value in list(architecture.items()):
        if spec.hyperparameters[name].integer:
            architecture[name] = int(value)
    for name in ("batch_size", "epochs"):
        if name in training:
            training[name] = int(training[name])
    extra = {**base.extra, "architecture": {**base.extra.get("architecture", {}), **architecture}}
    return replace(base, **training, extra=extra)


def baseline_params(model: str, space: Mapping[str, Dimension]) -> dict:
    """The model's own recipe as trial parameters (epochs capped by the space): trial 0 of a study."""
    spec = get_model_spec(model)
    params: dict[str, Any] = {"learning_rate": spec.learning_rate, "batch_size": spec.batch_size,
                              "epochs": spec.epochs}
    params.update({name: hp.default for name, hp in spec.hyperparameters.items()})
    if any(space[k].fixed is not None and space[k].fixed != v for k, v in params.items() if k != "epochs"):
        return {}  # the space pins a setting to another value: the recipe is not among its trials
    params = {k: v for k, v in params.items() if k in space and space[k].fixed is None}
    if "epochs" in params and space["epochs"].choices is None:
        params["epochs"] = min(max(params["epochs"], space["epochs"].low), space["epochs"].high)
    if not all(space[k].contains(v) for k, v in params.items()):
        return {}  # the recipe lies outside the searched space: no baseline trial
    return params


# --- the study store --------------------------------------------------------------------------------

def default_storage(study: str) -> str:
    return f"sqlite:///{STUDIES_DIR / (study + '.db')}"


def redact(text: str) -> str:
    """`text` (a storage URL, or an error message quoting one) with every URL's password hidden.

    The password runs from the user's ``:`` to the *last* ``@`` before the
    host, so ``user:p@ss@host`` hides all of ``p@ss`` (SQLAlchemy's own
    ``make_url`` would read the host as ``ss@host`` and print ``ss``), and an
    empty user (``://:secret@host``) hides it too.
    """
    return re.sub(r"(://[^\s/?#@:]*):\S*@", r"\1:***@", text)


DRIVER_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient",
                   "pymysql": "pymysql", "mysql": "mysql-connector-python", "pg8000": "pg8000"}
"""pip's name for a database driver SQLAlchemy imports by another (``mysql://`` imports MySQLdb)."""


def open_storage(url: str, *, heartbeat: int = DEFAULT_HEARTBEAT):
    """An Optuna RDB storage at `url` (SQLite file or server), with heartbeats; one clear error if not."""
    import optuna
    from optuna.storages import RDBStorage

    if "://" not in url:
        raise DigitsError(f"storage {url!r} is not a database URL; use sqlite:///FILE.db or "
                          "postgresql://USER:PASSWORD@HOST/DB")
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    if url.split("?", 1)[0].count("@") > 1:
        # SQLAlchemy ends the password at the first "@": it would read the rest of it as the host.
        raise DigitsError(f"storage {redact(url)}: write an '@' in the user name or password as %40")
    if scheme == "sqlite":
        path = url.split("://", 1)[1].lstrip("/") if url.startswith("sqlite:///") else ""
        if url.startswith("sqlite:////"):
            path = "/" + url[len("sqlite:////"):]
        if path and path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise DigitsError(f"storage {url}: cannot create {Path(path).parent} ({e.strerror})") from None
    kwargs = {"pool_pre_ping": True}
    if scheme == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": 10}
        url = _postgres_driver(url)
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    try:
        for attempt in range(6):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return RDBStorage(
                        url,
                        engine_kwargs=kwargs,
                        heartbeat_interval=heartbeat,
                        grace_period=3 * heartbeat,
                        heartbeat_stale_trial_callback=requeue,  # a killed process's trial runs again
                    )
            except (IntegrityError, ProgrammingError):
                # Workers started together on an empty database race to create Optuna's tables
                # ("type studydirection already exists"): the loser waits and finds them made.
                if attempt == 5:
                    raise
                time.sleep(0.3 + random.random())
    except ImportError as e:  # SQLAlchemy imports the URL's driver (mysql://: MySQLdb) only now
        raise DigitsError(f"storage {redact(url)}: {_missing_driver(e)}") from None
    except Exception as e:  # SQLAlchemy: bad URL, unreachable server, wrong password, no such database
        raise DigitsError(f"cannot open study storage {redact(url)}: {_first_line(e)}") from None


def _missing_driver(error: ImportError) -> str:
    """Which driver is missing and how to install it (Optuna wraps SQLAlchemy's ImportError)."""
    while error is not None and not getattr(error, "name", None):
        error = error.__cause__ or error.__context__
    if error is None:
        return "its database driver is not installed"
    driver = error.name.split(".")[0]
    return f"its database driver {driver} is not installed (pip install '{DRIVER_PACKAGES.get(driver, driver)}')"


def _postgres_driver(url: str) -> str:
    """A plain postgresql:// URL names SQLAlchemy's default driver (psycopg 3); use psycopg2 if
    that is the one installed."""
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def requeue(study, trial) -> None:
    """Queue an interrupted trial's settings again (at most MAX_RETRIES times), keeping its role."""
    retries = trial.user_attrs.get("retries", 0)
    if retries >= MAX_RETRIES:
        return
    attrs = {"retry_of": trial.number, "retries": retries + 1}
    if trial.user_attrs.get("baseline"):
        attrs["baseline"] = True
    study.enqueue_trial(dict(trial.params), user_attrs=attrs)


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip()
    return redact(text.splitlines()[0]) if text else type(e).__name__


# --- running a study --------------------------------------------------------------------------------

@dataclass
class TuneResult:
    """What ``digits tune`` reports: the study, its trials, the best one, the files written."""

    study_name: str
    storage: str
    out: Path
    rows: list[dict]
    best: dict | None
    baseline: dict | None
    ran: int  # trials finished by this invocation
    files: dict[str, Path] = field(default_factory=dict)


def tune(
    model: str = "cnn",
    *,
    trials: int = 20,
    timeout: float | None = None,
    study: str | None = None,
    storage: str | None = None,
    out: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    dataset: str = "mnist",
    limit: int | None = None,
    max_epochs: int | None = None,
    validation_split: float = 0.1,
    early_stopping: int | None = 2,
    seed: int = 0,
    space: Mapping | None = None,
    backend: str | None = None,
    heartbeat: int = DEFAULT_HEARTBEAT,
    verbose: int = 1,
    log: Callable[[str], None] = print,
) -> TuneResult:
    """Run (or resume) the study until it has `trials` finished trials; write its results."""
    try:
        import optuna
    except ImportError:
        raise DigitsError("digits tune needs Optuna: pip install optuna") from None

    spec = get_model_spec(model)
    if trials < 1:
        raise DigitsError(f"trials must be at least 1, got {trials}")
    if timeout is not None and not timeout > 0:
        raise DigitsError(f"timeout must be positive, got {timeout}")
    if not 0 < validation_split < 1:
        raise DigitsError(f"tuning needs a validation split in (0, 1), got {validation_split}")
    if heartbeat < 1:
        raise DigitsError(f"heartbeat must be at least 1 second, got {heartbeat}")
    capped = max_epochs is not None
    max_epochs = max_epochs or spec.epochs
    if max_epochs < 1:
        raise DigitsError(f"max epochs must be at least 1, got {max_epochs}")
    search = parse_space(dict(space or {}), model, max_epochs)
    if capped and "epochs" in (space or {}) and max(search["epochs"].values()) > max_epochs:
        # The space's epochs entry replaces the 1..max_epochs range; silently going past
        # the cap the user also asked for would make trials longer than promised.
        raise DigitsError(f"search space: epochs reaches {max(search['epochs'].values())}, above max epochs "
                          f"{max_epochs}; lower one of them")
    study_name = study or model
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", study_name):
        raise DigitsError(f"study name {study_name!r}: use letters, digits, '.', '_' and '-'")
    storage_url = storage or default_storage(study_name)
    out = Path(out) if out is not None else STUDIES_DIR / study_name
    base = TrainConfig(model=model, dataset=dataset, validation_split=validation_split, seed=seed,
                       early_stopping=early_stopping, limit=limit, backend=backend).resolved()
    setup = {  # what makes trials comparable: a resumed study must not change it
        "model": model, "dataset": dataset, "limit": limit, "validation_split": validation_split,
        "early_stopping": early_stopping, "seed": seed, "backend": base.backend,
        "space": {k: v.to_json() for k, v in search.items()},
    }

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = open_storage(storage_url, heartbeat=heartbeat)
    options = dict(
        study_name=study_name, storage=store,
        sampler=optuna.samplers.TPESampler(n_startup_trials=max(3, min(10, trials // 3)),
                                           constant_liar=True),  # constant_liar: parallel workers
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )
    try:
        try:  # exactly one process creates the study (the database enforces it) and queues trial 0
            the_study = optuna.create_study(direction=DIRECTION, **options)
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            the_study = optuna.load_study(**options)
            created = False
    except Exception as e:
        raise DigitsError(f"cannot open study {study_name!r} in {redact(storage_url)}: {_first_line(e)}") from None
    if the_study.direction.name != DIRECTION.upper():
        raise DigitsError(f"study {study_name!r} does not maximize an accuracy; choose another --study")
    _check_setup(the_study, setup, study_name)
    if created:
        baseline = baseline_params(model, search)  # the model's own recipe, to compare with
        if baseline:
            the_study.enqueue_trial(baseline, user_attrs={"baseline": True})

    finished = _finished(the_study)
    remaining = trials - len(finished)
    log(f"study {study_name!r} in {redact(storage_url)}: {len(finished)} finished trial(s)"
        + (f", running {remaining} more" if remaining > 0 else ", nothing left to run"))

    ran = 0
    if remaining > 0:
        from digits.backend import use_backend
        from digits.datasets import load_dataset
        from digits.training import training_arrays

        use_backend(base.backend)
        if base.backend == "tensorflow":  # every trial is a new model: retracing is expected
            logging.getLogger("tensorflow").setLevel(logging.ERROR)
        data = load_dataset(dataset, data_dir=data_dir, progress=verbose > 0)
        x, y = training_arrays(base, data)  # the test split is never used
        del data
        objective = _Objective(base, search, x, y, log=log if verbose else (lambda _: None))
        with interrupts.stop_on_signals(), _resume_hint(study_name, log):
            the_study.optimize(
                objective,
                n_trials=remaining,
                timeout=timeout,
                callbacks=[optuna.study.MaxTrialsCallback(
                    trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)),
                    interrupts.check],
                gc_after_trial=True,
            )
        ran = objective.finished
    return write_results(the_study, storage_url, out, log=log, ran=ran)


def _finished(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def _check_setup(study, setup: dict, name: str) -> None:
    stored = study.user_attrs.get("setup")
    if stored is None:
        study.set_user_attr("setup", setup)
        return
    changed = [k for k in setup if k in stored  # a setting an older study did not record is not checked
               and json.dumps(stored[k], sort_keys=True) != json.dumps(setup[k], sort_keys=True)]
    if changed:
        was = ", ".join(f"{k}={json.dumps(stored[k])} (now {json.dumps(setup[k])})" for k in changed)
        raise DigitsError(f"study {name!r} was started with {was}; resume it with the same settings "
                          "or start a new one with --study")


class _Objective:
    """One trial: draw the settings, train with the pruning callback, score the best val_accuracy."""

    def __init__(self, base: TrainConfig, space: Mapping[str, Dimension], x, y, log):
        self.base, self.space, self.x, self.y, self.log = base, space, x, y, log
        self.finished = 0  # trials this process completed or pruned

    def __call__(self, trial) -> float:
        try:
            return self._run(trial)
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM: Optuna records this trial as failed; queue its settings again
            # so that the next `digits tune` starts by re-running it.
            requeue(trial.study, trial)
            raise

    def _run(self, trial) -> float:
        import keras
        import optuna

        from digits.training import fit_model

        params = {name: dim.suggest(trial, name) for name, dim in self.space.items()}
        cfg = config_for(self.base, params).resolved()
        trial.set_user_attr("config", asdict(cfg))
        retry_of = trial.user_attrs.get("retry_of")
        note = f" (re-run of interrupted trial {retry_of})" if retry_of is not None else ""
        self.log(f"trial {trial.number}{note}: {_describe(trial.params)}")
        keras.backend.clear_session()
        interrupts.check()
        started = time.perf_counter()
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        pruning = _pruning_callback_class()(trial)
        try:
            fit_model(cfg, self.x, self.y, callbacks=[pruning], verbose=0)
        except optuna.TrialPruned as e:
            self.finished += 1
            self.log(f"trial {trial.number}: pruned ({e})")
            raise
        finally:
            seconds = round(time.perf_counter() - started, 2)
            trial.set_user_attr("train_seconds", seconds)
            trial.set_user_attr("val_accuracy_per_epoch", pruning.scores)
        self.finished += 1
        if not pruning.scores or not all(math.isfinite(s) for s in pruning.scores):
            raise optuna.TrialPruned("no finite val_accuracy (diverged)")
        best = max(pruning.scores)
        self.log(f"trial {trial.number}: val_accuracy {best:.4f} in {len(pruning.scores)} epoch(s), "
                 f"{seconds:.1f} s")
        return best


@functools.cache
def _pruning_callback_class():
    import keras

    class PruningCallback(keras.callbacks.Callback):
        """Report each epoch's val_accuracy to Optuna; stop the trial when the pruner says so."""

        def __init__(self, trial):
            super().__init__()
            self.trial = trial
            self.scores: list[float] = []

        def on_epoch_end(self, epoch, logs=None):
            import optuna

            score = float((logs or {}).get("val_accuracy", float("nan")))
            self.scores.append(score)
            if not math.isfinite(score):
                return
            self.trial.report(score, epoch)
            if self.trial.should_prune():
                raise optuna.TrialPruned(f"epoch {epoch + 1}: val_accuracy {score:.4f} below the median")

    return PruningCallback


@contextlib.contextmanager
def _resume_hint(study: str, log) -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        log(f"interrupted: the finished trials of study {study!r} are saved; "
            "run the same command again to resume")
        raise


# --- results --------------------------------------------------------------------------------------

def _describe(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={_fmt(v)}" for k, v in params.items())


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if value and (abs(value) < 1e-2 or abs(value) >= 1e4) else f"{value:.3f}".rstrip("0").rstrip(".") or "0"
    return str(value)


def trial_rows(study) -> list[dict]:
    """Every trial of `study` as a flat row: number, state, value, epochs, seconds, parameters."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        scores = t.user_attrs.get("val_accuracy_per_epoch") or []
        rows.append({
            "number": t.number,
            "state": t.state.name,
            "val_accuracy": t.value if t.value is not None else (
                max(scores) if scores and t.state.name == "PRUNED" else None),
            "epochs_run": len(scores) or None,
            "seconds": t.user_attrs.get("train_seconds"),
            "baseline": bool(t.user_attrs.get("baseline")),
            "worker": t.user_attrs.get("worker"),
            "params": dict(t.params),
        })
    return rows


def format_table(rows: list[dict], best_number: int | None) -> str:
    """The trials as a text table (the best marked with *, the model's own recipe with 'default')."""
    names: list[str] = []
    for r in rows:
        names += [k for k in r["params"] if k not in names]
    head = ["#", "state", "val_acc", "ran", "secs", *names, ""]
    lines = [head]
    for r in rows:
        acc = f"{r['val_accuracy']:.4f}" if r["val_accuracy"] is not None else "-"
        mark = " ".join(m for m, on in (("*best", r["number"] == best_number),
                                         ("default", r["baseline"])) if on)
        lines.append([str(r["number"]), r["state"].lower(), acc, str(r["epochs_run"] or "-"),
                      f"{r['seconds']:.1f}" if r["seconds"] is not None else "-",
                      *[_fmt(r["params"][n]) if n in r["params"] else "-" for n in names], mark])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) if i < len(head) - 1 else c for i, (c, w) in
                               enumerate(zip(line, widths))).rstrip() for line in lines)


def write_results(study, storage_url: str, out: Path, *, log=print, ran: int = 0) -> TuneResult:
    """best.json, trials.csv, history.png, importances.png in `out`, and the table on `log`."""
    from optuna.trial import TrialState

    out.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(study)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best_trial = max(complete, key=lambda t: t.value) if complete else None
    best = next((r for r in rows if best_trial and r["number"] == best_trial.number), None)
    baseline = next((r for r in rows if r["baseline"] and r["state"] == "COMPLETE"), None)
    files: dict[str, Path] = {}

    write_text(out / "trials.csv", _csv_text(rows))
    files["trials"] = out / "trials.csv"
    if best_trial is not None:
        config = best_trial.user_attrs["config"]
        write_json(out / "best.json", config)
        files["best"] = out / "best.json"
    files.update(_plots(study, out, complete))

    log("")
    log(format_table(rows, best_trial.number if best_trial else None))
    log("")
    if best is not None:
        log(f"best: trial {best['number']}, val_accuracy {best['val_accuracy']:.4f}  ({_describe(best['params'])})")
        if baseline is not None:
            delta = best["val_accuracy"] - baseline["val_accuracy"]
            log(f"default {study.user_attrs.get('setup', {}).get('model', '')} recipe (trial {baseline['number']}): "
                f"val_accuracy {baseline['val_accuracy']:.4f}  (best is {delta:+.4f})")
        log(f"best configuration: {files['best']}  (digits train --config {files['best']})")
    else:
        log("no finished trial yet")
    for key in ("trials", "history", "importances"):
        if key in files:
            log(f"{key}: {files[key]}")
    return TuneResult(study.study_name, storage_url, out, rows, best, baseline, ran, files)


def _csv_text(rows: list[dict]) -> str:
    names: list[str] = []
    for r in rows:
        names += [k for k in r["params"] if k not in names]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["number", "state", "val_accuracy", "epochs_run", "seconds", "baseline", "worker",
                     *names])
    for r in rows:
        writer.writerow([r["number"], r["state"], r["val_accuracy"], r["epochs_run"], r["seconds"],
                         r["baseline"], r["worker"], *[r["params"].get(n) for n in names]])
    return buffer.getvalue()


def _plots(study, out: Path, complete: list) -> dict[str, Path]:
    """Optuna's optimization history and parameter importances, drawn with matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.visualization import matplotlib as ov

    files = {}
    with warnings.catch_warnings(), plt.rc_context():  # Optuna switches to ggplot style: keep it local
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if complete:
            ax = ov.plot_optimization_history(study, target_name="val_accuracy")
            _save(ax.figure, out / "history.png")
            plt.close(ax.figure)
            files["history"] = out / "history.png"
        names = {k for t in complete for k in t.params}
        varied = {k for k in names if len({str(t.params.get(k)) for t in complete}) > 1}
        if len(complete) >= 3 and varied:
            try:
                ax = ov.plot_param_importances(study, evaluator=PedAnovaImportanceEvaluator(),
                                               target_name="val_accuracy")
            except (RuntimeError, ValueError, ZeroDivisionError):
                ax = None  # too few distinct trials for an importance estimate
            if ax is not None:
                _save(ax.figure, out / "importances.png")
                plt.close(ax.figure)
                files["importances"] = out / "importances.png"
    return files


def _save(figure, path: Path) -> None:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    write_bytes(path, buffer.getvalue())


def load_space_file(path: str | os.PathLike) -> dict:
    """A --space JSON file as a dict (checked later against the model)."""
    from digits.runs import read_json_object

    return read_json_object(path, "search space")
