"""The benchmark table: every comparison, run side by side on this machine, printed as Markdown.

    python benchmarks/run_all.py [--repeats 3] [--runs RUN_DIR ...] > BENCHMARKS.md

Sections:
1. seed 001's own code against ``digits train --model mlp --epochs 5``
   (whole-process wall time, ratio, test accuracy; ``train_vs_seed.py``);
2. time to 99.0% test accuracy: the Keras "simple MNIST convnet" example's
   recipe against Digits' ``cnn`` and ``fast`` (training seconds until the
   test accuracy, checked after every epoch and not counted, first reaches
   99.0%; final accuracy);
3. the best single models and their ensemble, from ``--runs`` (trained
   beforehand: the high-accuracy models take half an hour each on this CPU);
4. inference throughput and single-image latency per model and backend
   (``inference.py``).

Everything runs in this process tree, one job at a time.  On a shared CPU
absolute times drift; the ratios within a section are what hold.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

TIME_TO_99 = r'''
import json, sys, time
from digits.backend import use_backend
use_backend("tensorflow")
import keras
from digits.datasets import load_dataset
from digits.training import TrainConfig, fit_model, to_inputs, training_arrays

recipe, data_dir = sys.argv[1], sys.argv[2]
data = load_dataset("mnist", data_dir=data_dir, progress=False)
x_test, y_test = to_inputs(data.x_test), data.y_test.astype("int32")

class TestAccuracy(keras.callbacks.Callback):
    """Test accuracy after every epoch; the time spent measuring it is not counted."""
    def __init__(self):
        self.rows, self.paused, self.started = [], 0.0, None
    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        t = time.perf_counter()
        p = self.model.predict(x_test, batch_size=2000, verbose=0)
        acc = float((p.argmax(1) == y_test).mean())
        self.rows.append((t - self.started - self.paused, acc))
        self.paused += time.perf_counter() - t

probe = TestAccuracy()
if recipe == "keras-example":  # keras.io/examples/vision/mnist_convnet, verbatim settings
    from keras import layers
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((28, 28, 1)), layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(2), layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Flatten(), layers.Dropout(0.5), layers.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    x = to_inputs(data.x_train)[..., None]
    y = keras.utils.to_categorical(data.y_train, 10)
    x_test = x_test[..., None]
    model.fit(x, y, batch_size=128, epochs=15, validation_split=0.1, verbose=0, callbacks=[probe])
else:
    cfg = TrainConfig(model=recipe, seed=1, backend="tensorflow").resolved()
    x, y = training_arrays(cfg, data)
    fit_model(cfg, x, y, callbacks=[probe])
print("RESULT " + json.dumps(probe.rows))
'''


def run_python(code: str, *args: str) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    return next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))[7:]


def section_seed(data_dir: str, repeats: int) -> str:
    proc = subprocess.run([sys.executable, str(HERE / "train_vs_seed.py"), "--repeats", str(repeats),
                           "--data-dir", data_dir], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    return proc.stdout[proc.stdout.index("| per run"):].strip()


def section_time_to_99(data_dir: str) -> str:
    lines = ["| recipe | epochs | time to 99.0% test accuracy | final test accuracy | training time |",
             "| --- | --- | --- | --- | --- |"]
    for recipe, label in (("keras-example", "Keras example convnet (batch 128, 15 epochs, Adam)"),
                          ("cnn", "Digits `cnn`"), ("fast", "Digits `fast`")):
        rows = json.loads(run_python(TIME_TO_99, recipe, data_dir))
        reached = next((f"{t:.1f} s (epoch {i + 1})" for i, (t, a) in enumerate(rows) if a >= 0.99), "not reached")
        lines.append(f"| {label} | {len(rows)} | {reached} | {rows[-1][1]:.2%} | {rows[-1][0]:.1f} s |")
    return "\n".join(lines)


def section_runs(runs: list[str], data_dir: str) -> str:
    if not runs:
        return "(no `--runs` given)"
    lines = ["| run | model | seed | epochs | training time | test accuracy |", "| --- | --- | --- | --- | --- | --- |"]
    for path in runs:
        config = json.loads((Path(path) / "config.json").read_text())
        metrics = json.loads((Path(path) / "metrics.json").read_text())
        lines.append(f"| {Path(path).name} | {config.get('model')} | {config.get('seed', '')} | "
                     f"{metrics.get('epochs_run', '')} | {metrics.get('train_seconds', 0) / 60:.1f} min | "
                     f"{metrics['test_accuracy']:.2%} |")
    if len(runs) >= 2:
        with tempfile.TemporaryDirectory() as tmp:
            for method in ("average", "vote"):
                out = Path(tmp) / method
                subprocess.run(["digits", "ensemble", *runs, "--method", method, "--out", str(out),
                                "--data-dir", data_dir], check=True, capture_output=True)
                acc = json.loads((out / "metrics.json").read_text())["test_accuracy"]
                lines.append(f"| ensemble ({method}) of the above | | | | | {acc:.2%} |")
    return "\n".join(lines)


def section_inference() -> str:
    proc = subprocess.run([sys.executable, str(HERE / "inference.py"), "--models", "mlp", "cnn", "cnn-bn", "fast"],
                          capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    return proc.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", nargs="*", default=[], metavar="RUN_DIR")
    parser.add_argument("--data-dir", default=os.environ.get("DIGITS_DATA_DIR", "../shared/datasets/mnist"))
    args = parser.parse_args()
    data_dir = str(Path(args.data_dir).resolve())
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    started = time.time()
    parts = [
        "# Benchmarks",
        f"Produced by `python benchmarks/run_all.py` in one run on {time.strftime('%Y-%m-%d')}: "
        f"{os.cpu_count()} cores of an {cpu}, no GPU, Python {platform.python_version()}. "
        "Shared machine: compare within a table, not across days.",
        "## 1. Seed 001's code against `digits train --model mlp --epochs 5`", section_seed(data_dir, args.repeats),
        "## 2. Time to 99.0% test accuracy (TensorFlow, no XLA)", section_time_to_99(data_dir),
        "## 3. Best single models and their ensemble", section_runs(args.runs, data_dir),
        "## 4. Inference: throughput and single-image latency", section_inference(),
    ]
    parts.append(f"_The whole run took {(time.time() - started) / 60:.1f} min._")
    print("\n\n".join(parts))


if __name__ == "__main__":
    main()
