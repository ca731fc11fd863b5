"""``digits read``: the numbers in a picture, row by row, each digit found and recognized (:func:`digits.inference.read_number`)."""

from __future__ import annotations

import json

from digits.cli.common import Failures, add_backend, add_model, load_predictor, probability
from digits.errors import DigitsError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("read",
                              help="read numbers: find the rows and digits in a picture (ruled, squared or boxed "
                                   "paper too) and recognize each")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="a picture of one or more rows of digits (or a folder of them)")
    add_model(p)
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.add_argument("--threshold", type=probability, metavar="P",
                   help="a digit whose best probability is below P is shown as ? "
                        "(default: the model's own, measured when it was made)")
    add_backend(p)
    p.set_defaults(func=cmd_read)


def cmd_read(args) -> None:
    from digits.inference import image_paths, read_number
    from digits.vision import load_image

    predictor = load_predictor(args.run, args.backend)
    failures = Failures("read")
    for path, error in image_paths(args.files):
        if error is None:
            try:
                picture = load_image(path)
            except DigitsError as e:
                error = e
        failures.seen(error)
        if error is not None:
            continue
        doc = {"file": str(path), **read_number(predictor, picture, threshold=args.threshold)}
        if args.json:
            print(json.dumps(doc), flush=True)
            continue
        if doc["number"] is None:
            print(f"{path}: no number ({doc['reason']})", flush=True)
            continue
        several = len(doc["rows"]) > 1
        print(f"{path}: {doc['number'].replace(chr(10), ' / ')}", flush=True)
        for r, row in enumerate(doc["rows"], start=1):
            if several:
                print(f"  row {r}: {row['number']}", flush=True)
            for d in row["digits"]:
                shown = "?" if d["label"] is None else d["label"]
                x0, y0, x1, y1 = d["box"]
                note = f"  ({d['reason']})" if d.get("reason") else ""
                print(f"{'    ' if several else '  '}{shown}  confidence {d['confidence']:.3f}  "
                      f"at x {x0}-{x1}, y {y0}-{y1}{note}", flush=True)
    failures.finish()
