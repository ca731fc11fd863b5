import threading

import numpy as np
import pytest

from digits.errors import DigitsError
from digits.inference import Predictor, _bucket
from digits.models import build_model


@pytest.fixture(scope="module")
def predictor():
    return Predictor(build_model("mlp"))


def test_matches_model_predict_for_every_batch_size(predictor):
    x = np.random.default_rng(0).random((1030, 28, 28), dtype=np.float32)
    expected = predictor.model.predict(x, verbose=0)
    for n in (1, 3, 32, 1030):
        np.testing.assert_allclose(predictor.probabilities(x[:n]), expected[:n], atol=1e-6)


def test_single_image_without_batch_axis(predictor):
    assert predictor.probabilities(np.zeros((28, 28))).shape == (1, 10)


def test_buckets_are_powers_of_two_capped():
    assert [_bucket(n) for n in (1, 2, 3, 33, 1024, 5000)] == [1, 2, 4, 64, 1024, 1024]


@pytest.mark.parametrize("bad,message", [
    (np.zeros((2, 27, 28)), r"shape \(N, 28, 28\)"),
    (np.full((1, 28, 28), np.nan), "NaN"),
])
def test_bad_arrays_are_refused(predictor, bad, message):
    with pytest.raises(DigitsError, match=message):
        predictor.probabilities(bad)


def test_threads_get_the_same_answers(predictor):
    x = np.random.default_rng(1).random((8, 28, 28), dtype=np.float32)
    expected = predictor.probabilities(x)
    results, errors = [], []

    def work():
        try:
            for _ in range(20):
                results.append(predictor.probabilities(x))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(results) == 80
    for r in results:
        np.testing.assert_allclose(r, expected, atol=1e-6)


def test_measure_threshold_refuses_half_of_the_wrong_answers() -> None:
    from digits.inference import ABSTAIN_BELOW, measure_threshold

    # 4 right answers at 0.99; 4 wrong ones at 0.55, 0.65, 0.75 and 0.97.
    p = np.full((8, 10), 0.0)
    labels = np.zeros(8, dtype=int)
    p[:4, 0] = 0.99
    for i, c in enumerate((0.55, 0.65, 0.75, 0.97)):
        p[4 + i, 1] = c
    assert measure_threshold(p, labels) == 0.7  # 0.75 and 0.97 still answered: 2 of 4
    assert measure_threshold(p[:4], labels[:4]) == ABSTAIN_BELOW  # no wrong answers: the default
    assert measure_threshold(np.zeros((0, 10)), labels[:0]) == ABSTAIN_BELOW


def test_a_run_carries_its_threshold(tiny_mlp_run) -> None:
    from digits.inference import THRESHOLD_GRID, load_predictor, model_threshold, recognize

    metrics = tiny_mlp_run.metrics
    assert metrics["threshold"] in THRESHOLD_GRID and "validation images" in metrics["threshold_measured_on"]
    predictor = load_predictor(tiny_mlp_run.path)
    assert predictor.threshold == metrics["threshold"] == model_threshold(predictor.info)
    assert model_threshold({"metrics": {"threshold": "high"}}) == 0.8  # a broken value: the default
    digit = np.zeros((28, 28), np.float32)
    digit[4:24, 13:16] = 1.0  # a "1"
    (answer,) = recognize(predictor, [digit], threshold=0.0)
    assert answer.label is not None
    (default,) = recognize(predictor, [digit])
    assert (default.label is None) == (answer.confidence < metrics["threshold"])


def test_bundled_model_threshold_is_its_measured_value() -> None:
    from digits.inference import load_predictor

    assert load_predictor().threshold == 0.8
