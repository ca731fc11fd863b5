"""``digits evaluate``: test loss, accuracy, per-class scores, confusion matrix (:func:`digits.evaluation.evaluate`)."""

from __future__ import annotations

import json

from digits.cli.common import add_backend, add_data_dir, open_run


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="test loss, accuracy, per-class scores, confusion matrix")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_data_dir(p)
    add_backend(p)
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> None:
    from digits.evaluation import evaluate

    result = evaluate(open_run(args.run, args.backend), data_dir=args.data_dir)
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
