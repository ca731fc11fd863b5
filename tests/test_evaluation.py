import numpy as np
import pytest

from digits.evaluation import evaluate_arrays


class FixedModel:
    """A stand-in model that returns the probabilities it was given."""

    def __init__(self, p):
        self.p = np.asarray(p, dtype=np.float32)

    def predict(self, x, batch_size=None, verbose=0):
        return self.p[: len(x)]


def one_hot_rows(labels, confidence=0.9):
    p = np.full((len(labels), 10), (1 - confidence) / 9)
    p[np.arange(len(labels)), labels] = confidence
    return p


def test_accuracy_loss_and_confusion_matrix():
    y = np.array([0, 1, 2, 2])
    predicted = np.array([0, 1, 2, 1])
    result = evaluate_arrays(FixedModel(one_hot_rows(predicted)), np.zeros((4, 28, 28)), y)
    assert result.accuracy == 0.75
    assert result.confusion[2, 1] == 1 and result.confusion[2, 2] == 1
    assert result.confusion.sum() == 4
    expected_loss = -(3 * np.log(0.9) + np.log(0.1 / 9)) / 4
    assert result.loss == pytest.approx(expected_loss, rel=1e-5)


def test_per_class_precision_recall_f1():
    y = np.array([0, 0, 1, 1])
    predicted = np.array([0, 1, 1, 1])
    rows = evaluate_arrays(FixedModel(one_hot_rows(predicted)), np.zeros((4, 28, 28)), y).per_class()
    assert rows[0] == {"class": "0", "precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3, abs=1e-6), "support": 2}
    assert rows[1]["precision"] == pytest.approx(2 / 3, abs=1e-6) and rows[1]["recall"] == 1.0
    assert rows[5] == {"class": "5", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_loss_matches_keras_on_a_real_model():
    import keras

    from digits.models import build_model

    model = build_model("mlp")
    x = np.random.default_rng(0).random((64, 28, 28), dtype=np.float32)
    y = np.arange(64) % 10
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    keras_loss, keras_acc = model.evaluate(x, y, verbose=0)
    result = evaluate_arrays(model, x, y)
    assert result.loss == pytest.approx(keras_loss, rel=1e-4)
    assert result.accuracy == pytest.approx(keras_acc)
    assert keras.backend.backend() in ("jax", "tensorflow", "torch")
