"""Ensembles: several trained runs combined into one servable model.

``digits ensemble RUN_DIR RUN_DIR ... --out DIR`` builds one Keras model
whose output is either the average of the members' probabilities
(``--method average``, the default) or the share of members voting for each
class (``--method vote``: majority vote, ties broken by the average
probability).  The result is an ordinary run directory, so ``evaluate``,
``report``, ``predict`` and ``serve`` work on it unchanged.

With ``--select`` the members are chosen from the runs given, never on the
test set: greedy forward selection (Caruana et al., 2004) on the validation
images every run held out, the last ``validation_split`` of the same
training images.  It starts from the run with the lowest validation loss
and adds, one at a time, the run whose addition lowers the loss of the
averaged probabilities most, until no run lowers it.  A weak run that would
pull the average down is left out.
"""

from __future__ import annotations

import os
import time

import keras
import numpy as np
from digits.errors import DigitsError
from digits.layers import MajorityVote
from digits.runs import Run, RunWriter
from digits.training import held_out_images

METHODS = ("average", "vote")


def _check(method: str, members: int) -> None:
    if method not in METHODS:
        raise DigitsError(f"unknown ensemble method {method!r}; choose average or vote")
    if members < 2:
        raise DigitsError("an ensemble needs at least two runs")


def build_ensemble(members: list[keras.Model], method: str = "average") -> keras.Model:
    _check(method, len(members))
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


def held_out(run: Run, train_images: int) -> range:
    """Which of the dataset's `train_images` training images `run` held out for validation.

    As training carves them: the last ``validation_split`` of the first ``limit`` images.
    """
    split, limit = run.config.get("validation_split") or 0, run.config.get("limit")
    return held_out_images(min(limit or train_images, train_images), split)


def select_members(probabilities: list[np.ndarray], labels: np.ndarray) -> list[dict]:
    """Greedy forward selection on validation loss: each step's member index, loss and accuracy.

    `probabilities` are the candidates' (N, 10) outputs on the same validation images.
    """
    def score(p: np.ndarray) -> tuple[float, float]:
        loss = -np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-7, 1.0)))
        return float(loss), float(np.mean(p.argmax(axis=1) == labels))

    steps: list[dict] = []
    total = np.zeros_like(probabilities[0])
    remaining = list(range(len(probabilities)))
    while remaining:
        scores = {i: score((total + probabilities[i]) / (len(steps) + 1)) for i in remaining}
        best = min(remaining, key=lambda i: scores[i][0])  # ties: the run given first
        if steps and scores[best][0] >= steps[-1]["validation_loss"]:
            break
        steps.append({"member": best, "validation_loss": scores[best][0], "validation_accuracy": scores[best][1]})
        total += probabilities[best]
        remaining.remove(best)
    return steps


def _select(opened: list[Run], models: list, data) -> tuple[list[Run], list, dict]:
    """The runs, models and selection record ``--select`` keeps (see the module's docstring)."""
    from digits.datasets import to_inputs
    from digits.evaluation import predict_probabilities

    def images(span: range) -> str:
        return f"training images {span.start}-{span.stop - 1}"

    span = held_out(opened[0], len(data.y_train))
    for r in opened:
        own = held_out(r, len(data.y_train))
        if not own:
            raise DigitsError(f"{r.path}: this run held out no validation images (validation_split "
                              f"{r.config.get('validation_split')}), so --select cannot judge it")
        if own != span:
            raise DigitsError(f"{r.path}: its validation images ({images(own)}) are not {opened[0].path}'s "
                              f"({images(span)}); --select needs runs that held out the same images")
    x, labels = to_inputs(data.x_train[span.start:span.stop]), np.asarray(data.y_train[span.start:span.stop])
    steps = select_members([predict_probabilities(m, x) for m in models], labels)
    if len(steps) < 2:
        raise DigitsError(f"--select kept only {opened[steps[0]['member']].path}: adding any other run "
                          f"raises the validation loss, and an ensemble needs at least two runs")
    kept = [s["member"] for s in steps]
    record = {
        "validation_images": len(labels),
        "steps": [{"run": str(opened[s["member"]].path), "validation_loss": round(s["validation_loss"], 6),
                   "validation_accuracy": s["validation_accuracy"]} for s in steps],
        "left_out": [str(r.path) for i, r in enumerate(opened) if i not in kept],
    }
    return [opened[i] for i in kept], [models[i] for i in kept], record


def ensemble(runs: list[str | os.PathLike | Run], *, out: str | os.PathLike | None = None,
             method: str = "average", data_dir: str | os.PathLike | None = None, select: bool = False) -> Run:
    """Combine trained runs into one run directory, evaluated on the test split.

    With `select`, only the runs chosen on the validation split (see the module's docstring).
    """
    from digits.datasets import load_dataset
    from digits.evaluation import evaluate_arrays
    from digits.datasets import to_inputs

    opened = [r if isinstance(r, Run) else Run(r) for r in runs]
    _check(method, len(opened))
    datasets = {r.config.get("dataset", "mnist") for r in opened}
    if len(datasets) > 1:
        raise DigitsError(f"runs were trained on different datasets: {', '.join(sorted(datasets))}")
    writer = RunWriter.create(out, f"ensemble-{method}")
    data = load_dataset(datasets.pop(), data_dir=data_dir)
    models = [r.load_model() for r in opened]
    selection = None
    if select:
        opened, models, selection = _select(opened, models, data)
    model = build_ensemble(models, method)
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
            **({"selection": selection} if selection else {}),
        })
    return Run(writer.final_path)
