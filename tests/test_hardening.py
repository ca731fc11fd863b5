"""Careless and hostile input that once gave a traceback or a wrong answer: now one line each.

Grouped by what was fed: config and search-space files, storage URLs, models
of the wrong shape or size, damaged dataset files and odd paths.  Each test
feeds the bad input and checks the one-line answer (exit status 2 on the CLI).
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from digits.errors import DigitsError
from digits.training import TrainConfig, load_config_file
from helpers import exit_code


def _one_error_line(capsys, command: str) -> str:
    """The single stderr line of a failed `digits COMMAND`, without its prefix."""
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    prefix = f"digits {command}: error: "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0][len(prefix):]


# --- --config files are checked with the flags' rules --------------------------------------------

BAD_CONFIGS = [
    ('{"batch_size": "32"}', 'CONFIG: batch_size must be a whole number, got "32"'),
    ('{"learning_rate": "0.1"}', 'CONFIG: learning_rate must be a number, got "0.1"'),
    ('{"epochs": 1.0}', "CONFIG: epochs must be a whole number, got 1.0"),
    ('{"limit": 10.5}', "CONFIG: limit must be a whole number, got 10.5"),
    ('{"seed": "abc"}', 'CONFIG: seed must be a whole number, got "abc"'),
    ('{"dataset": 5}', "CONFIG: dataset must be a string, got 5"),
    ('{"learning_rate": Infinity}', "CONFIG: learning_rate must be a finite number, got Infinity"),
    ('{"distribute": "no"}', 'CONFIG: distribute must be true or false, got "no"'),
    ('{"extra": []}', "CONFIG: extra must be a JSON object, got []"),
    ('{"model": "resnet"}', "unknown model 'resnet'; choose one of"),
    ('{"dataset": "imagenet"}', "unknown dataset 'imagenet'; choose one of"),
    ('{"extra": {"architecture": "big"}}', 'extra.architecture must be a JSON object, got "big"'),
    ('{"extra": {"architecture": {"width": 2.5}}}', "architecture setting width of 'mlp' must be a whole number"),
    ('{"seed": -1}', "seed must be a whole number from 0 to 4294967295, got -1"),
    ('{"backend": "mxnet"}', "unknown backend 'mxnet'; choose one of jax, tensorflow, torch"),
]


@pytest.mark.parametrize("doc, message", BAD_CONFIGS, ids=[doc for doc, _ in BAD_CONFIGS])
def test_a_bad_config_file_is_one_line_naming_the_key(doc, message, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(doc)
    out = tmp_path / "run"
    assert exit_code(["train", "--config", str(config), "--limit", "1000", "--out", str(out)]) == 2
    assert _one_error_line(capsys, "train").startswith(message.replace("CONFIG", str(config)))
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_a_run_config_loads_and_a_python_caller_gets_the_same_checks(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model": "mlp", "epochs": 2, "learning_rate": 1, "distribute": False,
                                  "versions": {"keras": "3"}}))
    assert load_config_file(config) == TrainConfig(model="mlp", epochs=2, learning_rate=1)
    with pytest.raises(DigitsError, match='^batch_size must be a whole number, got "32"$'):
        TrainConfig(batch_size="32").resolved()
    with pytest.raises(DigitsError, match="^learning_rate must be a finite number, got Infinity$"):
        TrainConfig(learning_rate=float("inf")).resolved()


def test_a_space_file_may_not_reach_past_max_epochs(tmp_path, capsys):
    space = tmp_path / "space.json"
    space.write_text('{"epochs": {"low": 1, "high": 9}}')
    storage = f"sqlite:///{tmp_path / 's.db'}"
    argv = ["tune", "--model", "mlp", "--trials", "2", "--storage", storage, "--space", str(space)]
    assert exit_code([*argv, "--max-epochs", "3"]) == 2
    assert _one_error_line(capsys, "tune") == "search space: epochs reaches 9, above max epochs 3; lower one of them"
    assert not (tmp_path / "s.db").exists()  # refused before the study is opened


# --- storage URLs: the password never printed, the right driver named ----------------------------


@pytest.mark.parametrize("url, shown", [
    ("postgresql://tuner:s3cret@db.example/studies", "postgresql://tuner:***@db.example/studies"),
    ("postgresql://:s3cret@db.example/studies", "postgresql://:***@db.example/studies"),
    ("postgresql://tuner:p@ss/w:rd@db.example:5432/s", "postgresql://tuner:***@db.example:5432/s"),
    ("postgresql://tuner@db.example/studies", "postgresql://tuner@db.example/studies"),
    ("sqlite:///studies/s.db", "sqlite:///studies/s.db"),
    ('(psycopg) cannot connect to "postgresql://u:pw@h/d" (timeout)', '(psycopg) cannot connect to "postgresql://u:***@h/d" (timeout)'),
])
def test_redact_hides_every_password(url, shown):
    from digits.tuning import redact

    assert redact(url) == shown


@pytest.mark.parametrize("url, message", [
    ("postgresql://:s3cret@127.0.0.1:9/db", "cannot open study storage postgresql://:***@127.0.0.1:9/db: "),
    ("postgresql://tuner:p@ss@127.0.0.1:9/db",
     "storage postgresql://tuner:***@127.0.0.1:9/db: write an '@' in the user name or password as %40"),
])
def test_the_cli_never_prints_a_storage_password(url, message, capsys):
    assert exit_code(["tune", "--model", "mlp", "--trials", "1", "--storage", url]) == 2
    line = _one_error_line(capsys, "tune")
    assert line.startswith(message) and "s3cret" not in line and "ss@" not in line


def test_a_mysql_url_is_told_its_own_driver(capsys):
    import importlib.util

    if importlib.util.find_spec("MySQLdb") is not None:
        pytest.skip("MySQLdb is installed here, so no driver is missing")
    assert exit_code(["tune", "--model", "mlp", "--trials", "1", "--storage", "mysql://u:pw@127.0.0.1:9/db"]) == 2
    assert _one_error_line(capsys, "tune") == (
        "storage mysql://u:***@127.0.0.1:9/db: its database driver MySQLdb is not installed (pip install 'mysqlclient')")


# --- models: the wrong shape, a damaged or a zip-bomb model.keras --------------------------------


@pytest.fixture
def run_copy(tiny_mlp_run, tmp_path) -> Path:
    """A copy of the shared tiny run, whose model.keras a test may replace."""
    import shutil

    return Path(shutil.copytree(tiny_mlp_run.path, tmp_path / "run"))


@pytest.fixture
def digit_png(tmp_path) -> Path:
    from PIL import Image, ImageDraw

    path = tmp_path / "seven.png"
    img = Image.new("L", (60, 60), 255)
    ImageDraw.Draw(img).line([(15, 12), (45, 12), (28, 50)], fill=0, width=5)
    img.save(path)
    return path


def _predict_error(run: Path, image: Path, capsys) -> str:
    assert exit_code(["predict", "--model", str(run), str(image)]) == 2
    return _one_error_line(capsys, "predict")


def _keras_model(input_shape: tuple, outputs: int):
    import keras

    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(),
                             keras.layers.Dense(outputs, activation="softmax")])


@pytest.mark.parametrize("input_shape, outputs, shape_text", [
    ((32, 32), 10, "the model's input has shape (N, 32, 32)"),
    ((28, 28), 3, "the model's output has shape (N, 3)"),
])
def test_a_model_of_the_wrong_shape_is_refused_when_loaded(input_shape, outputs, shape_text, run_copy, digit_png,
                                                           capsys):
    from digits.inference import Predictor

    _keras_model(input_shape, outputs).save(run_copy / "model.keras")
    expected = f"{run_copy}: {shape_text}; a Digits model takes (N, 28, 28) images and gives (N, 10) probabilities"
    assert _predict_error(run_copy, digit_png, capsys) == expected
    with pytest.raises(DigitsError) as caught:
        Predictor.from_run(run_copy)
    assert str(caught.value) == expected


def _onnx_model(path: Path, outputs: int) -> Path:
    """A tiny ONNX model: (N, 28, 28) flattened times a 784 x `outputs` matrix."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Flatten", ["image"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "w"], ["p"])],
        "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 28, 28])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", outputs])],
        [numpy_helper.from_array(np.zeros((784, outputs), np.float32), "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_an_onnx_model_with_other_outputs_is_refused(tmp_path):
    pytest.importorskip("onnxruntime")
    from digits.export import OnnxPredictor

    assert OnnxPredictor(_onnx_model(tmp_path / "ten.onnx", 10)).probabilities(np.zeros((2, 28, 28))).shape == (2, 10)
    path = _onnx_model(tmp_path / "three.onnx", 3)
    with pytest.raises(DigitsError) as caught:
        OnnxPredictor(path)
    assert str(caught.value) == f"{path}: expected an output of shape (N, 10), got [('N', 3)]"


def _zip_declaring(path: Path, size: int) -> None:
    """Rewrite the one-member zip at `path` so that its member claims `size` bytes unpacked (a zip bomb's header)."""
    data = bytearray(path.read_bytes())
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, size)
    struct.pack_into("<I", data, central + 24, size)
    path.write_bytes(bytes(data))


def test_a_zip_bomb_model_is_refused_before_loading(run_copy, digit_png, capsys):
    model = run_copy / "model.keras"
    with zipfile.ZipFile(model, "w") as archive:
        archive.writestr("model.weights.h5", b"\0" * 1000)
    _zip_declaring(model, 2**31)
    assert _predict_error(run_copy, digit_png, capsys) == (
        f"{model}: the model archive unpacks to 2,147,483,648 bytes, over the 1,073,741,824 a Digits model may "
        "take; refusing to load it")


@pytest.mark.parametrize("damage, message", [
    ("truncated", "corrupt or truncated model archive (File is not a zip file)"),
    ("flipped byte", "corrupt model archive (model.weights.h5 is damaged)"),
    ("text", "corrupt or truncated model archive (File is not a zip file)"),
])
def test_a_damaged_model_says_it_is_corrupt(damage, message, run_copy, digit_png, capsys):
    model = run_copy / "model.keras"
    data = bytearray(model.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped byte":
        data[len(data) // 2] ^= 0xFF  # inside the weights, which Keras stores uncompressed
    else:
        data = bytearray(b"not a model\n")
    model.write_bytes(bytes(data))
    assert _predict_error(run_copy, digit_png, capsys) == f"{model}: {message}"


# --- the progress bar counts what it shows ---------------------------------------------------------


def _progress_counts(monkeypatch, callbacks) -> list[tuple[int, int]]:
    """Every (done, total) a 10-step epoch, run 4 steps per compiled call, gives the progress bar.

    Recorded at Progbar.update rather than read from the screen, which skips
    updates closer together than 0.05 s.
    """
    import keras

    shown: list[tuple[int, int]] = []
    update = keras.utils.Progbar.update

    def record(self, current, values=None, finalize=None):
        shown.append((current, self.target))
        return update(self, current, values, finalize)

    monkeypatch.setattr(keras.utils.Progbar, "update", record)
    model = _keras_model((28, 28), 10)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", steps_per_execution=4)
    model.fit(np.zeros((80, 28, 28), np.float32), np.zeros(80, np.int32), batch_size=8, epochs=1, verbose=1,
              callbacks=callbacks)
    return shown


def test_the_progress_bar_never_counts_past_its_total(monkeypatch):
    from digits.fastfit import StepProgress

    assert max(_progress_counts(monkeypatch, [])) == (12, 10)  # Keras alone: the last call "ends" on step 12
    counts = _progress_counts(monkeypatch, [StepProgress()])
    assert counts == [(4, 10), (8, 10), (10, 10), (10, 10)], counts  # the last: the epoch's end


# --- damaged dataset files and paths that cannot be read ------------------------------------------


def test_an_idx_file_declaring_255_dimensions_is_one_line(tmp_path, write_tiny_idx, capsys):
    folder = tmp_path / "data"
    write_tiny_idx(folder)
    bad = folder / "train-images-idx3-ubyte.gz"
    bad.unlink()
    bad = bad.with_suffix("")  # the uncompressed name is read first
    bad.write_bytes(bytes([0, 0, 8, 255]) + struct.pack(">255I", *[1] * 255) + b"\0")
    assert exit_code(["train", "--data-dir", str(folder), "--limit", "10", "--epochs", "1",
                      "--out", str(tmp_path / "run")]) == 2
    assert _one_error_line(capsys, "train").startswith(
        f"{bad}: IDX header declares 255 dimensions; at most 32 can be read")
    assert not (tmp_path / "run").exists()


def test_a_gzip_idx_claiming_more_memory_than_allowed_is_one_line(tmp_path):
    """2 MB of gzip may claim 2 GB (deflate's ratio allows 1100:1); in a process limited to 1 GiB of
    address space that allocation fails, and the failure is one line."""
    import gzip
    import subprocess
    import sys

    pytest.importorskip("resource")  # POSIX only
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", 2_000_000_000))
        f.write(np.random.default_rng(0).integers(0, 256, 2_000_000, dtype=np.uint8).tobytes())

    code = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "from digits.errors import DigitsError\nfrom digits.datasets.idx import read_idx\n"
            "try:\n    read_idx(sys.argv[1])\nexcept DigitsError as e:\n    print(e)\n    sys.exit(2)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stdout == (f"{path}: IDX header says 2000000000 values (2,000,000,000 bytes), "
                           "more memory than this process may use\n")


@pytest.fixture
def locked(tmp_path, monkeypatch) -> Path:
    """A folder without search permission, as a non-root user sees it: every path inside fails stat.

    Root passes any permission check, so the refusal is simulated where the
    operating system would give it, in ``Path.stat`` (which is_dir, is_file
    and exists call); test_a_folder_without_search_permission_for_real does
    it with chmod where the tests do not run as root.
    """
    import errno
    import pathlib

    folder = tmp_path / "locked"
    folder.mkdir()
    stat = pathlib.Path.stat

    def refuse(self, *args, **kwargs):
        if str(self).startswith(f"{folder}{os.sep}"):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return stat(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "stat", refuse)
    return folder


def test_files_in_a_folder_without_search_permission_are_one_line_each(locked, digit_png, tiny_mlp_run, capsys):
    inside = locked / "seven.png"
    assert exit_code(["predict", "--model", str(tiny_mlp_run.path), str(inside), str(digit_png)]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{digit_png}: ")  # the readable file is still read
    assert captured.err.splitlines() == [
        f"digits predict: error: {inside}: cannot read: Permission denied",
        "digits predict: error: 1 of 2 inputs could not be read (see above)"]


@pytest.mark.parametrize("command", ["evaluate", "train"])
def test_a_run_or_data_folder_without_search_permission_is_one_line(command, locked, capsys):
    target = locked / "inner"
    argv = ["evaluate", str(target)] if command == "evaluate" else ["train", "--data-dir", str(target),
                                                                     "--limit", "10", "--epochs", "1"]
    assert exit_code(argv) == 2
    expected = (f"{target}: cannot read the run directory (Permission denied)" if command == "evaluate"
                else f"{target}: cannot read (Permission denied)")
    assert _one_error_line(capsys, command) == expected


@pytest.mark.skipif(os.geteuid() == 0, reason="root searches any folder, whatever its permissions")
def test_a_folder_without_search_permission_for_real(tmp_path, digit_png, tiny_mlp_run, capsys):  # pragma: no cover
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "seven.png").write_bytes(digit_png.read_bytes())
    folder.chmod(0o600)  # readable names, but no search (x) permission
    try:
        assert exit_code(["predict", "--model", str(tiny_mlp_run.path), str(folder / "seven.png")]) == 2
        assert _one_error_line(capsys, "predict") == f"{folder / 'seven.png'}: cannot read: Permission denied"
    finally:
        folder.chmod(0o700)
