"""The ``digits`` command: each subcommand parses its flags, calls one library function, prints.

Expected errors (:class:`DigitsError`, bad flags) print one line on stderr
and exit with status 2.  Keras is imported only by the subcommands that
need it, after the backend is chosen.
"""

from __future__ import annotations

import argparse
import json
import sys

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
    p.add_argument("--lr-schedule", choices=("cosine", "constant"),
                   help="cosine decay to 0 over the run (default), or the seeds' constant rate")
    p.add_argument("--validation-split", type=fraction,
                   help="fraction of the training images held out for validation (default: 0.05)")
    p.add_argument("--seed", type=non_negative_int, help="random seed; a run with a seed is repeatable")
    p.add_argument("--early-stopping", type=positive_int, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without a better val_loss, keep the best weights")
    p.add_argument("--checkpoint-best", action="store_true", default=None,
                   help="save best.keras whenever val_loss improves, and keep that epoch's model")
    p.add_argument("--limit", type=positive_int, metavar="N", help="train on the first N images only")
    p.add_argument("--config", metavar="FILE", help="a config.json to start from (flags override it)")
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/MODEL-TIMESTAMP)")
    p.add_argument("--quiet", action="store_true", help="print only the result")
    _add_data_dir(p)
    _add_backend(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test loss, accuracy, per-class scores, confusion matrix")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_data_dir(p)
    _add_backend(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predict test-set images by index")
    p.add_argument("--model", required=True, metavar="RUN_DIR", dest="run")
    p.add_argument("--index", type=non_negative_int, action="append", required=True, metavar="I",
                   help="test image index (repeatable)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    _add_data_dir(p)
    _add_backend(p)
    p.set_defaults(func=cmd_predict)

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
    return parser


def _version() -> str:
    from digits import __version__

    return __version__


def cmd_train(args) -> None:
    from digits.training import TrainConfig, load_config_file, train

    base = load_config_file(args.config) if args.config else TrainConfig()
    fields = ("model", "dataset", "epochs", "batch_size", "learning_rate", "lr_schedule",
              "validation_split", "seed", "early_stopping", "checkpoint_best", "limit", "backend")
    overrides = {k: getattr(args, k) for k in fields if getattr(args, k) is not None}
    run = train(base, out=args.out, data_dir=args.data_dir, verbose=0 if args.quiet else 1, **overrides)
    m = run.metrics
    print(f"test accuracy: {m['test_accuracy']:.2%}   test loss: {m['test_loss']:.4f}   "
          f"training: {m['train_seconds']:.1f} s")
    print(f"run saved to {run.path}")


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


def cmd_predict(args) -> None:
    from digits.evaluation import predict_test_images

    for row in predict_test_images(_run_backend(args), args.index, data_dir=args.data_dir):
        if args.json:
            print(json.dumps(row))
        else:
            mark = "ok" if row["label"] == row["true"] else "WRONG"
            print(f"test image {row['index']}: predicted {row['label']} "
                  f"(p={row['probability']:.4f}), true {row['true']}  {mark}")


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except DigitsError as e:
        print(f"digits {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"digits {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
