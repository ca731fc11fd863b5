"""The model that ships inside the package: recorded recipe, accuracy, size, load time, real answers."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from digits.cli import main
from digits.testing import render_like_user
from digits.inference import ABSTAIN_BELOW, BUNDLED_DIR, load_predictor

CARD = BUNDLED_DIR / "MODEL_CARD.md"


@pytest.fixture(scope="module")
def predictor():
    return load_predictor(None)


@pytest.fixture(scope="module")
def test_set(mnist_data):
    return mnist_data.x_test, mnist_data.y_test.astype(np.int64)


def test_the_bundle_is_a_complete_small_run():
    for name in ("model.keras", "config.json", "metrics.json", "MODEL_CARD.md"):
        assert (BUNDLED_DIR / name).is_file(), name
    size = (BUNDLED_DIR / "model.keras").stat().st_size
    assert size < 3_000_000, f"model.keras is {size / 1e6:.1f} MB"


def test_the_recipe_and_its_results_are_recorded():
    config = json.loads((BUNDLED_DIR / "config.json").read_text())
    metrics = json.loads((BUNDLED_DIR / "metrics.json").read_text())
    assert (config["model"], config["dataset"]) == ("cnn-bn", "mnist")
    assert config["validation_split"] == 0.05 and config["limit"] is None
    assert metrics["test_accuracy"] >= 0.995 and metrics["test_images"] == 10_000
    assert metrics["train_images"] == 57_000 and metrics["validation_images"] == 3_000
    card = CARD.read_text()
    assert f"digits train --model cnn-bn --epochs {config['epochs']} --seed {config['seed']}" in card
    assert f"{metrics['test_accuracy']:.2%}" in card
    # The card documents the abstaining threshold the code uses.
    assert re.search(rf"threshold[^\n]*\b{ABSTAIN_BELOW}\b", card, re.IGNORECASE), ABSTAIN_BELOW


def test_loads_and_answers_in_a_fresh_process():
    """In a fresh process: load the model, then answer one image (how long it takes: benchmarks/bundled_load.py)."""
    code = (
        "import numpy as np; from digits.backend import use_backend; use_backend(None)\n"
        "from digits.inference import load_predictor\n"
        "print(load_predictor(None).probabilities(np.zeros((1, 28, 28), np.float32)).shape)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "(1, 10)"


def test_accuracy_on_the_mnist_test_set(predictor, test_set):
    x, y = test_set
    p = predictor.probabilities(x.astype(np.float32) / 255)
    accuracy = float((p.argmax(1) == y).mean())
    assert accuracy >= 0.995
    recorded = json.loads((BUNDLED_DIR / "metrics.json").read_text())["test_accuracy"]
    assert abs(accuracy - recorded) <= 0.0005  # trained on TensorFlow, evaluated here on JAX


def test_predict_without_model_reads_a_folder_of_photos(test_set, tmp_path, capsys):
    x, y = test_set
    formats = [("png", {}), ("jpg", {"quality": 75}), ("webp", {"quality": 80}), ("bmp", {}), ("gif", {}),
               ("tiff", {})]
    expected = {}
    for i in range(60):
        ext, kw = formats[i % len(formats)]
        photo = render_like_user(x[i], np.random.default_rng([7, i]))
        if ext == "gif":
            photo = photo.convert("P", palette=Image.Palette.ADAPTIVE)
        path = tmp_path / f"photo{i}.{ext}"
        photo.save(path, **kw)
        expected[str(path)] = int(y[i])
    assert main(["predict", "--json", str(tmp_path)]) == 0
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {d["file"] for d in docs} == set(expected)
    right = sum(d["label"] == expected[d["file"]] for d in docs)
    wrong = sum(d["label"] is not None and d["label"] != expected[d["file"]] for d in docs)
    assert right >= 59 and wrong == 0, [(d["file"], d["label"], d["confidence"]) for d in docs
                                        if d["label"] != expected[d["file"]]]


def test_sideways_phone_photo_and_transparent_drawing(test_set, tmp_path, capsys):
    x, y = test_set
    i = 0  # a 7
    photo = render_like_user(x[i], np.random.default_rng(3))
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise to show
    photo.transpose(Image.Transpose.ROTATE_270).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=90)
    rgba = np.zeros((140, 140, 4), np.uint8)
    rgba[..., 3] = np.asarray(Image.fromarray(x[i]).resize((140, 140), Image.Resampling.BICUBIC))
    Image.fromarray(rgba, "RGBA").save(tmp_path / "drawing.png")
    assert main(["predict", "--json", str(tmp_path / "phone.jpg"), str(tmp_path / "drawing.png")]) == 0
    assert [json.loads(line)["label"] for line in capsys.readouterr().out.splitlines()] == [int(y[i])] * 2


def test_pictures_without_a_digit_get_no_label(tmp_path, capsys):
    rng = np.random.default_rng(5)
    render_like_user(np.zeros((28, 28), np.uint8), rng).save(tmp_path / "blank-page.jpg")
    Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
    assert main(["predict", "--json", str(tmp_path)]) == 0
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(docs) == 2 and all(d["label"] is None and d["reason"] for d in docs)


def test_index_mode_uses_the_bundled_model_too(capsys, mnist_dir):
    assert main(["predict", "--index", "0", "--json", "--data-dir", str(mnist_dir)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["label"] == row["true"] == 7


def test_rendered_benchmark_sample(mnist_dir, tmp_path):
    """A quick slice of benchmarks/real_images.py: the first 500 test digits, rendered like users' photos."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "benchmarks/real_images.py", "--n", "500", "--negatives", "20",
                           "--data-dir", str(mnist_dir), "--json", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=BUNDLED_DIR.parents[2])
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["raw_accuracy"] >= 0.99 and doc["rendered_accuracy"] >= 0.985, doc
    assert doc["gap_points"] < 1.5
    assert doc["no_ink_renders"] == 0
