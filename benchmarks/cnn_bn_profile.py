"""Where `cnn-bn`'s training time goes: the registry's model with parts taken out, side by side, in one run.

Each line is a fresh process training the registry's `cnn-bn` (TensorFlow
without XLA, Adam, batch 128, as `digits train --model cnn-bn` does) on the
first N training images: one epoch to warm up (graph building, oneDNN's
kernel choice), then one timed epoch, printed as seconds per 60,000-image
epoch.  The variants drop layers from the same built model, so nothing else
changes:

- ``as shipped``: float32, with augmentation and batch normalization;
- ``no augmentation``: the three random-transform layers removed;
- ``no batch norm``: every BatchNormalization layer removed (timing only: the
  convolutions keep use_bias=False, so this is not a recipe);
- ``mixed bfloat16``: float32 weights, bfloat16 arithmetic (native with
  AVX512-BF16 or AMX; emulated, and slower, elsewhere);
- ``mixed bfloat16, batch 256``.

    python benchmarks/cnn_bn_profile.py [--data-dir DIR] [--images 6144]
"""

from __future__ import annotations

import argparse
import os

from _worker import run_worker

WORKER = r'''
import json, sys, time
from digits.backend import use_backend
use_backend("tensorflow")
import keras
from digits.datasets import load_dataset, to_inputs
from digits.models import build_model
from digits.training import _dtype_policy

drop, precision, batch, data_dir, images = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
data = load_dataset("mnist", data_dir=data_dir or None, progress=False)
x, y = to_inputs(data.x_train[:images]), data.y_train[:images].astype("int32")
keras.utils.set_random_seed(1)
with _dtype_policy(precision):
    model = build_model("cnn-bn")
    kinds = {"augmentation": ("RandomRotation", "RandomTranslation", "RandomZoom"),
             "batchnorm": ("BatchNormalization",), "none": ()}[drop]
    model = keras.Sequential([keras.Input((28, 28))] +
                             [layer for layer in model.layers if type(layer).__name__ not in kinds])
model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", jit_compile=False,
              steps_per_execution=64)
took = []
for _ in range(2):  # the first epoch warms up
    started = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    took.append(time.perf_counter() - started)
print("RESULT " + json.dumps([t * 60_000 / len(x) for t in took]))  # per 60k, whatever `images` held
'''

VARIANTS = [  # (label, layers dropped, precision, batch)
    ("as shipped (float32)", "none", "float32", 128),
    ("no augmentation", "augmentation", "float32", 128),
    ("no batch norm", "batchnorm", "float32", 128),
    ("mixed bfloat16", "none", "mixed_bfloat16", 128),
    ("mixed bfloat16, no batch norm", "batchnorm", "mixed_bfloat16", 128),
    ("mixed bfloat16, batch 256", "none", "mixed_bfloat16", 256),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("DIGITS_DATA_DIR"))
    parser.add_argument("--images", type=int, default=6144, help="training images per timed epoch")
    args = parser.parse_args()
    if not 1 <= args.images <= 60_000:
        parser.error(f"--images must be between 1 and 60000 (MNIST's training images), got {args.images}")
    from digits.backend import native_bfloat16

    print(f"bfloat16 native on this processor: {native_bfloat16()}")
    print(f"{'variant':34} {'warm-up':>9} {'timed':>9}  (seconds per 60k-image epoch)")
    for label, drop, precision, batch in VARIANTS:
        result = run_worker(WORKER, [drop, precision, batch, args.data_dir or "", args.images], label, keep_going=True)
        if result is None:
            continue
        first, timed = result
        print(f"{label:34} {first:9.1f} {timed:9.1f}", flush=True)


if __name__ == "__main__":
    main()
