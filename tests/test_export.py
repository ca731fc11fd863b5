"""`digits export`: portable models whose probabilities match Keras's, and ONNX Runtime serving."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from fastapi.testclient import TestClient

from digits.errors import DigitsError
from digits.export import (FORMATS, VERIFY_TOLERANCE, OnnxPredictor, ensure_onnx, export_model,
                           exported_probabilities, verify)
from digits.inference import Predictor, recognize
from digits.datasets import to_inputs
from helpers import free_port, skip_or_fail

def _need(*modules: str) -> None:
    """Skip without the exporters locally; on CI they are part of the environment and must be there."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        skip_or_fail(f"needs {', '.join(missing)} (pip install {' '.join(missing)})")


@pytest.fixture(scope="module")
def run(tiny_mlp_run, tmp_path_factory):
    """A copy of the shared tiny run: exports are written into the run directory."""
    import shutil

    from digits.runs import Run

    return Run(shutil.copytree(tiny_mlp_run.path, tmp_path_factory.mktemp("export") / "mlp"))


@pytest.fixture(scope="module")
def test_images(mnist_data):
    return to_inputs(mnist_data.x_test[:1000]), mnist_data.x_test[:50], mnist_data.y_test[:50]


@pytest.fixture(scope="module")
def exported(run, mnist_dir):
    """Every format, written by the command line in one TensorFlow process (checked there too)."""
    _need("onnx", "tf2onnx", "onnxruntime", "tensorflow")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}  # export chooses TensorFlow itself
    args = [sys.executable, "-m", "digits.cli", "export", str(run.path), "--check", "1000",
            "--data-dir", str(mnist_dir)]
    for fmt in FORMATS:
        args += ["--format", fmt]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    assert set(lines) == set(FORMATS), proc.stdout
    for line in lines.values():
        assert "on 1000 test images" in line, line
        assert float(line.rsplit(" ", 1)[1]) <= VERIFY_TOLERANCE
    return {fmt: run.path / "export" / name for fmt, name in FORMATS.items()}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_export_matches_keras_on_1000_test_images(run, exported, test_images, fmt):
    x, _, _ = test_images
    assert exported[fmt].exists()
    keras_p = Predictor.from_run(run).probabilities(x)
    export_p = exported_probabilities(exported[fmt], fmt, x)
    assert export_p.shape == keras_p.shape == (1000, 10)
    assert float(np.abs(export_p - keras_p).max()) <= VERIFY_TOLERANCE
    assert (export_p.argmax(1) == keras_p.argmax(1)).all()


def test_verify_checks_every_format_against_one_keras_pass(run, exported, mnist_dir):
    from digits.export import _keras_reference

    _keras_reference.cache_clear()
    for fmt in FORMATS:
        assert 0 <= verify(run, fmt, 100, data_dir=mnist_dir) <= VERIFY_TOLERANCE
    assert _keras_reference.cache_info().misses == 1  # Keras ran once for the three formats


def test_verify_refuses_a_missing_or_differing_export(run, exported, mnist_dir, tmp_path):
    import shutil

    from digits.runs import Run

    with pytest.raises(DigitsError, match=r"no litert export; run `digits export .* --format litert`"):
        verify(run, "litert", 10, path=tmp_path / "none.tflite")
    with pytest.raises(DigitsError, match="has 10000 test images; cannot verify on 20000"):
        verify(run, "onnx", 20000, data_dir=mnist_dir)
    # The same architecture with other weights: the run's ONNX export no longer matches it.
    other = Run(shutil.copytree(run.path, tmp_path / "other", ignore=shutil.ignore_patterns("export")))
    model = other.load_model()
    model.set_weights([w + 0.1 for w in model.get_weights()])
    model.save(other.model_path)
    with pytest.raises(DigitsError) as error:
        verify(other, "onnx", 50, path=exported["onnx"], data_dir=mnist_dir)
    assert str(error.value).startswith(f"{exported['onnx']}: the export differs from the Keras model by ")
    assert str(error.value).endswith(f"(limit {VERIFY_TOLERANCE:g})") and "\n" not in str(error.value)


def test_ensure_onnx_uses_a_current_export_else_exports_to_a_temporary_file(run, exported, tmp_path, capsys):
    import shutil

    from digits.runs import Run

    assert ensure_onnx(run) == exported["onnx"]
    assert capsys.readouterr().err == ""
    stale = Run(shutil.copytree(run.path, tmp_path / "stale"))
    earlier = stale.model_path.stat().st_mtime - 10
    os.utime(stale.path / "export" / "model.onnx", (earlier, earlier))  # the model is newer than its export
    path = ensure_onnx(stale)
    assert path != stale.path / "export" / "model.onnx" and path.is_file()
    assert not str(path).startswith(str(stale.path))  # the run directory is not written to
    assert capsys.readouterr().err.startswith(f"digits serve: exporting {stale.path} to ONNX")
    x = np.random.default_rng(0).random((8, 28, 28), dtype=np.float32)
    assert np.abs(OnnxPredictor(path).probabilities(x) - Predictor.from_run(stale).probabilities(x)).max() \
        <= VERIFY_TOLERANCE


def test_onnx_predictor_recognizes_like_keras(run, exported, test_images):
    _, raw, labels = test_images
    pictures = [255 - x for x in raw]  # dark on light, as people send them
    onnx = recognize(OnnxPredictor.from_run(run), pictures, threshold=0)
    keras = recognize(Predictor.from_run(run), pictures, threshold=0)
    assert [p.label for p in onnx] == [p.label for p in keras]
    assert np.abs(np.array([p.probabilities for p in onnx]) - [p.probabilities for p in keras]).max() <= 2e-6
    assert np.mean([p.label == y for p, y in zip(onnx, labels)]) > 0.8


def test_onnx_predictor_refuses_bad_arrays(run, exported):
    predictor = OnnxPredictor.from_run(run)
    with pytest.raises(DigitsError, match="shape"):
        predictor.probabilities(np.zeros((2, 27, 28)))
    with pytest.raises(DigitsError, match="NaN"):
        predictor.probabilities(np.full((1, 28, 28), np.nan))
    assert predictor.probabilities(np.zeros((0, 28, 28))).shape == (0, 10)


def test_serving_on_onnx_runtime(run, exported, test_images):
    from digits.serving import create_app

    _, raw, labels = test_images
    keras_app = create_app(Predictor.from_run(run))
    with TestClient(create_app(OnnxPredictor.from_run(run))) as onnx, TestClient(keras_app) as keras:
        assert onnx.get("/v1/health").json() == {"status": "ok", "model": "mlp", "runtime": "onnx"}
        assert onnx.get("/v1/model").json()["test_accuracy"] == pytest.approx(run.metrics["test_accuracy"])
        for x in raw[:10]:
            a = onnx.post("/v1/predict", json={"pixels": x.tolist()}).json()
            b = keras.post("/v1/predict", json={"pixels": x.tolist()}).json()
            assert a["label"] == b["label"]
            assert np.abs(np.array(a["probabilities"]) - b["probabilities"]).max() <= 2e-6


def test_cli_serve_runtime_onnx_uses_the_export(run, exported, monkeypatch):
    import uvicorn

    from digits.cli import main

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(app))
    assert main(["serve", "--model", str(run.path), "--runtime", "onnx", "--port", str(free_port())]) == 0
    service = calls[0].state.service
    assert service.runtime == "onnx" and service.predictor.path == exported["onnx"]


def test_export_in_process_refuses_bad_requests(run, tmp_path, capsys):
    from digits.cli import main

    with pytest.raises(DigitsError, match="unknown export format"):
        export_model(run, "pickle")
    assert main(["export", str(tmp_path / "missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main(["export", str(run.path), "--format", "onnx", "--format", "litert", "--out", "x"]) == 2
    assert "single --format" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(run.path), "--format", "pickle"])


def test_export_from_a_jax_process_runs_tensorflow_in_a_child(run, tmp_path, test_images):
    """This test process runs Keras on JAX; exporting still works (in a TensorFlow child process)."""
    _need("onnx", "tf2onnx", "onnxruntime")
    from digits.backend import running_backend

    assert running_backend() in ("jax", "torch")
    out = export_model(run, "onnx", tmp_path / "deep" / "m.onnx")
    assert out == tmp_path / "deep" / "m.onnx" and out.is_file()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    x, _, _ = test_images
    diff = np.abs(OnnxPredictor(out).probabilities(x[:100]) - Predictor.from_run(run).probabilities(x[:100]))
    assert diff.max() <= VERIFY_TOLERANCE


def test_models_with_augmentation_layers_export_in_inference_mode(tmp_path, test_images):
    """cnn-bn has random augmentation layers; the export must hold the inference pass only."""
    _need("onnx", "tf2onnx", "onnxruntime")
    import json

    from digits.models import build_model
    from digits.runs import Run

    folder = tmp_path / "cnn-bn"
    folder.mkdir()
    model = build_model("cnn-bn")
    model.save(folder / "model.keras")
    (folder / "config.json").write_text(json.dumps({"model": "cnn-bn", "dataset": "mnist"}))
    (folder / "metrics.json").write_text("{}")
    out = export_model(Run(folder), "onnx")
    x, _, _ = test_images
    keras_p = Predictor.from_run(folder).probabilities(x[:200])
    assert np.abs(OnnxPredictor(out).probabilities(x[:200]) - keras_p).max() <= VERIFY_TOLERANCE
