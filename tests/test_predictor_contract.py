"""One contract for every predictor: Keras, ONNX Runtime and the micro-batching and timing wrappers.

`recognize`, `read_number` and the HTTP service take any
:class:`digits.inference.ImagePredictor`; each implementation is held here to
the same battery, so a new one (or a change to one) cannot drift from the others.
"""

from __future__ import annotations

import importlib.util
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from digits.datasets import to_inputs
from digits.errors import DigitsError
from digits.inference import ImagePredictor, Predictor, checked_images, recognize
from digits.serving.batching import BatchingPredictor
from digits.serving.metrics import TimedPredictor
from helpers import skip_or_fail

KINDS = ["keras", "onnx", "batching", "timed"]


@pytest.fixture(scope="module")
def keras_predictor(tiny_mlp_run):
    return Predictor.from_run(tiny_mlp_run)


@pytest.fixture(scope="module")
def onnx_predictor(tiny_mlp_run, tmp_path_factory):
    """ONNX Runtime on an export of a copy of the shared tiny run (the export is written into the run)."""
    missing = [m for m in ("onnx", "tf2onnx", "onnxruntime", "tensorflow") if importlib.util.find_spec(m) is None]
    if missing:
        skip_or_fail(f"needs {', '.join(missing)} (pip install {' '.join(missing)})")
    from digits.export import OnnxPredictor, export_model
    from digits.runs import Run

    run = Run(shutil.copytree(tiny_mlp_run.path, tmp_path_factory.mktemp("contract") / "mlp"))
    export_model(run, "onnx", subprocess_=True)  # in a TensorFlow child: this process runs JAX
    return OnnxPredictor.from_run(run)


@pytest.fixture(params=KINDS)
def predictor(request):
    if request.param == "batching":
        return BatchingPredictor(request.getfixturevalue("keras_predictor"))
    if request.param == "timed":
        return TimedPredictor(request.getfixturevalue("keras_predictor"))
    return request.getfixturevalue(f"{request.param}_predictor")


@pytest.fixture(scope="module")
def images(mnist_data):
    return to_inputs(mnist_data.x_test[:8])


def test_is_an_image_predictor(predictor, request):
    assert isinstance(predictor, ImagePredictor)
    assert predictor.name == "mlp"
    assert isinstance(predictor.runtime, str) and predictor.runtime
    expected_runtime = {"onnx": "onnx"}.get(request.node.callspec.params["predictor"], "keras (jax)")
    assert predictor.runtime == expected_runtime
    assert isinstance(predictor.info, dict) and predictor.info["config"]["model"] == "mlp"
    assert isinstance(predictor.threshold, float) and 0 <= predictor.threshold <= 1
    assert predictor.threshold == predictor.info["metrics"]["threshold"]  # the model's own, from its run


def test_probabilities_are_a_float32_distribution_per_image(predictor, images):
    p = predictor.probabilities(images)
    assert p.shape == (len(images), 10) and p.dtype == np.float32
    assert (p >= 0).all() and (p <= 1).all()
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-5)
    assert predictor.probabilities(images[:0]).shape == (0, 10)


def test_one_image_agrees_with_the_batch(predictor, images):
    batch = predictor.probabilities(images)
    for i in (0, 5):
        np.testing.assert_allclose(predictor.probabilities(images[i]), batch[i: i + 1], atol=1e-6)
        np.testing.assert_allclose(predictor.probabilities(images[i: i + 1]), batch[i: i + 1], atol=1e-6)


BAD = {
    "27 rows": np.zeros((2, 27, 28)),
    "flat": np.zeros(784),
    "channel axis": np.zeros((1, 28, 28, 1)),
    "NaN": np.full((1, 28, 28), np.nan),
    "infinity": np.full((2, 28, 28), np.inf),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_the_same_one_line(predictor, case):
    with pytest.raises(DigitsError) as expected:
        checked_images(BAD[case])
    with pytest.raises(DigitsError) as got:
        predictor.probabilities(BAD[case])
    assert str(got.value) == str(expected.value) and "\n" not in str(got.value)


def test_threads_get_their_own_answers(predictor, images):
    serial = [predictor.probabilities(images[i % 8]) for i in range(32)]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda i: predictor.probabilities(images[i % 8]), range(32)))
    for a, b in zip(serial, parallel):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_recognize_uses_the_models_threshold(predictor, images):
    (default,) = recognize(predictor, [images[0]])
    (strict,) = recognize(predictor, [images[0]], threshold=1.0)
    assert (default.label is None) == (default.confidence < predictor.threshold)
    assert strict.label is None and strict.reason.startswith("unsure")


def test_every_runtime_gives_the_same_probabilities(keras_predictor, onnx_predictor, images):
    expected = keras_predictor.probabilities(images)
    for other in (onnx_predictor, BatchingPredictor(keras_predictor)):
        np.testing.assert_allclose(other.probabilities(images), expected, atol=1e-5)


def test_a_predictor_without_a_runtime_is_not_one():
    class NoRuntime:
        name, info, threshold = "x", {}, 0.8

        def probabilities(self, images):
            return checked_images(images)

    assert not isinstance(NoRuntime(), ImagePredictor)
