"""Ensembles: several trained runs combined into one servable model.

``digits ensemble RUN_DIR RUN_DIR ... --out DIR`` builds one Keras model
whose output is either the average of the members' probabilities
(``--method average``, the default) or the share of members voting for each
class (``--method vote``: majority vote, ties broken by the average
probability).  The result is an ordinary run directory, so ``evaluate``,
``report``, ``predict`` and ``serve`` work on it unchanged.
"""

from __future__ import annotations

import os
import time

import keras
from digits.errors import DigitsError
from digits.layers import MajorityVote
from digits.runs import Run, RunWriter

METHODS = ("average", "vote")


def build_ensemble(members: list[keras.Model], method: str = "average") -> keras.Model:
    if method not in METHODS:
        raise DigitsError(f"unknown ensemble method {method!r}; choose average or vote")
    if len(members) < 2:
        raise DigitsError("an ensemble needs at least two runs")
    image = keras.Input((28, 28), name="image")
    outputs = []
    for i, member in enumerate(members):
        member.name = f"member_{i}_{member.name}"  # unique layer names inside the ensemble
        outputs.append(member(image))
    if method == "average":
        combined = keras.layers.Average(name="probabilities")(outputs)
    else:
        combined = MajorityVote(name="probabilities")(keras.ops.stack(outputs, axis=0))
    return keras.Model(image, combined, name=f"ensemble_{method}_{len(members)}")


def ensemble(runs: list[str | os.PathLike | Run], *, out: str | os.PathLike | None = None,
             method: str = "average", data_dir: str | os.PathLike | None = None) -> Run:
    """Combine trained runs into one run directory, evaluated on the test split."""
    from digits.datasets import load_dataset
    from digits.evaluation import evaluate_arrays
    from digits.datasets import to_inputs

    opened = [r if isinstance(r, Run) else Run(r) for r in runs]
    datasets = {r.config.get("dataset", "mnist") for r in opened}
    if len(datasets) > 1:
        raise DigitsError(f"runs were trained on different datasets: {', '.join(sorted(datasets))}")
    writer = RunWriter.create(out, f"ensemble-{method}")
    data = load_dataset(datasets.pop(), data_dir=data_dir)
    model = build_ensemble([r.load_model() for r in opened], method)
    started = time.perf_counter()
    x_test = to_inputs(data.x_test)
    result = evaluate_arrays(model, x_test, data.y_test, data.class_names)
    members = [{"run": str(r.path), "model": r.config.get("model"),
                "test_accuracy": r.metrics.get("test_accuracy")} for r in opened]
    with writer:
        writer.save_model(model)
        writer.write_json("config.json", {
            "model": model.name, "method": method, "members": members,
            "dataset": data.name, "dataset_source": data.source, "class_names": list(data.class_names),
            "backend": keras.backend.backend(),
        })
        writer.write_json("metrics.json", {
            "test_accuracy": result.accuracy, "test_loss": result.loss,
            "member_test_accuracies": [m["test_accuracy"] for m in members],
            "parameters": model.count_params(), "test_images": len(data.y_test),
            "evaluate_seconds": round(time.perf_counter() - started, 3),
        })
    return Run(writer.final_path)
