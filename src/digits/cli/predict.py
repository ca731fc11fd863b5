"""``digits predict``: the digit in image files or folders (:func:`digits.inference.recognize_files`),
or in MNIST test images by index (:func:`digits.evaluation.predict_test_images`)."""

from __future__ import annotations

import argparse
import json
import sys

from digits.cli.common import (Failures, Progress, add_backend, add_data_dir, add_model, load_predictor,
                               non_negative_int, open_run, probability, top_k)
from digits.errors import DigitsError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("predict",
                              help="recognize the digit in image files or folders (or test images by --index)")
    p.add_argument("files", nargs="*", metavar="FILE_OR_DIR",
                   help="PNG, JPEG, BMP, GIF, TIFF or WebP pictures of one digit each, any size, "
                        "or folders of them")
    add_model(p)
    p.add_argument("--index", type=non_negative_int, action="append", metavar="I",
                   help="predict MNIST test image I instead of files (repeatable)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--top-k", type=top_k, metavar="K", help="also show the K most probable digits")
    p.add_argument("--threshold", type=probability, metavar="P",
                   help="answer only when the best digit's probability is at least P, "
                        "else report the picture as unsure (default: the model's own, measured when it was made)")
    p.add_argument("--show-preprocessed", metavar="DIR",
                   help="save the 28x28 image the model saw for each file in DIR, as NAME.png")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction,
                   help="count files on stderr as they are done (default: when stderr is a terminal)")
    add_data_dir(p)
    add_backend(p)
    # The terminal check as the default, set here so argparse does not append "(default: False)" to the help.
    p.set_defaults(func=cmd_predict, parser=p, progress=sys.stderr.isatty())


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

    run = open_run(args.run or bundled_run_dir(), args.backend)
    for row in predict_test_images(run, args.index, data_dir=args.data_dir):
        if args.json:
            print(json.dumps(row))
        else:
            mark = "ok" if row["label"] == row["true"] else "WRONG"
            print(f"test image {row['index']}: predicted {row['label']} "
                  f"(p={row['probability']:.4f}), true {row['true']}  {mark}")


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

    from digits.inference import recognize_files
    from digits.vision import save_preprocessed

    folder = Path(args.show_preprocessed) if args.show_preprocessed else None
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DigitsError(f"{folder}: cannot create the folder ({e.strerror or e})") from None
    predictor = load_predictor(args.run, args.backend)
    failures, taken = Failures("predict"), set()
    progress = Progress(args.progress)
    for path, result in recognize_files(predictor, args.files, threshold=args.threshold):
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
