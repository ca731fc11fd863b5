"""Time to 99.0% and to 99.5% test accuracy: the registry's quick recipes, over seeds, side by side, in one run.

Each run is a fresh process that trains a registry recipe exactly as
``digits train`` would (its epochs, batch, schedule, backend; 57,000 images,
the last 3,000 held out for validation) and then measures the *final* model
on the test set once.  Nothing is chosen on the test set: not the epoch, not
the run.  "Training time" is the clock from building the model to the end of
``fit``, as ``metrics.json``'s ``train_seconds`` (compiling included, imports
and reading the data not).  The recipes alternate within each seed, so a busy
machine slows them alike.

Targets (issue 14, target 3): the mean test accuracy over the seeds reaches the
level, and the mean training time is within the budget:

- ``fast``: 99.0% in at most 5 s;
- ``fast-aug``: 99.5% in at most 60 s.

``--before`` adds ``fast`` as it was before it trained two epochs with Adam's
betas at (0.7, 0.9): three epochs with Keras's defaults (0.9, 0.999), for the
comparison.

    python benchmarks/time_to_accuracy.py [--seeds 1 2 3] [--recipes fast fast-aug] [--before] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

from _worker import run_worker

WORKER = r'''
import json, sys, time
from digits.backend import use_backend
from digits.training import TrainConfig

recipe, seed, data_dir, changes = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
if "adam_betas" in changes:  # a recipe setting, not a run's: change the registry entry in this process
    import dataclasses
    from digits import models
    models.MODELS[recipe] = dataclasses.replace(models.MODELS[recipe], adam_betas=tuple(changes["adam_betas"]))
cfg = TrainConfig(model=recipe, seed=seed, epochs=changes.get("epochs")).resolved()
use_backend(cfg.backend)
import keras
from digits.datasets import load_dataset, to_inputs
from digits.evaluation import evaluate_arrays
from digits.training import fit_model, inference_copy, training_arrays

data = load_dataset("mnist", data_dir=data_dir, progress=False)
x, y = training_arrays(cfg, data)
started = time.perf_counter()
model, history, _ = fit_model(cfg, x, y)
seconds = time.perf_counter() - started
test = evaluate_arrays(inference_copy(model), to_inputs(data.x_test), data.y_test).accuracy
print("RESULT " + json.dumps({"seconds": seconds, "epochs": cfg.epochs, "precision": cfg.precision,
                              "backend": cfg.backend, "val": history.history["val_accuracy"][-1], "test": test}))
'''

# (label, registry recipe, changes to its recipe, accuracy level, time budget in seconds)
RECIPES = [
    ("`fast`", "fast", None, 0.990, 5.0),
    ("`fast-aug`", "fast-aug", None, 0.995, 60.0),
]
BEFORE = ("`fast` before (3 epochs, Adam's default betas)", "fast",
          {"epochs": 3, "adam_betas": [0.9, 0.999]}, 0.990, 5.0)


def run_one(recipe: str, changes, seed: int, data_dir: str) -> dict:
    return run_worker(WORKER, [recipe, seed, data_dir, json.dumps(changes or {})], f"{recipe} seed {seed}")


def measure(recipes, seeds, data_dir: str) -> tuple[str, list[tuple]]:
    """Markdown table of every run and each recipe's mean; returns (table, target rows)."""
    results: dict[str, list[dict]] = {label: [] for label, *_ in recipes}
    for seed in seeds:
        for label, recipe, changes, *_ in recipes:
            results[label].append({"seed": seed, **run_one(recipe, changes, seed, data_dir)})
            r = results[label][-1]
            print(f"{label} seed {seed}: {r['seconds']:.1f} s, test {r['test']:.2%}", file=sys.stderr, flush=True)
    lines = ["| recipe | seed | epochs | precision | training time | final validation accuracy | "
             "final test accuracy |", "| --- | --- | --- | --- | --- | --- | --- |"]
    targets = []
    for label, recipe, changes, level, budget in recipes:
        rows = results[label]
        for r in rows:
            lines.append(f"| {label} | {r['seed']} | {r['epochs']} | {r['precision']} | {r['seconds']:.1f} s | "
                         f"{r['val']:.2%} | {r['test']:.2%} |")
        seconds = statistics.mean(r["seconds"] for r in rows)
        test = statistics.mean(r["test"] for r in rows)
        lines.append(f"| **{label}, mean of {len(rows)}** | | | | **{seconds:.1f} s** | "
                     f"{statistics.mean(r['val'] for r in rows):.2%} | **{test:.2%}** "
                     f"(min {min(r['test'] for r in rows):.2%}) |")
        if changes is None:
            short = [f"{(level - test) * 100:.2f} points short"] if test < level else []
            slow = [f"{seconds / budget:.1f}× the time"] if seconds > budget else []
            status = "met" if not short and not slow else "not met: " + ", ".join(short + slow)
            targets.append((f"{level:.1%} test accuracy in ≤ {budget:g} s of training ({label}, mean of "
                            f"{len(rows)} seeds)", f"{test:.2%} in {seconds:.1f} s", status))
    return "\n".join(lines), targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--recipes", nargs="+", default=[r[1] for r in RECIPES], choices=[r[1] for r in RECIPES])
    parser.add_argument("--before", action="store_true", help="also train fast's earlier shape")
    parser.add_argument("--data-dir", default=os.environ.get("DIGITS_DATA_DIR", "../shared/datasets/mnist"))
    args = parser.parse_args()
    recipes = [r for r in RECIPES if r[1] in args.recipes] + ([BEFORE] if args.before else [])
    table, targets = measure(recipes, args.seeds, str(Path(args.data_dir).resolve()))
    print(table)
    print()
    for what, measured, status in targets:
        print(f"- {what}: {measured}: {status}")


if __name__ == "__main__":
    main()
