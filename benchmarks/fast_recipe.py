"""Why `fast` looks the way it does: network shape and precision, side by side, in one run.

Trains each variant with `fast`'s recipe (Adam, one-cycle rate to 0.01,
batch 256, 3 epochs, TensorFlow without XLA, all 60,000 images) in a fresh
process and prints seconds per epoch, time to 99.0% test accuracy and the
final test accuracy:

- the Keras "simple MNIST convnet" (conv-pool-conv-pool, 2.4 M multiply-adds
  an image) against `fast`'s two strided convolutions and dense layer (0.45 M
  since its second convolution has 32 filters; 0.78 M with 64, as in the
  tables in BENCHMARKS.md measured before that);
- each in float32 and in mixed bfloat16 (float32 weights, bfloat16 arithmetic;
  native on processors with AVX512-BF16 or AMX);
- and, for contrast, `cnn-bn` for two epochs on 12,800 images in both precisions:
  batch normalization and augmentation dominate its time, so bfloat16 does not
  pay there and it keeps float32.

    python benchmarks/fast_recipe.py [--data-dir DIR] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from _worker import run_worker

WORKER = r'''
import json, sys, time
from digits.backend import use_backend
use_backend("tensorflow")
import keras
from digits.datasets import load_dataset
from digits.models import build_model
from digits.datasets import to_inputs
from digits.training import _dtype_policy, learning_rate_schedule

network, precision, seed, data_dir, limit, epochs = sys.argv[1:7]
limit, epochs = int(limit), int(epochs)
data = load_dataset("mnist", data_dir=data_dir, progress=False)
x, y = to_inputs(data.x_train[:limit]), data.y_train[:limit].astype("int32")
x_test, y_test = to_inputs(data.x_test), data.y_test.astype("int32")
keras.utils.set_random_seed(int(seed))
with _dtype_policy(precision):
    if network == "keras-example":  # the example's layers, with fast's softmax output
        from keras import layers
        model = keras.Sequential([keras.Input((28, 28)), layers.Reshape((28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(), layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(), layers.Flatten(), layers.Dropout(0.25),
            layers.Dense(10, activation="softmax", dtype="float32")])
    else:
        model = build_model(network)
steps = epochs * -(-len(x) // 256)
model.compile(keras.optimizers.Adam(learning_rate_schedule("onecycle", 0.01, steps)),
              "sparse_categorical_crossentropy", jit_compile=False)

class Clock(keras.callbacks.Callback):  # epoch times and test accuracy; measuring it is not counted
    rows = []
    def on_epoch_begin(self, epoch, logs=None):
        self.t = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        took = time.perf_counter() - self.t
        acc = float((self.model.predict(x_test, batch_size=2000, verbose=0).argmax(1) == y_test).mean())
        self.rows.append((took, acc))

model.fit(x, y, batch_size=256, epochs=epochs, verbose=0, callbacks=[Clock()])
print("RESULT " + json.dumps(Clock.rows))
'''

VARIANTS = [  # (network, precision, images, epochs)
    ("keras-example", "float32", 60_000, 3),
    ("keras-example", "mixed_bfloat16", 60_000, 3),
    ("fast", "float32", 60_000, 3),
    ("fast", "mixed_bfloat16", 60_000, 3),
    ("cnn-bn", "float32", 12_800, 2),
    ("cnn-bn", "mixed_bfloat16", 12_800, 2),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DIGITS_DATA_DIR", "../shared/datasets/mnist"))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    data_dir = str(Path(args.data_dir).resolve())
    print("| network | precision | images | seconds per 60k-image epoch (first, later) | time to 99.0% | "
          "test accuracy after each epoch |")
    print("| --- | --- | --- | --- | --- | --- |")
    for network, precision, images, epochs in VARIANTS:
        rows = run_worker(WORKER, [network, precision, args.seed, data_dir, images, epochs], f"{network} {precision}")
        scale = 60_000 / images
        per_epoch = [t * scale for t, _ in rows]
        later = f", {min(per_epoch[1:]):.1f}" if len(per_epoch) > 1 else ""
        elapsed, reached = 0.0, "not reached"
        for i, (t, acc) in enumerate(rows):
            elapsed += t
            if acc >= 0.99:
                reached = f"{elapsed:.1f} s (epoch {i + 1})"
                break
        full = images == 60_000  # a subset run times the epoch only: its accuracy would mean nothing
        accs = ", ".join(f"{a:.2%}" for _, a in rows) if full else "— (timing only)"
        print(f"| {network} | {precision} | {images:,} | {per_epoch[0]:.1f}{later} | "
              f"{reached if full else '—'} | {accs} |", flush=True)


if __name__ == "__main__":
    main()
