"""How well does `digits predict` read digits the way users photograph them?

Renders each of the 10,000 MNIST test digits as a user's picture with
:func:`digits.testing.render_like_user` (dark ink, black, blue or pencil
grey, on off-white paper; a 160..320 x 140..260 canvas with the digit
off-centre and scaled 3..6x; thinner or thicker strokes; up to 10 degrees of
rotation; a lighting gradient; sensor noise; a JPEG round trip at quality
50..95) and classifies the renders through :func:`digits.inference.recognize`,
the code path behind `digits predict FILE` (only the file decoding is left
out; the pictures are already decoded).  Reports, side by side:

* raw: the model on the test arrays as MNIST ships them (what `digits evaluate` measures);
* raw, preprocessed: the same arrays through `recognize` (MNIST in, MNIST out);
* rendered: the user-like pictures through `recognize`.

The gap is raw minus rendered accuracy, in percentage points (the issue asks
for under 1 point with the bundled model).  Render i uses the random
generator ``default_rng([seed, i])``, so any one picture can be recreated.

Then the abstaining threshold: coverage (share answered) and accuracy of the
answered pictures at several thresholds, for the raw arrays and the renders,
next to the share of pictures with no digit that are (rightly) not given a
label: blank pages (photographed like the digits), random pixels, smooth
random blotches (a textured surface), letters and symbols that are not
digits, and random scribbles and shapes (these two photographed like the digits).

``--split validation`` measures the same on the 3,000 training images that
`digits train` held out for validation (the last 5% of the training split,
never trained on): choose the threshold there, and confirm it on the test
set, so that the test set stays a test.

    python benchmarks/real_images.py [--model RUN_DIR] [--split test|validation] [--n 10000]
                                     [--negatives 400] [--json FILE]

Without --model it measures the model bundled with Digits.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
BATCH = 256
# Letters and symbols that no one would read as a digit (no O, o, l, I, S, Z, B, g, q, b, G, T, ...).
NOT_DIGITS = "ACEFHKMNPRUVWXYacefhkmnrvwxy#%&@*+=<>"
FONTS = [Path("/usr/share/fonts/truetype/dejavu") / name
         for name in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", metavar="RUN_DIR", help="default: the bundled model")
    parser.add_argument("--split", choices=("test", "validation"), default="test",
                        help="the MNIST test set, or the training images the run held out for validation")
    parser.add_argument("--n", type=int, default=10_000, help="digits to render (default: all of the split)")
    parser.add_argument("--negatives", type=int, default=400, help="pictures of each no-digit kind (default: 400)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", metavar="DIR", help="MNIST IDX folder (default: $DIGITS_DATA_DIR)")
    parser.add_argument("--backend", default=None, help="Keras backend (default: jax)")
    parser.add_argument("--json", metavar="FILE", help="also write every number to FILE")
    args = parser.parse_args(argv)

    from digits.backend import use_backend

    use_backend(args.backend)
    from digits.datasets import load_dataset
    from digits.training import held_out_images
    from digits.testing import render_like_user
    from digits.inference import ABSTAIN_BELOW, load_predictor, recognize

    data = load_dataset("mnist", data_dir=args.data_dir, progress=False)
    started = time.perf_counter()
    predictor = load_predictor(args.model)
    load_seconds = time.perf_counter() - started
    name = args.model or "bundled"
    if args.split == "test":
        x, y = data.x_test, data.y_test
    else:
        config = predictor.info["config"]
        if config.get("limit") or config.get("dataset", "mnist") != "mnist":
            parser.error("--split validation needs a run trained on all of MNIST (no --limit)")
        held_out = held_out_images(len(data.x_train), config["validation_split"])
        if not held_out:
            parser.error("the run held out no validation images")
        x, y = data.x_train[held_out.start:], data.y_train[held_out.start:]
    x, y = x[: args.n], y[: args.n].astype(np.int64)
    print(f"model: {name} ({predictor.info.get('metrics', {}).get('parameters', '?')} parameters), "
          f"loaded in {load_seconds:.2f} s; {len(x)} {args.split} images", flush=True)

    # Raw test arrays: the model alone, and through the preprocessing.
    raw_p = predictor.probabilities(x.astype(np.float32) / 255.0)
    raw_acc = float((raw_p.argmax(1) == y).mean())
    raw_pre = _classify(recognize, predictor, list(x))
    raw_pre_acc = float((raw_pre[0] == y).mean())

    # Renders.
    render_s = recognize_s = 0.0
    labels, confidences = [], []
    for start in range(0, len(x), BATCH):
        t0 = time.perf_counter()
        pictures = [render_like_user(x[i], np.random.default_rng([args.seed, i]))
                    for i in range(start, min(len(x), start + BATCH))]
        t1 = time.perf_counter()
        got, conf = _classify(recognize, predictor, pictures)
        recognize_s += time.perf_counter() - t1
        render_s += t1 - t0
        labels.append(got)
        confidences.append(conf)
        if (start // BATCH) % 8 == 7:
            print(f"  {start + len(pictures)} / {len(x)} rendered", flush=True)
    labels, confidences = np.concatenate(labels), np.concatenate(confidences)
    correct = labels == y
    rendered_acc = float(correct.mean())
    no_ink = int((labels < 0).sum())

    # Model alone (no preprocessing), per image, in batches of BATCH.
    t0 = time.perf_counter()
    for start in range(0, len(x), BATCH):
        predictor.probabilities(x[start: start + BATCH].astype(np.float32) / 255.0)
    model_ms = 1000 * (time.perf_counter() - t0) / len(x)

    print()
    print(f"{args.split + ' images':<34} {'images':>7} {'accuracy':>9}")
    print(f"{'raw MNIST arrays (model only)':<34} {len(x):>7} {raw_acc:>9.2%}")
    print(f"{'raw arrays through recognize()':<34} {len(x):>7} {raw_pre_acc:>9.2%}")
    print(f"{'rendered like users (recognize)':<34} {len(x):>7} {rendered_acc:>9.2%}")
    gap = 100 * (raw_acc - rendered_acc)
    print(f"gap (raw - rendered): {gap:.2f} percentage points   "
          f"(renders where no ink was found: {no_ink})")
    print(f"time per image: render {1000 * render_s / len(x):.1f} ms, recognize (preprocess + model) "
          f"{1000 * recognize_s / len(x):.1f} ms, model alone {model_ms:.3f} ms")
    wrong = np.flatnonzero(~correct)
    print("wrong renders (index: true -> predicted): "
          + ", ".join(f"{i}: {y[i]}->{labels[i] if labels[i] >= 0 else 'none'}" for i in wrong[:40])
          + (" ..." if len(wrong) > 40 else ""))

    # Pictures with no digit.
    # Different no-digit pictures for the validation split, where a threshold is chosen.
    negatives = _negatives(args.negatives, [args.seed, int(args.split == "validation")], render_like_user)
    neg = {kind: _classify(recognize, predictor, pictures) for kind, pictures in negatives.items()}

    print()
    print(f"{'':>9} | {'raw arrays':^23} | {'rendered like users':^37} | pictures with no digit, share refused")
    header = (f"{'threshold':>9} | {'coverage':>9} {'accuracy':>13} | {'coverage':>9} {'accuracy':>13} "
              f"{'wrong':>13} |")
    header += "".join(f" {kind:>8}" for kind in neg)
    print(header)
    raw_conf = raw_pre[1]
    raw_correct = raw_pre[0] == y
    table = []
    for t in sorted({*THRESHOLDS, ABSTAIN_BELOW}):
        answered = (labels >= 0) & (confidences >= t)
        raw_answered = (raw_pre[0] >= 0) & (raw_conf >= t)
        acc = float(correct[answered].mean()) if answered.any() else float("nan")
        raw_acc_t = float(raw_correct[raw_answered].mean()) if raw_answered.any() else float("nan")
        row = {"threshold": t, "raw_coverage": float(raw_answered.mean()), "raw_accuracy_answered": raw_acc_t,
               "coverage": float(answered.mean()), "accuracy_answered": acc,
               "wrong_answers": int((answered & ~correct).sum())}
        line = (f"{t:>9.2f} | {row['raw_coverage']:>9.2%} {raw_acc_t:>13.2%} | {row['coverage']:>9.2%} "
                f"{acc:>13.2%} {row['wrong_answers']:>13} |")
        for kind, (got, conf) in neg.items():
            refused = float(((got < 0) | (conf < t)).mean())
            row[f"{kind}_refused"] = refused
            line += f" {refused:>8.1%}"
        table.append(row)
        print(line + ("   <- default" if t == ABSTAIN_BELOW else ""))
    print("(coverage: share given a label; accuracy: of those; wrong: rendered pictures given a wrong label; "
          "refused: given no label, because no ink was found or the best probability was below the threshold)")
    for kind, (got, conf) in neg.items():
        print(f"  {kind}: {len(got)} pictures, no ink found in {int((got < 0).sum())}, "
              f"median confidence of the rest {np.median(conf[got >= 0]) if (got >= 0).any() else float('nan'):.2f}")

    if args.json:
        doc = {
            "model": name, "load_seconds": round(load_seconds, 3), "split": args.split, "n": len(x),
            "seed": args.seed, "default_threshold": ABSTAIN_BELOW,
            "raw_accuracy": raw_acc, "raw_preprocessed_accuracy": raw_pre_acc,
            "rendered_accuracy": rendered_acc, "gap_points": round(gap, 3), "no_ink_renders": no_ink,
            "ms_per_image": {"render": 1000 * render_s / len(x), "recognize": 1000 * recognize_s / len(x),
                             "model": model_ms},
            "wrong_renders": [int(i) for i in wrong],
            "thresholds": table,
            "negatives": {kind: len(got) for kind, (got, _) in neg.items()},
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


def _classify(recognize, predictor, pictures) -> tuple[np.ndarray, np.ndarray]:
    """Labels (-1 where no ink was found) and top probabilities, via recognize() with no threshold."""
    labels, conf = [], []
    for start in range(0, len(pictures), BATCH):
        for r in recognize(predictor, pictures[start: start + BATCH], threshold=0.0):
            labels.append(-1 if r.label is None else r.label)
            conf.append(r.confidence)
    return np.array(labels, dtype=np.int64), np.array(conf, dtype=np.float64)


def _glyph28(char: str, rng: np.random.Generator) -> np.ndarray:
    """A character drawn MNIST-style: white on black, longer side 20 px, centred in 28x28."""
    from PIL import Image, ImageDraw, ImageFont

    from digits.vision import to_mnist

    font = ImageFont.truetype(str(FONTS[int(rng.integers(0, len(FONTS)))]), 96)
    img = Image.new("L", (160, 160), 0)
    ImageDraw.Draw(img).text((30, 10), char, fill=255, font=font)
    a = to_mnist(img)  # crop, 20 px box, centre of mass: as MNIST
    return np.rint(a * 255).astype(np.uint8)


def _scribble28(rng: np.random.Generator) -> np.ndarray:
    """Random shapes and strokes: an ellipse, a box, a zigzag, a cross-hatch, a spiral."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (112, 112), 0)
    draw = ImageDraw.Draw(img)
    width = int(rng.integers(6, 14))
    kind = int(rng.integers(0, 5))
    if kind == 0:
        draw.ellipse([10, 30, 102, 82], outline=255, width=width)  # a flat ellipse, not a 0
    elif kind == 1:
        draw.rectangle([20, 20, 92, 92], outline=255, width=width)
    elif kind == 2:
        xs = np.linspace(10, 102, int(rng.integers(5, 9)))
        draw.line([(float(xv), 30.0 if i % 2 else 82.0) for i, xv in enumerate(xs)], fill=255, width=width)
    elif kind == 3:
        for k in range(3):
            draw.line([(10, 20 + 30 * k), (102, 30 + 30 * k)], fill=255, width=width)
            draw.line([(20 + 30 * k, 10), (30 + 30 * k, 102)], fill=255, width=width)
    else:
        t = np.linspace(0, 4 * np.pi, 80)
        r = 5 + 5.5 * t
        draw.line([(float(56 + ri * np.cos(ti)), float(56 + ri * np.sin(ti))) for ri, ti in zip(r, t)],
                  fill=255, width=width)
    img = img.rotate(float(rng.uniform(0, 360)), Image.Resampling.BICUBIC, fillcolor=0)
    from digits.vision import to_mnist

    return np.rint(to_mnist(img) * 255).astype(np.uint8)


def _negatives(n: int, seed: list[int], render_like_user) -> dict[str, list]:
    """Pictures that hold no digit, photographed like the benchmark's digits."""
    from PIL import Image

    rng = np.random.default_rng([*seed, 1_000_000])
    blank = [render_like_user(np.zeros((28, 28), np.uint8), rng) for _ in range(n)]
    noise, texture = [], []
    for _ in range(n):  # random RGB pixels
        h, w = int(rng.integers(100, 300)), int(rng.integers(100, 300))
        noise.append(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))
    for _ in range(n):  # smooth blotches, like a photo of a surface: random pixels blown up 8x
        h, w = int(rng.integers(100, 300)), int(rng.integers(100, 300))
        small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1), dtype=np.uint8)
        texture.append(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))
    letters = [render_like_user(_glyph28(NOT_DIGITS[i % len(NOT_DIGITS)], rng), rng) for i in range(n)]
    shapes = [render_like_user(_scribble28(rng), rng) for _ in range(n)]
    return {"blank": blank, "noise": noise, "texture": texture, "letters": letters, "shapes": shapes}


if __name__ == "__main__":
    sys.exit(main())
