"""``digits train --tensorboard``: Keras's TensorBoard logs in the run directory, on every backend.

The event files are read back with TensorBoard's own reader (what
``tensorboard --logdir runs/`` uses), and the epoch metrics they hold must be
the ones in the run's history.csv.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from digits.errors import DigitsError
from digits.runs import Run
from helpers import exit_code, skip_or_fail

try:
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util
except ImportError:
    skip_or_fail("no tensorboard package to read the logs with (pip install -e '.[test]')", allow_module_level=True)


def epoch_metrics(folder: Path) -> dict[str, list[float]]:
    """Every ``epoch_*`` scalar in one TensorBoard log folder, by tag, in step order."""
    events = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    return {tag: [float(tensor_util.make_ndarray(e.tensor_proto)) for e in sorted(events.Tensors(tag),
                                                                                   key=lambda e: e.step)]
            for tag in events.Tags()["tensors"] if tag.startswith("epoch_")}


def assert_logs_match_history(run: Run, epochs: int) -> None:
    logs = run.path / "tensorboard"
    assert sorted(p.name for p in logs.iterdir()) == ["train", "validation"]
    history = run.history()
    train, validation = epoch_metrics(logs / "train"), epoch_metrics(logs / "validation")
    assert len(train["epoch_loss"]) == epochs
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(train[f"epoch_{key}"], history[key], rtol=1e-5)
        np.testing.assert_allclose(validation[f"epoch_{key}"], history[f"val_{key}"], rtol=1e-5)


def test_tensorboard_logs_hold_the_epoch_metrics(tmp_path, mnist_dir):
    from digits.training import train

    run = train(model="mlp", limit=600, epochs=2, seed=1, tensorboard=True, out=tmp_path / "run",
                data_dir=mnist_dir, verbose=0)
    assert_logs_match_history(run, epochs=2)
    assert json.loads((run.path / "config.json").read_text())["tensorboard"] is True


def test_tensorboard_is_off_by_default(tiny_mlp_run):
    assert not (tiny_mlp_run.path / "tensorboard").exists()
    assert tiny_mlp_run.config["tensorboard"] is False


@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_tensorboard_from_the_command_line_on_each_backend(backend, tmp_path, mnist_dir):
    """The callback writes through tf.summary, so it needs TensorFlow whichever backend trains."""
    if backend == "torch":
        pytest.importorskip("torch")
    out = tmp_path / backend
    done = subprocess.run([sys.executable, "-m", "digits.cli", "train", "--backend", backend, "--limit", "300",
                           "--epochs", "1", "--seed", "1", "--tensorboard", "--quiet", "--out", str(out),
                           "--data-dir", str(mnist_dir)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_logs_match_history(Run(out), epochs=1)


def test_a_bad_tensorboard_value_is_one_line(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model": "mlp", "tensorboard": "yes"}))
    assert exit_code(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("tensorboard must be true or false, got \"yes\"") and "\n" not in err
    assert exit_code(["train", "--tensorboard=yes", "--out", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run").exists()


def test_without_tensorflow_tensorboard_is_one_clear_error(tmp_path, monkeypatch):
    import importlib.util

    from digits.training import train

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorflow" else find_spec(name, *a))
    with pytest.raises(DigitsError, match=r"^--tensorboard needs TensorFlow .*pip install tensorflow-cpu\)$"):
        train(model="mlp", tensorboard=True, out=tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()
