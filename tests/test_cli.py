"""The `digits` command: results on stdout, one-line errors and exit code 2 for bad input."""

import json
import os
import subprocess
import sys

import pytest

from digits.cli import main
from helpers import exit_code


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, mnist_dir):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--limit", "2000", "--epochs", "1", "--seed", "3", "--quiet",
                 "--out", str(out), "--data-dir", str(mnist_dir)]) == 0
    return out


def test_train_prints_accuracy_and_where_the_run_went(run_dir, capsys, tmp_path, mnist_dir):
    out = tmp_path / "again"
    assert main(["train", "--limit", "500", "--epochs", "1", "--out", str(out),
                 "--data-dir", str(mnist_dir)]) == 0
    stdout = capsys.readouterr().out
    assert "Total params: 101,770" in stdout  # Keras's model summary
    assert "test accuracy:" in stdout and f"run saved to {out}" in stdout


def test_evaluate_json(run_dir, capsys, mnist_dir):
    assert main(["evaluate", str(run_dir), "--json", "--data-dir", str(mnist_dir)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["test_images"] == 10_000 and 0.7 < doc["test_accuracy"] <= 1
    assert len(doc["per_class"]) == 10 and len(doc["confusion_matrix"]) == 10
    assert sum(map(sum, doc["confusion_matrix"])) == 10_000


def test_evaluate_table(run_dir, capsys, mnist_dir):
    assert main(["evaluate", str(run_dir), "--data-dir", str(mnist_dir)]) == 0
    out = capsys.readouterr().out
    assert "precision" in out and "confusion matrix" in out


def test_predict_indices_json_lines(run_dir, capsys, mnist_dir):
    assert main(["predict", "--model", str(run_dir), "--index", "0", "--index", "7", "--json",
                 "--data-dir", str(mnist_dir)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["index"] for r in rows] == [0, 7]
    assert rows[0]["true"] == 7  # the first MNIST test image is a 7
    assert all(0 <= r["probability"] <= 1 and len(r["probabilities"]) == 10 for r in rows)


def test_predict_text(run_dir, capsys, mnist_dir):
    assert main(["predict", "--model", str(run_dir), "--index", "0", "--data-dir", str(mnist_dir)]) == 0
    assert capsys.readouterr().out.startswith("test image 0: predicted ")


def test_models_lists_the_registry_with_parameter_counts(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name, params in [("mlp ", "101,770"), ("mlp2", "118,282"), ("mlp-256-128", "235,146"), ("cnn", "")]:
        assert name in out and params in out


@pytest.mark.parametrize("argv,message", [
    (["train", "--epochs", "-1"], "argument --epochs: must be at least 1, got -1"),
    (["train", "--epochs", "five"], "argument --epochs: expected a whole number, got 'five'"),
    (["train", "--validation-split", "1"], "argument --validation-split: must be in [0, 1), got 1"),
    (["train", "--learning-rate", "nan"], "argument --learning-rate: must be a positive number"),
    (["train", "--model", "resnet", "--quiet"], "unknown model 'resnet'"),
    (["train", "--precision", "float16"], "argument --precision: invalid choice: 'float16'"),
    (["evaluate", "/no/such/run"], "/no/such/run: no such run directory"),
    (["predict", "--model", "/no/such/run", "--index", "1"], "/no/such/run: no such run directory"),
    (["predict", "--model", "x"], "the following arguments are required: --index"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    code = exit_code(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_run_dir_without_model_is_refused(run_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "metrics.json"):
        (broken / name).write_bytes((run_dir / name).read_bytes())
    assert exit_code(["evaluate", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "missing model.keras" in err and len(err.strip().splitlines()) == 1


def test_corrupt_model_file_is_one_line(run_dir, tmp_path, capsys, mnist_dir):
    broken = tmp_path / "corrupt"
    broken.mkdir()
    for name in ("config.json", "metrics.json"):
        (broken / name).write_bytes((run_dir / name).read_bytes())
    (broken / "model.keras").write_bytes(b"not a zip")
    assert exit_code(["evaluate", str(broken), "--data-dir", str(mnist_dir)]) == 2
    err = capsys.readouterr().err
    assert "model.keras: corrupt or truncated model archive" in err and len(err.strip().splitlines()) == 1


def test_missing_dataset_names_the_files_and_writes_nothing(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "run"
    assert exit_code(["train", "--data-dir", str(empty), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_console_script_errors_have_no_traceback(tmp_path):
    """The installed `digits` entry point, as a user runs it."""
    env = {**os.environ, "DIGITS_DATA_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "digits.cli", "train", "--quiet", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("digits train: error: no local copy of mnist")


def test_tensorflow_backend_trains_a_cnn_that_jax_can_evaluate(tmp_path, mnist_dir):
    """Both backends work, and a run saved on one loads on the other."""
    out = tmp_path / "cnn"
    env = {**os.environ, "DIGITS_DATA_DIR": str(mnist_dir)}
    train = subprocess.run([sys.executable, "-m", "digits.cli", "train", "--model", "cnn", "--backend", "tensorflow",
                            "--limit", "600", "--epochs", "1", "--quiet", "--out", str(out)],
                           capture_output=True, text=True, env=env, timeout=300)
    assert train.returncode == 0, train.stderr
    assert json.loads((out / "config.json").read_text())["versions"]["backend"] == "tensorflow"
    evaluate = subprocess.run([sys.executable, "-m", "digits.cli", "predict", "--model", str(out), "--index", "0",
                               "--backend", "jax", "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert evaluate.returncode == 0, evaluate.stderr
    assert json.loads(evaluate.stdout)["true"] == 7


def test_torch_backend_trains_and_answers(tmp_path, mnist_dir):
    """PyTorch is optional (its CPU wheel is not on PyPI): train and predict on it where it is installed."""
    pytest.importorskip("torch")
    out = tmp_path / "mlp"
    env = {**os.environ, "DIGITS_DATA_DIR": str(mnist_dir)}
    train = subprocess.run([sys.executable, "-m", "digits.cli", "train", "--backend", "torch",
                            "--limit", "2000", "--epochs", "1", "--seed", "1", "--quiet", "--out", str(out)],
                           capture_output=True, text=True, env=env, timeout=300)
    assert train.returncode == 0, train.stderr
    assert json.loads((out / "config.json").read_text())["versions"]["backend"] == "torch"
    # The Predictor's forward pass on torch (inference mode: the weights require gradients).
    code = ("from digits.backend import use_backend; use_backend('torch'); import numpy as np; "
            "from digits.inference import load_predictor; "
            f"p = load_predictor({str(out)!r}).probabilities(np.zeros((3, 28, 28), np.float32)); "
            "print(p.shape, round(float(p.sum()), 3))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["(3,", "10)", "3.0"]


def test_sigterm_mid_training_leaves_nothing_half_written(tmp_path, mnist_dir):
    """`kill` (SIGTERM) is handled like Ctrl-C: the hidden run folder is removed, exit code 143."""
    import signal
    import time

    env = {**os.environ, "DIGITS_DATA_DIR": str(mnist_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "digits.cli", "train", "--model", "cnn", "--limit", "2000", "--epochs", "100",
                             "--out", str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".run.partial-*")):
        assert proc.poll() is None and time.monotonic() < deadline, "training never started"
        time.sleep(0.2)
    time.sleep(3)  # into the epochs
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "digits train: terminated"
    assert list(tmp_path.iterdir()) == []


def test_flag_defaults_are_the_librarys():
    """Each command's defaults come from the library it calls, not from a copy in the CLI."""
    import inspect

    from digits.cli import build_parser
    from digits.serving.settings import ServeSettings
    from digits.tuning import tune

    parser = build_parser()
    serve, settings = parser.parse_args(["serve"]), ServeSettings()
    assert serve.max_upload_mb * 1024 * 1024 == settings.max_upload_bytes
    assert (serve.runtime, serve.max_batch, serve.max_pixels, serve.threshold, serve.threads, serve.micro_batch) == (
        settings.runtime, settings.max_batch, settings.max_pixels, settings.threshold, settings.threads,
        settings.micro_batch)
    from digits.serving.settings import LIMITS

    for name in [*LIMITS, "allowed_hosts"]:
        assert getattr(serve, name) == getattr(settings, name), name
    tuned = parser.parse_args(["tune", "--model", "mlp", "--trials", "1"])
    for name in ("validation_split", "early_stopping", "seed", "dataset", "heartbeat"):
        assert getattr(tuned, name) == inspect.signature(tune).parameters[name].default, name
    # train's flags that are not given are left out, so --config's values and the recipe's stand.
    trained = parser.parse_args(["train", "--epochs", "2", "--checkpoint-best"])
    assert trained.epochs == 2 and trained.checkpoint_best is True
    assert not hasattr(trained, "batch_size") and not hasattr(trained, "distribute")


def test_serve_passes_its_flags_to_the_library(monkeypatch):
    import digits.serving
    from digits.serving.settings import ServeSettings

    calls = []
    monkeypatch.setattr(digits.serving, "serve", lambda settings, **kw: calls.append((settings, kw)))
    assert main(["serve", "--runtime", "onnx", "--max-upload-mb", "0.5", "--threshold", "0.9",
                 "--port", "9000", "--workers", "2"]) == 0
    settings, kw = calls[0]
    assert settings == ServeSettings(runtime="onnx", max_upload_bytes=512 * 1024, threshold=0.9)
    assert kw == {"host": "127.0.0.1", "port": 9000, "workers": 2, "log_level": "info"}


def test_each_command_module_holds_its_flags_beside_its_handler():
    import argparse

    from digits.cli import COMMANDS

    names = []
    for module in COMMANDS:
        subparsers = argparse.ArgumentParser().add_subparsers()
        module.add_parser(subparsers)
        for name, parser in subparsers.choices.items():
            assert parser.get_default("func").__module__ == module.__name__, name
            names.append(name)
    assert names == ["train", "evaluate", "predict", "read", "ensemble", "models", "report", "compare",
                     "serve", "export", "tune"]
