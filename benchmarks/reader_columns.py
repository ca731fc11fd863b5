"""Where, within each digit, the group reader fires: what ``inference._reader_cuts`` relies on.

Groups of 2 to 4 MNIST test digits, each cropped to its ink and set side by
side touching (so every digit's columns are known), are read by the group
reader.  For each digit of a group read exactly, the middle of the columns
the reader fired at is measured against the digit's own columns: 0 is its
left edge, 1 its right edge.  ``_reader_cuts`` cuts before each digit where
the reader fires, so a median near 0 with a narrow spread is what it needs.

    python benchmarks/reader_columns.py [--reader FILE] [--groups 400] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reader", metavar="FILE", help="the group reader (default: the bundled one)")
    parser.add_argument("--groups", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.groups < 1:
        parser.error(f"argument --groups: must be at least 1, got {args.groups}")
    if args.reader is not None and not Path(args.reader).is_file():
        parser.error(f"argument --reader: {args.reader}: no such file")

    from digits.backend import use_backend

    use_backend(None)
    from digits.datasets import load_dataset
    from digits.sequence import crop_to_ink, decode, group_input, load_group_reader

    reader = load_group_reader(args.reader)
    data = load_dataset("mnist", progress=False)
    rng = np.random.default_rng(args.seed)
    where, exact = [], 0
    for _ in range(args.groups):
        idx = rng.integers(0, len(data.x_test), int(rng.integers(2, 5)))
        crops = [crop_to_ink(data.x_test[j] / 255.0) for j in idx]
        h = max(c.shape[0] for c in crops)
        ink = np.concatenate([np.pad(c, ((0, h - c.shape[0]), (0, 0))) for c in crops], axis=1).astype(np.float32)
        arr, offset, scale = group_input(ink)
        read = decode(np.asarray(reader.model(arr[None, ..., None], training=False))[0], arr.shape[1])
        if [d.label for d in read] != [int(data.y_test[j]) for j in idx]:
            continue
        exact += 1
        left = 0
        for crop, digit in zip(crops, read):
            middle = offset + (digit.columns[0] + digit.columns[1]) / 2 * scale
            where.append((middle - left) / crop.shape[1])
            left += crop.shape[1]
    where = np.array(where)
    median = float(np.median(where))
    print(f"reader {args.reader or 'bundled'}: {exact} of {args.groups} groups read exactly, {len(where)} digits")
    print(f"the middle of the columns it fires at lies at {median:.2f} of the digit's width (median), "
          f"{np.mean(np.abs(where - median) <= 0.2):.0%} within 0.2 of that; "
          f"10th-90th percentile {np.percentile(where, 10):.2f} to {np.percentile(where, 90):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
