"""The ``digits`` command: each subcommand parses its flags, calls one library function, prints.

Expected errors (:class:`DigitsError`, bad flags) print one line on stderr
and exit with status 2.  Keras is imported only by the subcommands that
need it, after the backend is chosen.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from digits.errors import DigitsError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with a pointer to --help), not a usage dump."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", metavar="DIR",
                   help="offline copy: a folder with the four IDX files, or Keras's mnist.npz "
                        "(default: $DIGITS_DATA_DIR, then the download cache)")


def _add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("jax", "tensorflow", "torch"),
                   help="Keras backend (default: $KERAS_BACKEND, else the fastest measured for the job)")


def build_parser() -> argparse.ArgumentParser:
    from digits.models import MODELS

    parser = _Parser(prog="digits", description="Handwritten digit recognition with Keras.")
    parser.add_argument("--version", action="version", version=f"digits {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    p = sub.add_parser("train", help="train a model and save a run directory")
    p.add_argument("--model", metavar="NAME",
                   help=f"one of {', '.join(MODELS)} (default: mlp)")
    p.add_argument("--dataset", help="mnist, fashion-mnist or kmnist (default: mnist)")
    p.add_argument("--epochs", type=positive_int, help="default: the model's recipe")
    p.add_argument("--batch-size", type=positive_int, help="default: the model's recipe")
    p.add_argument("--learning-rate", type=positive_float, help="Adam's (peak) learning rate")
    p.add_argument("--lr-schedule", choices=("cosine", "constant", "onecycle"),
                   help="cosine decay to 0 (the default for most models), the seeds' constant rate, "
                        "or a one-cycle warm-up then decay (the fast model's)")
    p.add_argument("--validation-split", type=fraction,
                   help="fraction of the training images held out for validation (default: 0.05)")
    p.add_argument("--precision", choices=("float32", "mixed_bfloat16"),
                   help="compute dtype while training; the saved model is float32 (default: the model's "
                        "recipe where this processor does bfloat16 natively, else float32)")
    p.add_argument("--seed", type=non_negative_int, help="random seed; a run with a seed is repeatable")
    p.add_argument("--early-stopping", type=positive_int, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without a better val_loss, keep the best weights")
    p.add_argument("--checkpoint-best", action="store_true", default=None,
                   help="save best.keras whenever val_loss improves, and keep that epoch's model")
    p.add_argument("--limit", type=positive_int, metavar="N", help="train on the first N images only")
    p.add_argument("--config", metavar="FILE", help="a config.json to start from (flags override it)")
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/MODEL-TIMESTAMP)")
    p.add_argument("--quiet", action="store_true", help="print only the result")
    p.add_argument("--report", action="store_true",
                   help="also write the full HTML report (as `digits report`; adds a few seconds)")
    p.add_argument("--distribute", action="store_true", default=None,
                   help="train data-parallel on every local device, the batch split across them "
                        "(multi-host: docs/SCALING.md)")
    _add_data_dir(p)
    _add_backend(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test loss, accuracy, per-class scores, confusion matrix")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_data_dir(p)
    _add_backend(p)
    p.set_defaults(func=cmd_evaluate)

    # --- predict / read (digits.inference, digits.vision) ---
    p = sub.add_parser("predict", help="recognize the digit in image files or folders (or test images by --index)")
    p.add_argument("files", nargs="*", metavar="FILE_OR_DIR",
                   help="PNG, JPEG, BMP, GIF, TIFF or WebP pictures of one digit each, any size, "
                        "or folders of them")
    p.add_argument("--model", metavar="RUN_DIR", dest="run",
                   help="a run directory from `digits train` (default: the model bundled with Digits)")
    p.add_argument("--index", type=non_negative_int, action="append", metavar="I",
                   help="predict MNIST test image I instead of files (repeatable)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--top-k", type=_top_k, metavar="K", help="also show the K most probable digits")
    p.add_argument("--threshold", type=probability, metavar="P",
                   help="answer only when the best digit's probability is at least P, "
                        "else report the picture as unsure (default: the model's own, measured when it was made)")
    p.add_argument("--show-preprocessed", metavar="DIR",
                   help="save the 28x28 image the model saw for each file in DIR, as NAME.png")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="count files on stderr as they are done (default: when stderr is a terminal)")
    _add_data_dir(p)
    _add_backend(p)
    p.set_defaults(func=cmd_predict, parser=p)

    p = sub.add_parser("read", help="read a number: find the digits in a picture, left to right, and recognize each")
    p.add_argument("files", nargs="+", metavar="FILE", help="a picture of a row of digits (or a folder of them)")
    p.add_argument("--model", metavar="RUN_DIR", dest="run",
                   help="a run directory from `digits train` (default: the model bundled with Digits)")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.add_argument("--threshold", type=probability, metavar="P",
                   help="a digit whose best probability is below P is shown as ? "
                        "(default: the model's own, measured when it was made)")
    _add_backend(p)
    p.set_defaults(func=cmd_read)
    # --- end predict / read ---

    p = sub.add_parser("ensemble", help="combine trained runs into one servable model")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--method", choices=("average", "vote"), default="average",
                   help="average the probabilities (default) or take the majority vote")
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/ensemble-METHOD-TIMESTAMP)")
    _add_data_dir(p)
    _add_backend(p)
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("models", help="list the model registry with parameter counts")
    p.set_defaults(func=cmd_models)

    # --- report / compare (digits.report) ---
    p = sub.add_parser("report", help="write RUN_DIR/report.html: every figure, metrics, model, config")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--out", metavar="DIR",
                   help="folder for report.html and plots/ (default: RUN_DIR)")
    _add_data_dir(p)
    _add_backend(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="compare runs: a table and their learning curves overlaid")
    p.add_argument("runs", metavar="RUN_DIR", nargs="+", help="two or more run directories")
    p.add_argument("--out", metavar="DIR",
                   help="folder for compare.html and compare-curves.png "
                        "(default: the runs' folder if they share one, else the current folder)")
    p.set_defaults(func=cmd_compare)
    # --- end report / compare ---

    # --- serve / export (digits.serving, digits.export) ---
    from digits.export import FORMATS as EXPORT_FORMATS, VERIFY_TOLERANCE

    p = sub.add_parser("serve", help="serve the HTTP API and the drawing page (FastAPI under uvicorn)")
    p.add_argument("--model", metavar="RUN_DIR", dest="run",
                   help="a run directory from `digits train` (default: the model bundled with Digits)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 for all)")
    p.add_argument("--port", type=_port, default=8000, help="default: 8000")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="worker processes, each loading the model once (default: 1)")
    p.add_argument("--runtime", choices=("keras", "onnx"), default="keras",
                   help="keras (on JAX unless --backend says otherwise; the default) or onnx "
                        "(ONNX Runtime on RUN_DIR/export/model.onnx, exported first if missing)")
    p.add_argument("--max-upload-mb", type=positive_float, default=10.0, metavar="MB",
                   help="largest request body, in MiB (default: 10)")
    p.add_argument("--max-batch", type=positive_int, default=64, metavar="N",
                   help="most images in one /v1/predict/batch request (default: 64)")
    p.add_argument("--max-pixels", type=positive_int, default=25_000_000, metavar="N",
                   help="most pixels in one uploaded image (default: 25000000)")
    p.add_argument("--threshold", type=probability, metavar="P",
                   help="below this confidence the label is null, \"unsure\" (default: the model's own)")
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="requests decoded and classified at once per worker (default: the CPU count)")
    p.add_argument("--micro-batch", action="store_true",
                   help="run the model calls of requests that arrive together as one batch "
                        "(no faster on a CPU, where the model call is 2%% of a request)")
    p.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"), default="info",
                   help="uvicorn's log level; warning and above hide the access log (default: info)")
    _add_backend(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export", help="write the model in a portable format: ONNX, TF SavedModel, LiteRT")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--format", action="append", choices=tuple(EXPORT_FORMATS), dest="formats",
                   help="onnx (default), saved_model or litert; repeat for several")
    p.add_argument("--out", metavar="PATH",
                   help="where to write (default: RUN_DIR/export/model.onnx, saved_model/, model.tflite); "
                        "only with a single --format")
    p.add_argument("--check", type=positive_int, metavar="N",
                   help="compare the export's probabilities with Keras's on the first N test images "
                        f"(fails above {VERIFY_TOLERANCE:g})")
    _add_data_dir(p)
    p.set_defaults(func=cmd_export)
    # --- end serve / export ---

    # --- tune (digits.tuning) ---
    p = sub.add_parser("tune", help="search hyperparameters with Optuna; resumable, shareable studies")
    p.add_argument("--model", required=True, metavar="NAME", help=f"one of {', '.join(MODELS)}")
    p.add_argument("--trials", type=positive_int, required=True, metavar="N",
                   help="run until the study has N finished (complete or pruned) trials")
    p.add_argument("--timeout", type=positive_float, metavar="S",
                   help="start no new trial after S seconds (the running one finishes)")
    p.add_argument("--study", metavar="NAME", help="study name (default: the model's name)")
    p.add_argument("--storage", metavar="URL",
                   help="sqlite:///FILE.db or postgresql://USER:PASSWORD@HOST/DB "
                        "(default: sqlite:///studies/STUDY.db); the same URL on several machines "
                        "tunes one study together")
    p.add_argument("--space", metavar="FILE",
                   help="JSON search space replacing the defaults per setting, e.g. "
                        '{"batch_size": [64, 128], "dropout": {"low": 0, "high": 0.5}, "augment": 0}')
    p.add_argument("--max-epochs", type=positive_int, metavar="E",
                   help="epochs are searched in 1..E (default: the model's recipe)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="tune on the first N training images")
    p.add_argument("--validation-split", type=fraction, default=0.1, metavar="F",
                   help="fraction of the training images scored in every trial (default: 0.1)")
    p.add_argument("--early-stopping", type=positive_int, default=2, metavar="PATIENCE",
                   help="stop a trial after PATIENCE epochs without a better val_loss (default: 2)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="every trial's seed (default: 0)")
    p.add_argument("--dataset", default="mnist", help="mnist, fashion-mnist or kmnist (default: mnist)")
    p.add_argument("--out", metavar="DIR", help="results folder (default: studies/STUDY)")
    p.add_argument("--heartbeat", type=positive_int, default=10, metavar="S",
                   help="a running trial's heartbeat; one silent for 3×S seconds (killed process, "
                        "lost machine) is run again (default: 10)")
    p.add_argument("--quiet", action="store_true", help="print only the results")
    _add_data_dir(p)
    _add_backend(p)
    p.set_defaults(func=cmd_tune)
    # --- end tune ---
    return parser


def _version() -> str:
    from digits import __version__

    return __version__


def cmd_train(args) -> None:
    from digits.training import TrainConfig, load_config_file, train

    base = load_config_file(args.config) if args.config else TrainConfig()
    fields = ("model", "dataset", "epochs", "batch_size", "learning_rate", "lr_schedule",
              "validation_split", "seed", "early_stopping", "checkpoint_best", "limit", "backend",
              "distribute", "precision")
    overrides = {k: getattr(args, k) for k in fields if getattr(args, k) is not None}
    run = train(base, out=args.out, data_dir=args.data_dir, verbose=0 if args.quiet else 1, **overrides)
    m = run.metrics
    print(f"test accuracy: {m['test_accuracy']:.2%}   test loss: {m['test_loss']:.4f}   "
          f"training: {m['train_seconds']:.1f} s")
    print(f"run saved to {run.path}")
    if args.report:
        from digits.report import write_report

        print(f"report: {write_report(run, data_dir=args.data_dir)}")


def _run_backend(args):
    """Evaluate/predict on --backend, else $KERAS_BACKEND, else JAX (fastest inference here)."""
    from digits.backend import use_backend
    from digits.runs import Run

    run = Run(args.run)  # a missing run is reported before Keras starts
    use_backend(args.backend)
    return run


def cmd_evaluate(args) -> None:
    from digits.evaluation import evaluate

    result = evaluate(_run_backend(args), data_dir=args.data_dir)
    if args.json:
        print(json.dumps(result.to_dict()))
        return
    print(f"test accuracy: {result.accuracy:.2%}   test loss: {result.loss:.4f}   "
          f"({len(result.labels)} images)")
    print(f"\n{'class':>12}  precision  recall     f1  support")
    for row in result.per_class():
        print(f"{row['class']:>12}  {row['precision']:9.4f}  {row['recall']:6.4f}  "
              f"{row['f1']:5.4f}  {row['support']:7d}")
    print("\nconfusion matrix (rows: true, columns: predicted)")
    print("      " + "".join(f"{j:>6}" for j in range(10)))
    for i, row in enumerate(result.confusion):
        print(f"{i:>6}" + "".join(f"{v:>6}" for v in row))


# --- predict / read (digits.inference, digits.vision) ---
probability = _number(float, lambda v: 0 <= v <= 1, "must be between 0 and 1", "a number")
_top_k = _number(int, lambda v: 1 <= v <= 10, "must be between 1 and 10", "a whole number")


def cmd_predict(args) -> None:
    if args.index and args.files:
        args.parser.error("give image files or --index, not both")
    if not args.index and not args.files:
        args.parser.error("the following arguments are required: --index or FILE_OR_DIR")
    if args.index:
        used = [flag for flag, value in (("--top-k", args.top_k), ("--threshold", args.threshold),
                                         ("--show-preprocessed", args.show_preprocessed)) if value is not None]
        if used:
            args.parser.error(f"{', '.join(used)} apply to image files, not to --index")
        _predict_test_images(args)
        return
    _predict_files(args)


def _predict_test_images(args) -> None:
    from digits.evaluation import predict_test_images
    from digits.inference import bundled_run_dir

    if args.run is None:
        args.run = str(bundled_run_dir())
    for row in predict_test_images(_run_backend(args), args.index, data_dir=args.data_dir):
        if args.json:
            print(json.dumps(row))
        else:
            mark = "ok" if row["label"] == row["true"] else "WRONG"
            print(f"test image {row['index']}: predicted {row['label']} "
                  f"(p={row['probability']:.4f}), true {row['true']}  {mark}")


def _load_predictor(args):
    """The --model run (checked before Keras starts) or the bundled model, on --backend."""
    from digits.backend import use_backend
    from digits.inference import load_predictor
    from digits.runs import Run

    if args.run is not None:
        Run(args.run)
    use_backend(args.backend)
    return load_predictor(args.run)


class _Progress:
    """A one-line count of files done, rewritten in place on stderr (results stay on stdout)."""

    def __init__(self, enabled: bool, every: int = 256):
        import time

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
        import time

        rate = self.count / max(time.perf_counter() - self.started, 1e-9)
        print(f"{prefix}{self.count:,} files done ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)


class _Failures:
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


def _preprocessed_name(folder, path, taken: set[str]):
    stem, n = path.stem or "image", 1
    name = f"{stem}.png"
    while name in taken:
        n += 1
        name = f"{stem}-{n}.png"
    taken.add(name)
    return folder / name


def _predict_files(args) -> None:
    from pathlib import Path

    from digits.vision import save_preprocessed
    from digits.inference import recognize_files

    threshold = args.threshold
    folder = Path(args.show_preprocessed) if args.show_preprocessed else None
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DigitsError(f"{folder}: cannot create the folder ({e.strerror or e})") from None
    predictor = _load_predictor(args)
    failures, taken = _Failures("predict"), set()
    progress = _Progress(sys.stderr.isatty() if args.progress is None else args.progress)
    for path, result in recognize_files(predictor, args.files, threshold=threshold):
        progress.step()
        if isinstance(result, DigitsError):
            failures.seen(result)
            continue
        failures.seen(None)
        saved = None
        if folder is not None and result.image is not None:
            saved = _preprocessed_name(folder, path, taken)
            save_preprocessed(result.image, saved)
        top = result.top(args.top_k) if args.top_k else []
        if args.json:
            doc = {"file": str(path), **result.to_dict()}
            if args.top_k:
                doc["top_k"] = [{"label": d, "probability": p} for d, p in top]
            if saved is not None:
                doc["preprocessed"] = str(saved)
            print(json.dumps(doc), flush=True)
            continue
        if result.label is None:
            line = f"{path}: no answer ({result.reason})"
        else:
            line = f"{path}: {result.label} (confidence {result.confidence:.3f})"
        if len(top) > 1:
            line += f"  top {len(top)}: " + ", ".join(f"{d} {p:.3f}" for d, p in top)
        print(line, flush=True)
    progress.done()
    failures.finish()


def cmd_read(args) -> None:
    from digits.inference import image_paths, read_number
    from digits.vision import load_image

    threshold = args.threshold
    predictor = _load_predictor(args)
    failures = _Failures("read")
    for path, error in image_paths(args.files):
        if error is None:
            try:
                picture = load_image(path)
            except DigitsError as e:
                error = e
        failures.seen(error)
        if error is not None:
            continue
        doc = {"file": str(path), **read_number(predictor, picture, threshold=threshold)}
        if args.json:
            print(json.dumps(doc), flush=True)
            continue
        if doc["number"] is None:
            print(f"{path}: no number ({doc['reason']})", flush=True)
            continue
        print(f"{path}: {doc['number']}", flush=True)
        for d in doc["digits"]:
            shown = "?" if d["label"] is None else d["label"]
            x0, y0, x1, y1 = d["box"]
            note = f"  ({d['reason']})" if d.get("reason") else ""
            print(f"  {shown}  confidence {d['confidence']:.3f}  at x {x0}-{x1}, y {y0}-{y1}{note}", flush=True)
    failures.finish()
# --- end predict / read ---


def cmd_ensemble(args) -> None:
    from digits.backend import use_backend
    from digits.runs import Run

    runs = [Run(path) for path in args.runs]  # a missing run is reported before Keras starts
    use_backend(args.backend)
    from digits.ensemble import ensemble

    run = ensemble(runs, out=args.out, method=args.method, data_dir=args.data_dir)
    m = run.metrics
    members = ", ".join(f"{a:.2%}" for a in m["member_test_accuracies"])
    print(f"test accuracy: {m['test_accuracy']:.2%} ({args.method} of {len(runs)} runs: {members})")
    print(f"run saved to {run.path}")


def cmd_models(args) -> None:
    from digits.backend import use_backend
    from digits.models import MODELS

    use_backend(None)
    print(f"{'name':<13} {'parameters':>10}  {'epochs':>6}  {'batch':>5}  {'backend':<10}  architecture")
    for spec in MODELS.values():
        params = spec.build().count_params()
        seed = f"  (seed {spec.seed})" if spec.seed else ""
        print(f"{spec.name:<13} {params:>10,}  {spec.epochs:>6}  {spec.batch_size:>5}  "
              f"{spec.backend:<10}  {spec.description}{seed}")


# --- report / compare (digits.report) ---
def cmd_report(args) -> None:
    from digits.report import write_report

    print(write_report(_run_backend(args), out=args.out, data_dir=args.data_dir))


def cmd_compare(args) -> None:
    from pathlib import Path

    from digits.report import write_comparison

    out = args.out
    if out is None:
        parents = {Path(r).resolve().parent for r in args.runs}
        out = parents.pop() if len(parents) == 1 else Path.cwd()
    print(write_comparison(args.runs, out=out))
# --- end report / compare ---


# --- serve / export (digits.serving, digits.export) ---
_port = _number(int, lambda v: 1 <= v <= 65535, "must be between 1 and 65535", "a port number")


def _default_model_dir() -> str:
    from digits.inference import bundled_run_dir

    return str(bundled_run_dir())


def cmd_serve(args) -> None:
    import os

    import uvicorn

    from digits.export import ensure_onnx
    from digits.runs import Run
    from digits.serving.app import ServeSettings, app_for

    settings = ServeSettings(
        model=args.run, runtime=args.runtime, backend=args.backend,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_batch=args.max_batch,
        max_pixels=args.max_pixels, threshold=args.threshold,
        threads=args.threads, micro_batch=args.micro_batch)
    if settings.model is not None:
        Run(settings.model)  # a missing or broken run is one line, before anything starts
    if settings.runtime == "onnx":
        settings.model = settings.model or _default_model_dir()
        settings.onnx_path = str(ensure_onnx(settings.model))
    url = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}/"
    if args.workers == 1:
        app = app_for(settings)  # the model loads here: its errors are one line too
        print(f"digits serve: model {app.state.service.predictor.name} ({app.state.service.runtime}) "
              f"on {url}  (API docs: {url}docs)", file=sys.stderr, flush=True)
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
        return
    if settings.model is None:
        _default_model_dir()  # no model at all is one line here, not a crash in every worker
    os.environ.update(settings.to_env())
    print(f"digits serve: {args.workers} workers on {url}  (API docs: {url}docs)", file=sys.stderr, flush=True)
    _serve_workers(uvicorn.Config("digits.serving.app:factory", factory=True, workers=args.workers,
                                  host=args.host, port=args.port, log_level=args.log_level))


def _serve_workers(config) -> None:
    """uvicorn.run's several-workers path, with TCP_NODELAY kept on the workers' connections.

    uvicorn binds the shared socket with ``proto=0``; connections accepted on
    it inherit that, and asyncio sets TCP_NODELAY only when ``proto`` is
    IPPROTO_TCP, so every keep-alive request after the first waited about
    40 ms for a delayed ACK (uvicorn issue #3149; measured here: 160 instead
    of 450 requests/s).  The socket is re-wrapped with IPPROTO_TCP before the
    workers get it.
    """
    import socket

    from uvicorn.supervisors import Multiprocess

    sock = config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
        sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()


def cmd_export(args) -> None:
    from digits.export import export_model, verify
    from digits.runs import Run

    run = Run(args.run)  # a missing run is reported before Keras starts
    formats = list(dict.fromkeys(args.formats or ["onnx"]))
    if args.out is not None and len(formats) > 1:
        raise DigitsError("--out names one file; give a single --format with it")
    for fmt in formats:
        path = export_model(run, fmt, args.out)
        line = f"{fmt}: {path}"
        if args.check:
            diff = verify(run, fmt, args.check, path=path, data_dir=args.data_dir)
            line += f"   max |p_export - p_keras| on {args.check} test images: {diff:.2e}"
        print(line, flush=True)
# --- end serve / export ---


# --- tune (digits.tuning) ---
def cmd_tune(args) -> None:
    from digits.tuning import load_space_file, tune

    tune(
        args.model, trials=args.trials, timeout=args.timeout, study=args.study, storage=args.storage,
        out=args.out, data_dir=args.data_dir, dataset=args.dataset, limit=args.limit,
        max_epochs=args.max_epochs, validation_split=args.validation_split,
        early_stopping=args.early_stopping, seed=args.seed,
        space=load_space_file(args.space) if args.space else None, backend=args.backend,
        heartbeat=args.heartbeat, verbose=0 if args.quiet else 1,
    )
# --- end tune ---


class _Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a scheduler's timeout), raised like Ctrl-C so a half-written run is removed."""


def _terminate(signum, frame):
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        args.func(args)
    except DigitsError as e:
        print(f"digits {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:
        terminated = isinstance(e, _Terminated)
        print(f"digits {args.command}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0


def run() -> None:
    """The `digits` command: :func:`main`, then exit with its code.

    After Ctrl-C or SIGTERM the run folder is already cleaned up, so the
    process ends at once: tearing down the interpreter while TensorFlow's
    threads are mid-step can crash (a segfault instead of the exit code).
    """
    code = main()
    if code in (130, 143):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
