"""``digits report`` and ``digits compare``: a run's HTML report, and several runs side by side (:mod:`digits.report`)."""

from __future__ import annotations

from digits.cli.common import add_backend, add_data_dir, open_run


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("report", help="write RUN_DIR/report.html: every figure, metrics, model, config")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--out", metavar="DIR",
                   help="folder for report.html and plots/ (default: RUN_DIR)")
    add_data_dir(p)
    add_backend(p)
    p.set_defaults(func=cmd_report)

    p = subparsers.add_parser("compare", help="compare runs: a table and their learning curves overlaid")
    p.add_argument("runs", metavar="RUN_DIR", nargs="+", help="two or more run directories")
    p.add_argument("--out", metavar="DIR",
                   help="folder for compare.html and compare-curves.png "
                        "(default: the runs' folder if they share one, else the current folder)")
    p.set_defaults(func=cmd_compare)


def cmd_report(args) -> None:
    from digits.report import write_report

    print(write_report(open_run(args.run, args.backend), out=args.out, data_dir=args.data_dir))


def cmd_compare(args) -> None:
    from pathlib import Path

    from digits.report import write_comparison

    out = args.out
    if out is None:
        parents = {Path(r).resolve().parent for r in args.runs}
        out = parents.pop() if len(parents) == 1 else Path.cwd()
    print(write_comparison(args.runs, out=out))
