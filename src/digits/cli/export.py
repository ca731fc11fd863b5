"""``digits export``: the model in a portable format, optionally checked against Keras (:mod:`digits.export`)."""

from __future__ import annotations

from digits.cli.common import add_data_dir, default_of, positive_int
from digits.errors import DigitsError


def add_parser(subparsers) -> None:
    from digits.export import FORMATS, VERIFY_TOLERANCE, export_model

    p = subparsers.add_parser("export", help="write the model in a portable format: ONNX, TF SavedModel, LiteRT")
    p.add_argument("run", metavar="RUN_DIR")
    # No default list here: argparse would append the repeated flags to it.
    p.add_argument("--format", action="append", choices=tuple(FORMATS), dest="formats",
                   help=f"{', '.join(FORMATS)}; repeat for several (default: {default_of(export_model, 'fmt')})")
    p.add_argument("--out", metavar="PATH",
                   help="where to write (default: RUN_DIR/export/model.onnx, saved_model/, model.tflite); "
                        "only with a single --format")
    p.add_argument("--check", type=positive_int, metavar="N",
                   help="compare the export's probabilities with Keras's on the first N test images "
                        f"(fails above {VERIFY_TOLERANCE:g})")
    add_data_dir(p)
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> None:
    from digits.export import export_model, verify
    from digits.runs import Run

    run = Run(args.run)  # a missing run is reported before Keras starts
    formats = list(dict.fromkeys(args.formats or [default_of(export_model, "fmt")]))
    if args.out is not None and len(formats) > 1:
        raise DigitsError("--out names one file; give a single --format with it")
    for fmt in formats:
        path = export_model(run, fmt, args.out)
        line = f"{fmt}: {path}"
        if args.check:
            diff = verify(run, fmt, args.check, path=path, data_dir=args.data_dir)
            line += f"   max |p_export - p_keras| on {args.check} test images: {diff:.2e}"
        print(line, flush=True)
