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
