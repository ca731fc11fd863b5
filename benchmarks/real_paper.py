"""How well does Digits read digits on real paper: ruled and squared pages, form boxes, touching digits, rows?

Renders pictures from MNIST test digits with :func:`digits.testing.render_on_paper`
(its docstring is the generator's documentation: paper tint, lighting,
line colour, thickness and spacing, box sizes, neighbours' overlap, a turn of
up to 3 degrees, sensor noise, JPEG) and reads each three ways, side by side:

* **today**: the picture pipeline of the baseline commit (:data:`BASELINE`,
  read from git: no line removal, no splitting of touching digits, one row);
* **now**: this checkout's :func:`digits.inference.recognize` (one digit) and
  :func:`digits.inference.read_number` (numbers);
* **tesseract**: Debian's ``tesseract-ocr`` restricted to digits (``--psm 10``
  for one digit, ``--psm 6`` for numbers), what many users reach for first;
  the column is left out where it is not installed.

Kinds: one digit on plain paper (the user-like renders of
``benchmarks/real_images.py``), on ruled paper, on squared paper, in a
printed box; a 3-6 digit number with touching digits, on ruled paper, in one
box per digit; 2-3 rows of 3-6 digit numbers; and pages of lines, grids and
boxes with nothing written (right = "no digit").  A single digit is right
when its label is; a number when every digit is read, in order (an unsure
digit or an abstention is wrong).  Picture i of a kind uses
``default_rng([seed, kind index, i])``.  Raw MNIST (the test arrays through
``recognize``) is the last row.  Times are per picture, normalization and
model together, on this machine.

    python benchmarks/real_paper.py [--n 200] [--model RUN_DIR] [--no-tesseract] [--json FILE] [--failures DIR]
                                    [--kinds K1,K2] [--digits test|validation] [--reader FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BASELINE = "e94bacb"
"""The last commit before printed lines were removed and touching digits split."""

KINDS = {
    # name: (digits per row (low, high), rows (low, high), layout arguments)
    "plain digit": ((1, 1), (1, 1), {}),
    "ruled digit": ((1, 1), (1, 1), {"paper": "ruled"}),
    "squared digit": ((1, 1), (1, 1), {"paper": "squared"}),
    "boxed digit": ((1, 1), (1, 1), {"boxes": True}),
    "touching number": ((3, 6), (1, 1), {"touching": True}),
    "ruled number": ((3, 6), (1, 1), {"paper": "ruled"}),
    "boxed number": ((3, 6), (1, 1), {"boxes": True}),
    "several rows": ((3, 6), (2, 3), {}),
    "lines only": ((0, 0), (0, 0), {}),
}


def _baseline_module(root: Path):
    """The baseline commit's imaging.py, imported under another name (None without git)."""
    try:
        source = subprocess.run(["git", "-C", str(root), "show", f"{BASELINE}:src/digits/imaging.py"],
                                check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp(prefix="digits-baseline-")) / "baseline_imaging.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_imaging", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _pictures(kind: str, index: int, n: int, seed: int, x, y):
    from digits.testing import PaperLayout, render_on_paper

    (lo, hi), (rlo, rhi), arguments = KINDS[kind]
    for i in range(n):
        rng = np.random.default_rng([seed, index, i])
        if kind == "lines only":  # ruled, squared, and a form's comb of boxes left blank
            style = ("ruled", "squared", "boxes")[i % 3]
            blank_row = [[None] * int(rng.integers(3, 7))] if style == "boxes" else []
            layout = PaperLayout(boxes=True) if style == "boxes" else PaperLayout(paper=style)
            yield render_on_paper(blank_row, rng, layout)[0], None
            continue
        if kind == "plain digit":
            from digits.testing import render_like_user

            j = int(rng.integers(0, len(x)))
            yield render_like_user(x[j], rng), str(y[j])
            continue
        rows = []
        for _ in range(int(rng.integers(rlo, rhi + 1))):
            idx = rng.integers(0, len(x), int(rng.integers(lo, hi + 1)))
            rows.append(idx)
        img, _ = render_on_paper([[x[j] for j in r] for r in rows], rng, PaperLayout(**arguments))
        yield img, "\n".join("".join(str(y[j]) for j in r) for r in rows)


def _read_now(predictor, picture, single: bool, reader=None) -> str | None:
    from digits.inference import read_number, recognize

    if single:
        (p,) = recognize(predictor, [picture])
        return None if p.label is None else str(p.label)
    doc = read_number(predictor, picture, reader=reader)
    if doc["number"] is not None and not doc["complete"]:
        return "unsure"  # never right: not a number, and not "no digits" either
    return doc["number"]


def _read_today(old, predictor, picture, single: bool, threshold: float) -> str | None:
    def labels(arrays):
        if not arrays:
            return []
        p = predictor.probabilities(np.stack(arrays))
        return [str(int(r.argmax())) if r.max() >= threshold else None for r in p]

    if single:
        try:
            (label,) = labels([old.to_mnist(picture)])
        except old.NoDigitError:
            return None
        return label
    segments = old.split_digits(picture)
    arrays = []
    for s in segments:
        try:
            arrays.append(old.to_mnist(s.image))
        except old.NoDigitError:
            return "unsure"
    read = labels(arrays)
    if not read:
        return None
    return "unsure" if None in read else "".join(read)


def _read_tesseract(picture, single: bool) -> str | None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.png"
        picture.save(path)
        out = subprocess.run(["tesseract", str(path), "stdout", "--psm", "10" if single else "6",
                              "-c", "tessedit_char_whitelist=0123456789"],
                             capture_output=True, text=True, timeout=60).stdout
    lines = ["".join(ch for ch in line if ch.isdigit()) for line in out.splitlines()]
    text = "\n".join(line for line in lines if line)
    return text or None


def _phone_photos(old, predictor, n: int, seed: int) -> dict:
    """Seconds per 12-megapixel JPEG (4000x3000, a digit on paper), decoded and normalized, today and now.

    The photos are user-like renders enlarged to 4000x3000 with fresh sensor
    noise and saved as JPEG, as a phone would; each method decodes the same
    bytes and normalizes them, alternating, best of two.
    """
    import io

    from PIL import Image

    from digits.datasets import load_dataset
    from digits.testing import render_like_user
    from digits.vision import decode_image, to_mnist

    x = load_dataset("mnist", progress=False).x_test
    seconds = {"today": [], "now": []}
    for i in range(n):
        rng = np.random.default_rng([seed, 99, i])
        small = render_like_user(x[i], rng).resize((4000, 3000), Image.Resampling.BICUBIC)
        noisy = np.asarray(small, np.float32) + rng.normal(0, 3, (3000, 4000, 3)).astype(np.float32)
        buf = io.BytesIO()
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
        data = buf.getvalue()
        for method, decode, normalize in (("today", old.decode_image, old.to_mnist), ("now", decode_image, to_mnist)):
            if method == "today" and old is None:
                continue
            times = []
            for _ in range(2):
                started = time.perf_counter()
                normalize(decode(data, "photo"))
                times.append(time.perf_counter() - started)
            seconds[method].append(min(times))
    row = {m: float(np.mean(s)) for m, s in seconds.items() if s}
    line = ", ".join(f"{m} {s * 1000:.0f} ms" for m, s in row.items())
    ratio = f"; now / today = {row['now'] / row['today']:.2f}" if "today" in row else ""
    print(f"12-megapixel photos ({n}, decode + normalize per file): {line}{ratio}")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="pictures per kind (default: 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", metavar="RUN_DIR", help="default: the bundled model")
    parser.add_argument("--reader", metavar="FILE", help="the group reader (default: the bundled one)")
    parser.add_argument("--no-tesseract", action="store_true", help="leave out the Tesseract column")
    parser.add_argument("--kinds", help="comma-separated subset of the kinds")
    parser.add_argument("--digits", choices=["test", "validation"], default="test",
                        help="render MNIST's test digits (the default), or the last 3,000 training digits, which "
                             "neither bundled model trained on: what rules are chosen on")
    parser.add_argument("--photos", type=int, default=5, help="12-megapixel phone photos timed (default: 5)")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    parser.add_argument("--failures", metavar="DIR",
                        help="save the first pictures of each kind that the new method gets wrong, as "
                             "KIND-I.jpg (the typical failures the model card describes)")
    args = parser.parse_args(argv)
    if args.reader and not Path(args.reader).is_file():
        parser.error(f"argument --reader: {args.reader}: no such file")

    from digits.backend import use_backend
    from digits.datasets import load_dataset, to_inputs

    use_backend(None)
    from digits.inference import load_predictor, recognize

    root = Path(__file__).resolve().parents[1]
    data = load_dataset("mnist", progress=False)
    x, y = (data.x_test, data.y_test) if args.digits == "test" else (data.x_train[-3000:], data.y_train[-3000:])
    predictor = load_predictor(args.model)
    from digits.sequence import load_group_reader

    reader = load_group_reader(args.reader)
    old = _baseline_module(root)
    tesseract = None if args.no_tesseract else shutil.which("tesseract")
    methods = ["today", "now"] + (["tesseract"] if tesseract else [])
    if old is None:
        methods.remove("today")
        print(f"(no git history: the baseline {BASELINE} is left out)", file=sys.stderr)

    kinds = [k for k in KINDS if not args.kinds or k in args.kinds.split(",")]
    results: dict = {}
    print(f"{args.n} pictures per kind of {args.digits} digits, model {predictor.name}, "
          f"threshold {predictor.threshold}, group reader {args.reader or 'bundled'}")
    header = "| kind | " + " | ".join(f"{m}: right | {m}: ms" for m in methods) + " |"
    print(header)
    print("|" + " --- |" * (1 + 2 * len(methods)))
    for kind in kinds:
        index = list(KINDS).index(kind)  # a kind's pictures are the same whichever kinds run
        single = "digit" in kind
        right = {m: 0 for m in methods}
        seconds = {m: 0.0 for m in methods}
        failures = []
        for picture, truth in _pictures(kind, index, args.n, args.seed, x, y):
            for m in methods:
                started = time.perf_counter()
                if m == "now":
                    answer = _read_now(predictor, picture, single, reader)
                elif m == "today":
                    answer = _read_today(old, predictor, picture, single, predictor.threshold)
                else:
                    answer = _read_tesseract(picture, single)
                seconds[m] += time.perf_counter() - started
                ok = answer == truth
                right[m] += ok
                if m == "now" and not ok and len(failures) < 5:
                    failures.append((truth, answer))
                    if args.failures:
                        Path(args.failures).mkdir(parents=True, exist_ok=True)
                        picture.save(Path(args.failures) / f"{kind.replace(' ', '-')}-{len(failures)}.jpg")
        row = {m: {"right": right[m] / args.n, "ms": 1000 * seconds[m] / args.n} for m in methods}
        results[kind] = {**row, "failures": failures}
        print(f"| {kind} | " + " | ".join(f"{row[m]['right']:.1%} | {row[m]['ms']:.0f}" for m in methods) + " |",
              flush=True)

    # Raw MNIST: the test arrays through each method's normalization, every answer taken (threshold 0).
    raw = {}
    arrays, truth = list(to_inputs(data.x_test)), data.y_test
    for m in [m for m in methods if m != "tesseract"]:
        started = time.perf_counter()
        if m == "now":
            labels = [p.label for p in recognize(predictor, arrays, threshold=0.0)]
        else:
            labels = [int(r.argmax()) for r in predictor.probabilities(np.stack([old.to_mnist(a) for a in arrays]))]
        raw[m] = float(np.mean(np.asarray(labels) == truth))
        ms = 1000 * (time.perf_counter() - started) / len(truth)
        print(f"raw MNIST, 10,000 test arrays normalized, every answer taken: {m} {raw[m]:.2%} ({ms:.2f} ms each)")
    results["raw MNIST"] = raw
    for kind in kinds:
        if results[kind]["failures"]:
            print(f"{kind}: first failures (truth, read): {results[kind]['failures']}")
    results["12 MP photos"] = _phone_photos(old, predictor, args.photos, args.seed)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
