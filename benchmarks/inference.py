"""Inference speed per model and backend: throughput at batch 1, 32 and 1024, and one-image latency.

For each backend (a fresh process each, since Keras fixes its backend at
import) and each registry model, measures:

- ``model.predict`` on one image (what the seeds do): the per-call overhead;
- Digits' :class:`~digits.inference.Predictor` on one image (what the API and
  ``digits predict`` use);
- Predictor throughput in images per second at batch sizes 1, 32 and 1024.

Weights are random: speed does not depend on them.  Prints a Markdown table.

    python benchmarks/inference.py [--backends jax tensorflow torch] [--models mlp cnn]

By default every backend installed here and every registry model.
"""

from __future__ import annotations

import argparse

from _worker import run_worker

WORKER = r'''
import json, sys, time
import numpy as np
from digits.backend import use_backend
use_backend(sys.argv[1])
from digits.inference import Predictor
from digits.models import build_model

def best_of(fn, repeats, inner):
    fn()  # warm-up: compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t) / inner)
    return min(times)

rows = []
for name in sys.argv[2].split(","):
    model = build_model(name)
    predictor = Predictor(model)
    rng = np.random.default_rng(0)
    one = rng.random((1, 28, 28), dtype=np.float32)
    row = {"backend": sys.argv[1], "model": name,
           "predict_1_ms": 1000 * best_of(lambda: model.predict(one, verbose=0), 3, 10),
           "predictor_1_ms": 1000 * best_of(lambda: predictor.probabilities(one), 5, 50)}
    for batch in (1, 32, 1024):
        x = rng.random((batch, 28, 28), dtype=np.float32)
        inner = max(1, 2048 // batch)
        row[f"ips_{batch}"] = batch / best_of(lambda: predictor.probabilities(x), 3, inner)
    rows.append(row)
print("RESULT " + json.dumps(rows))
'''


def measure(backends: list[str], models: list[str]) -> list[dict]:
    """One row per (model, backend): the times and throughputs above, each backend in its own process."""
    rows = []
    for backend in backends:
        rows += run_worker(WORKER, [backend, ",".join(models)], backend)
    return sorted(rows, key=lambda r: (models.index(r["model"]), r["backend"]))


def table(rows: list[dict]) -> str:
    lines = ["| model | backend | model.predict, 1 image | Predictor, 1 image | images/s at batch 1 | at 32 | at 1024 |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['backend']} | {r['predict_1_ms']:.2f} ms | {r['predictor_1_ms']:.3f} ms | "
                     f"{r['ips_1']:,.0f} | {r['ips_32']:,.0f} | {r['ips_1024']:,.0f} |")
    return "\n".join(lines)


def installed_backends() -> list[str]:
    """The Keras backends whose framework is installed here."""
    from importlib.util import find_spec

    return [b for b, module in (("jax", "jax"), ("tensorflow", "tensorflow"), ("torch", "torch")) if find_spec(module)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+", default=installed_backends())
    parser.add_argument("--models", nargs="+", default=["mlp", "mlp2", "mlp-256-128", "cnn", "cnn-bn", "fast"])
    args = parser.parse_args()
    print(table(measure(args.backends, args.models)))


if __name__ == "__main__":
    main()
