"""Evaluation on the official test split: loss, accuracy, per-class scores, confusion matrix.

Computed from the model's probabilities with NumPy, so the numbers mean the
same whichever backend produced them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from digits.errors import DigitsError

EPSILON = 1e-7  # Keras's clipping for cross-entropy, so test_loss matches model.evaluate


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    confusion: np.ndarray  # [true, predicted] counts, 10×10
    probabilities: np.ndarray  # (N, 10)
    labels: np.ndarray  # true labels (N,)
    class_names: tuple[str, ...] = tuple(str(d) for d in range(10))

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    def per_class(self) -> list[dict]:
        """Precision, recall, F1 and support for each class (0 where undefined)."""
        c = self.confusion.astype(np.float64)
        tp = np.diag(c)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.nan_to_num(tp / c.sum(axis=0))
            recall = np.nan_to_num(tp / c.sum(axis=1))
            f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
        return [
            {"class": self.class_names[i], "precision": round(float(precision[i]), 6),
             "recall": round(float(recall[i]), 6), "f1": round(float(f1[i]), 6),
             "support": int(c[i].sum())}
            for i in range(len(c))
        ]

    def _repr_html_(self) -> str:
        """Jupyter's view: accuracy, loss, the mistakes and the per-class scores (:mod:`digits.display`)."""
        from digits.display import evaluation_html

        return evaluation_html(self.accuracy, self.loss, self.labels, self.predicted, self.per_class())

    def to_dict(self) -> dict:
        return {
            "test_loss": self.loss,
            "test_accuracy": self.accuracy,
            "test_images": int(len(self.labels)),
            "per_class": self.per_class(),
            "confusion_matrix": self.confusion.tolist(),
        }


def predict_probabilities(model, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)


def evaluate_arrays(model, x: np.ndarray, y: np.ndarray, class_names=None) -> Evaluation:
    """Evaluate `model` on float inputs `x` and integer labels `y`."""
    p = predict_probabilities(model, x)
    y = np.asarray(y, dtype=np.int64)
    loss = float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], EPSILON, 1.0))))
    predicted = p.argmax(axis=1)
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (y, predicted), 1)
    names = tuple(class_names) if class_names else tuple(str(d) for d in range(10))
    return Evaluation(round(loss, 6), round(float((predicted == y).mean()), 6), confusion, p, y, names)


def evaluate(run, *, data_dir: str | os.PathLike | None = None) -> Evaluation:
    """Evaluate a run (a :class:`digits.runs.Run` or its path) on its dataset's test split."""
    from digits.datasets import load_dataset
    from digits.runs import Run
    from digits.datasets import to_inputs

    run = run if isinstance(run, Run) else Run(run)
    config = run.config
    data = load_dataset(config.get("dataset", "mnist"), data_dir=data_dir)
    model = run.load_model()
    return evaluate_arrays(model, to_inputs(data.x_test), data.y_test, data.class_names)


def predict_test_images(run, indices: list[int], *, data_dir=None) -> list[dict]:
    """Predict test-split images by index: label, true label, probability of the label."""
    from digits.datasets import load_dataset
    from digits.runs import Run
    from digits.datasets import to_inputs

    run = run if isinstance(run, Run) else Run(run)
    data = load_dataset(run.config.get("dataset", "mnist"), data_dir=data_dir)
    n = len(data.y_test)
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise DigitsError(f"test image index {bad[0]} is out of range; the test split has {n} images (0 to {n - 1})")
    model = run.load_model()
    p = predict_probabilities(model, to_inputs(data.x_test[indices]))
    return [
        {"index": i, "label": int(row.argmax()), "true": int(data.y_test[i]),
         "probability": round(float(row.max()), 6), "probabilities": [round(float(v), 6) for v in row]}
        for i, row in zip(indices, p)
    ]
