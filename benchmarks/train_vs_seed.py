"""Seed 001's own code vs `digits train --model mlp --epochs 5`, side by side, in one run.

Each side runs as a fresh process (imports, data loading, training, test
evaluation: the whole wall time a user waits), alternating, `--repeats`
times.  Prints both sides' wall time, training time and test accuracy, and
the ratio of the medians.  The target (issue 14, target 6) is a ratio of at
most 0.20 with test accuracy at least as high and at least 97.5%.  Digits runs
as ``python -m digits.cli`` with this script's Python, so it measures the
Digits that Python imports (``PYTHONPATH=src`` for a checkout).

The seed code is seed 001 verbatim (tf.keras, Flatten → Dense(128, relu) →
Dense(10, softmax), Adam, sparse categorical cross-entropy,
``model.fit(x_train, y_train, epochs=5)``, i.e. batch 32) except for one
line: ``keras.datasets.mnist.load_data()`` needs the internet, so it reads
the same IDX files that Digits reads.

    python benchmarks/train_vs_seed.py [--repeats 3] [--before OLD/src] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _worker import run_worker

SEED_001 = r'''
import time
t0 = time.perf_counter()
import gzip, sys
import numpy as np
import tensorflow as tf
from tensorflow import keras

def idx(name, offset):  # stands in for keras.datasets.mnist.load_data(), which needs the internet
    with gzip.open(f"{sys.argv[1]}/{name}") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)
x_train = idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
y_train = idx("train-labels-idx1-ubyte.gz", 8)
x_test = idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
y_test = idx("t10k-labels-idx1-ubyte.gz", 8)

x_train = x_train / 255.0
x_test = x_test / 255.0
model = keras.Sequential([
    keras.layers.Flatten(input_shape=(28, 28)),
    keras.layers.Dense(128, activation='relu'),
    keras.layers.Dense(10, activation='softmax')
])
model.compile(optimizer='adam',
              loss='sparse_categorical_crossentropy',
              metrics=['accuracy'])
t1 = time.perf_counter()
model.fit(x_train, y_train, epochs=5, verbose=0)
t2 = time.perf_counter()
test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
print(f"RESULT [{t2 - t1:.3f}, {test_acc:.4f}]")
'''


TARGET_RATIO = 0.20


def run_seed(data_dir: str) -> dict:
    started = time.perf_counter()
    fit, acc = run_worker(SEED_001, [data_dir], "seed 001's code", env={"KERAS_BACKEND": "tensorflow"})
    return {"wall": time.perf_counter() - started, "fit": fit, "accuracy": acc}


def run_digits(data_dir: str, out: Path, src: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}  # Digits' own default
    if src:  # another Digits source tree (--before)
        env["PYTHONPATH"] = src
    cmd = [sys.executable, "-m", "digits.cli", "train", "--model", "mlp", "--epochs", "5", "--quiet",
           "--out", str(out), "--data-dir", data_dir]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if proc.returncode:
        sys.exit(f"digits train failed:\n{proc.stderr}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"wall": wall, "fit": metrics["train_seconds"], "accuracy": metrics["test_accuracy"]}


def compare(data_dir: str, repeats: int, before: str | None = None) -> tuple[str, float, bool]:
    """Alternate the sides `repeats` times; returns (Markdown table, wall-time ratio, target met).

    `before`: the ``src`` folder of another Digits (an earlier commit's checkout), timed as a third side.
    """
    seed, ours, earlier = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            seed.append(run_seed(data_dir))
            if before:
                earlier.append(run_digits(data_dir, Path(tmp) / f"before{i}", before))
            ours.append(run_digits(data_dir, Path(tmp) / f"run{i}"))
            print(f"repeat {i + 1}: seed {seed[-1]['wall']:.2f} s ({seed[-1]['accuracy']:.2%}), "
                  + (f"before {earlier[-1]['wall']:.2f} s ({earlier[-1]['accuracy']:.2%}), " if before else "")
                  + f"digits {ours[-1]['wall']:.2f} s ({ours[-1]['accuracy']:.2%})", file=sys.stderr, flush=True)

    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    ratio = med(ours, "wall") / med(seed, "wall")
    ok = (ratio <= TARGET_RATIO and med(ours, "accuracy") >= med(seed, "accuracy")
          and min(r["accuracy"] for r in ours) >= 0.975)
    table = "\n".join([
        f"| per run (median of {repeats}) | seed 001 (tf.keras, batch 32) | digits train --model mlp --epochs 5 | ratio |",
        "| --- | --- | --- | --- |",
        f"| wall time, whole process | {med(seed, 'wall'):.2f} s | {med(ours, 'wall'):.2f} s | {ratio:.3f} |",
        f"| training (fit) | {med(seed, 'fit'):.2f} s | {med(ours, 'fit'):.2f} s | "
        f"{med(ours, 'fit') / med(seed, 'fit'):.3f} |",
        f"| test accuracy | {med(seed, 'accuracy'):.2%} (min {min(r['accuracy'] for r in seed):.2%}) | "
        f"{med(ours, 'accuracy'):.2%} (min {min(r['accuracy'] for r in ours):.2%}) | |",
    ])
    if before:
        table += (f"\n| wall time, whole process, Digits from {before} | | {med(earlier, 'wall'):.2f} s | "
                  f"{med(earlier, 'wall') / med(seed, 'wall'):.3f} |"
                  f"\n| test accuracy, Digits from {before} | | {med(earlier, 'accuracy'):.2%} | |")
    return table, ratio, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", metavar="SRC",
                        help="also time the Digits in this src folder (e.g. an earlier commit's), alternating")
    parser.add_argument("--data-dir", default=os.environ.get("DIGITS_DATA_DIR", "../shared/datasets/mnist"))
    args = parser.parse_args()
    before = str(Path(args.before).resolve()) if args.before else None
    table, _, ok = compare(str(Path(args.data_dir).resolve()), args.repeats, before)
    print(table)
    print(f"\ntarget (wall-time ratio <= {TARGET_RATIO}; median accuracy >= the seed's; every run >= 97.5%): "
          f"{'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
