"""Does it pay to train the classifier on what cleaning leaves?  (Issue "real paper", item 5.)

Renders MNIST digits on paper exactly as ``benchmarks/real_paper.py`` does
(every kind but "lines only"), reads each picture with ``read_number``'s own
segmentation (:func:`digits.inference.read_rows`: printed lines removed,
rows, touching digits cut) and keeps each digit's 28x28 crop, the image the
classifier sees, with its label, wherever a row holds as many digits as were
written.  For the one-digit kinds the crop is what ``recognize`` makes of the
picture.  Crops of the first 57,000 training digits train; crops of the last
3,000 (the validation digits, which no model trained on) measure.

The starting model (default: the bundled one) is then fine-tuned on the
training crops mixed with MNIST's first 57,000 training images (Adam, cosine
decay from ``--rate``, batch 128), and the two models are printed side by
side: on the validation crops of each kind, the share wrong or unsure (below
the starting model's threshold), and on MNIST's validation and test images,
the accuracy.  The fine-tuned model is saved as a run directory (``--out``),
so ``python benchmarks/real_paper.py --digits validation --model OUT`` shows
what it does to whole pictures.

    python benchmarks/paper_crops.py [--per-kind 750] [--validation-per-kind 200] [--epochs 2] [--rate 3e-4]
                                     [--model RUN_DIR] [--out RUN_DIR] [--mnist N] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

import real_paper

KINDS = [k for k in real_paper.KINDS if k != "lines only"]
TRAIN_DIGITS = 57_000
"""Crops to train on come from the first 57,000 training digits; the last 3,000 are the validation digits."""


def crops(split: str, per_kind: int, seed: int, model: str | None, worker: int, workers: int):
    """This worker's share of the crops: uint8 (N, 28, 28), labels, kind indices, pictures read."""
    from digits.backend import use_backend
    from digits.datasets import load_dataset

    use_backend(None)
    from digits.inference import load_predictor, read_rows, recognize

    data = load_dataset("mnist", progress=False)
    x, y = ((data.x_train[:TRAIN_DIGITS], data.y_train[:TRAIN_DIGITS]) if split == "train"
            else (data.x_train[TRAIN_DIGITS:], data.y_train[TRAIN_DIGITS:]))
    predictor = load_predictor(model)
    images, labels, kinds = [], [], []
    for k, kind in enumerate(KINDS):
        index = list(real_paper.KINDS).index(kind)
        for i, (picture, truth) in enumerate(real_paper._pictures(kind, index, per_kind, seed, x, y)):
            if i % workers != worker:
                continue
            if "digit" in kind:
                (p,) = recognize(predictor, [picture])
                found = [[p]] if p.image is not None else []
            else:
                found = [[p for _, p in row] for row in read_rows(predictor, picture)]
            rows = truth.split("\n")
            if len(found) != len(rows):
                continue
            for row, written in zip(found, rows):
                if len(row) == len(written):
                    images += [p.image for p in row]
                    labels += [int(d) for d in written]
                    kinds += [k] * len(row)
    return (np.rint(np.stack(images) * 255).astype(np.uint8), np.array(labels, np.uint8),
            np.array(kinds, np.uint8))


def all_crops(split: str, per_kind: int, seed: int, model: str | None, workers: int):
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(crops, *zip(*[(split, per_kind, seed, model, w, workers) for w in range(workers)])))
    return tuple(np.concatenate(column) for column in zip(*parts))


def fine_tune(model_dir: Path, x: np.ndarray, y: np.ndarray, *, epochs: int, rate: float, seed: int):
    import keras

    from digits.training import learning_rate_schedule

    keras.utils.set_random_seed(seed)
    model = keras.saving.load_model(model_dir / "model.keras", compile=False)
    steps = epochs * int(np.ceil(len(x) / 128))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate_schedule("cosine", rate, steps)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=128, epochs=epochs, shuffle=True, verbose=2)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-kind", type=int, default=750, help="training pictures per kind (default: 750)")
    parser.add_argument("--validation-per-kind", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rate", type=float, default=3e-4, help="the peak learning rate (default: 3e-4)")
    parser.add_argument("--seed", type=int, default=1, help="of the rendered pictures and of training")
    parser.add_argument("--model", metavar="RUN_DIR", help="the model to start from (default: the bundled one)")
    parser.add_argument("--out", metavar="RUN_DIR", default="runs/paper-crops", help="where the fine-tuned run goes")
    parser.add_argument("--mnist", type=int, default=TRAIN_DIGITS,
                        help="MNIST training images mixed in (default: all 57,000; fewer for a quick try)")
    parser.add_argument("--workers", type=int, default=2, help="processes that render and read (default: 2)")
    args = parser.parse_args(argv)
    for flag, value in (("--per-kind", args.per_kind), ("--validation-per-kind", args.validation_per_kind),
                        ("--epochs", args.epochs), ("--mnist", args.mnist), ("--workers", args.workers)):
        if value < (0 if flag == "--mnist" else 1):
            parser.error(f"argument {flag}: must be at least {0 if flag == '--mnist' else 1}, got {value}")
    if not args.rate > 0:
        parser.error(f"argument --rate: must be positive, got {args.rate}")
    if args.model and not (Path(args.model) / "model.keras").is_file():
        parser.error(f"argument --model: {args.model}: no model.keras there")

    started = time.perf_counter()
    train = all_crops("train", args.per_kind, args.seed, args.model, args.workers)
    val = all_crops("validation", args.validation_per_kind, args.seed + 1, args.model, args.workers)
    crop_seconds = time.perf_counter() - started
    print(f"crops: {len(train[0])} to train on, {len(val[0])} to measure ({crop_seconds:.0f} s)", flush=True)

    from digits.backend import use_backend
    from digits.datasets import load_dataset, to_inputs

    use_backend("tensorflow")  # the backend the bundled model was trained on (its model card)
    from digits.inference import bundled_run_dir, load_predictor

    data = load_dataset("mnist", progress=False)
    start_dir = Path(args.model) if args.model else bundled_run_dir()
    before = load_predictor(args.model)
    mixed = min(args.mnist, TRAIN_DIGITS)
    x = np.concatenate([to_inputs(data.x_train[:mixed]), to_inputs(train[0])])
    y = np.concatenate([data.y_train[:mixed], train[1]])
    started = time.perf_counter()
    model = fine_tune(start_dir, x, y, epochs=args.epochs, rate=args.rate, seed=args.seed)
    fit_seconds = time.perf_counter() - started

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name in ("config.json", "metrics.json"):  # metrics.json gets the run's own test accuracy below
        shutil.copy(start_dir / name, out / name)
    model.save(out / "model.keras")
    after = load_predictor(out)

    sets = {"MNIST validation (3,000)": (to_inputs(data.x_train[TRAIN_DIGITS:]), data.y_train[TRAIN_DIGITS:]),
            "MNIST test (10,000)": (to_inputs(data.x_test), data.y_test)}
    results: dict = {"crops": {"train": int(len(train[0])), "validation": int(len(val[0]))},
                     "seconds": {"crops": round(crop_seconds), "fine_tune": round(fit_seconds)}}
    print(f"\nfine-tuned {args.epochs} epochs on {len(x)} images in {fit_seconds:.0f} s; threshold "
          f"{before.threshold}\n")
    print("| validation crops | crops | before: wrong or unsure | after: wrong or unsure |")
    print("| --- | --- | --- | --- |")
    p_before, p_after = before.probabilities(to_inputs(val[0])), after.probabilities(to_inputs(val[0]))
    for k, kind in [*enumerate(KINDS), (None, "all")]:
        mask = np.ones(len(val[1]), bool) if k is None else val[2] == k
        bad = [float(np.mean((p[mask].argmax(1) != val[1][mask]) | (p[mask].max(1) < before.threshold)))
               for p in (p_before, p_after)]
        results[kind] = {"crops": int(mask.sum()), "before": bad[0], "after": bad[1]}
        print(f"| {kind} | {mask.sum()} | {bad[0]:.2%} | {bad[1]:.2%} |")
    print("\n| accuracy | before | after |\n| --- | --- | --- |")
    for name, (images, labels) in sets.items():
        acc = [float(np.mean(m.probabilities(images).argmax(1) == labels)) for m in (before, after)]
        results[name] = {"before": acc[0], "after": acc[1]}
        print(f"| {name} | {acc[0]:.2%} | {acc[1]:.2%} |")
    (out / "paper_crops.json").write_text(json.dumps({**results, "args": vars(args)}, indent=2))
    # The run's own numbers; the threshold stays the starting model's (not measured again).
    metrics = {**json.loads((start_dir / "metrics.json").read_text()),
               "test_accuracy": results["MNIST test (10,000)"]["after"], "fine_tuned_from": str(start_dir)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"\nthe fine-tuned run: {out}; whole pictures: python benchmarks/real_paper.py --digits validation "
          f"--model {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
