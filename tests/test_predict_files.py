"""`digits predict FILE_OR_DIR ...`: any image file, folders, abstaining, and bad input.

These tests use a tiny MLP (3,000 images, 2 epochs), so they check what is
printed and how errors are handled, not accuracy; tests/test_bundled.py
checks the answers of the bundled model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from digits.cli import main
from digits.errors import DigitsError
from digits.testing import render_like_user
from digits.inference import image_paths, load_predictor, recognize_files
from helpers import exit_code, png_bomb


@pytest.fixture(scope="module")
def tiny_run(tiny_mlp_run):
    return tiny_mlp_run.path


@pytest.fixture(scope="module")
def test_digits(mnist_data):
    return mnist_data.x_test[:40], mnist_data.y_test[:40]


def _photo(digit28, seed=0) -> Image.Image:
    return render_like_user(digit28, np.random.default_rng(seed))


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _check_doc(doc: dict) -> None:
    assert set(doc) >= {"file", "label", "confidence", "probabilities"}
    assert doc["label"] is None or doc["label"] in range(10)
    assert isinstance(doc["confidence"], float) and 0 <= doc["confidence"] <= 1
    assert len(doc["probabilities"]) == 10 and all(isinstance(p, float) for p in doc["probabilities"])
    if doc["label"] is None:
        assert doc["reason"]
    else:
        assert doc["confidence"] == max(doc["probabilities"])
        assert abs(sum(doc["probabilities"]) - 1) < 1e-3


# --- every format, mode and size -------------------------------------------------------------


def _write_formats(folder: Path, digit28) -> list[Path]:
    """One digit in every supported format and several modes and sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = _photo(digit28)
    paths = []

    def save(name, img, **kw):
        path = folder / name
        img.save(path, **kw)
        paths.append(path)

    save("rgb.png", photo)
    save("gray.jpg", photo.convert("L"), quality=80)
    save("photo.bmp", photo)
    save("palette.gif", photo.convert("P", palette=Image.Palette.ADAPTIVE))
    save("scan.tiff", photo.convert("L"))
    if features.check("webp"):
        save("web.webp", photo, quality=80)
    save("big.png", photo.resize((photo.width * 5, photo.height * 5)))
    save("small.png", photo.resize((40, 34)))
    # A drawing app's export: black strokes on a transparent (RGB black!) background.
    ink = np.asarray(Image.fromarray(np.asarray(digit28)).resize((112, 112)), dtype=np.uint8)
    rgba = np.zeros((112, 112, 4), np.uint8)
    rgba[..., 3] = ink
    save("drawing.png", Image.fromarray(rgba, "RGBA"))
    # A phone photo stored sideways, with the EXIF tag that says so.
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    save("phone.jpg", photo.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes(), quality=90)
    return paths


def test_every_format_is_read_as_the_digit_it_shows(tiny_run, test_digits, tmp_path, capsys):
    """A clear 7 in every format; with --threshold 0 nothing abstains for doubt, so each must be read as 7.

    (The tiny model is 0.87..0.99 sure of each; a format decoded wrongly would show no ink or another digit.)
    """
    digit, label = test_digits[0][0], int(test_digits[1][0])
    assert label == 7
    paths = _write_formats(tmp_path / "pics", digit)
    assert main(["predict", "--model", str(tiny_run), "--json", "--threshold", "0", *map(str, paths)]) == 0
    docs = _json_lines(capsys.readouterr().out)
    assert [d["file"] for d in docs] == [str(p) for p in paths]
    for doc in docs:
        _check_doc(doc)
    assert {Path(d["file"]).name: d["label"] for d in docs} == {p.name: label for p in paths}


def test_transparent_background_is_paper_and_exif_is_honoured(tiny_run, test_digits, tmp_path):
    """The preprocessed images of the RGBA drawing and of the sideways phone photo match the upright ones."""
    from digits.vision import load_image, to_mnist

    paths = {p.name: p for p in _write_formats(tmp_path / "pics", test_digits[0][0])}
    upright = to_mnist(load_image(paths["rgb.png"]))
    assert np.abs(to_mnist(load_image(paths["phone.jpg"])) - upright).mean() < 0.05
    drawing = to_mnist(load_image(paths["drawing.png"]))
    with Image.open(paths["drawing.png"]) as img:
        on_paper = Image.fromarray(255 - np.asarray(img)[..., 3])  # the same strokes, opaque, on white
    assert np.abs(drawing - to_mnist(on_paper)).max() < 0.01
    # ...and it is the digit that was drawn (to within the one-pixel rounding of the centre of mass).
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    best = max(np.corrcoef(np.roll(drawing, s, (0, 1)).ravel(), test_digits[0][0].ravel())[0, 1] for s in shifts)
    assert best > 0.9


def test_a_folder_is_read_in_natural_order_skipping_other_files(tiny_run, test_digits, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in (10, 2, 1):
        _photo(test_digits[0][i], i).save(folder / f"digit{i}.JPG")
    (folder / "notes.txt").write_text("not a picture")
    (folder / ".hidden.png").write_bytes(b"")
    (folder / "sub").mkdir()
    assert main(["predict", "--model", str(tiny_run), str(folder)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == [str(folder / f"digit{i}.JPG") for i in (1, 2, 10)]


def test_progress_counts_files_on_stderr_and_keeps_stdout_clean(tiny_run, test_digits, tmp_path, capsys,
                                                                 monkeypatch):
    from digits.cli.common import Progress

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(255 - test_digits[0][i]).save(folder / f"{i}.png")
    monkeypatch.setattr(Progress.__init__, "__defaults__", (2,))  # report every 2 files
    assert main(["predict", "--model", str(tiny_run), "--json", "--progress", str(folder)]) == 0
    captured = capsys.readouterr()
    assert len(_json_lines(captured.out)) == 5
    assert "\r2 files done" in captured.err and "5 files done" in captured.err


def test_text_output_and_top_k(tiny_run, test_digits, tmp_path, capsys):
    path = tmp_path / "seven.png"
    _photo(test_digits[0][0]).save(path)
    assert main(["predict", "--model", str(tiny_run), str(path), "--top-k", "3"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{path}: ") and "top 3: " in line
    assert main(["predict", "--model", str(tiny_run), str(path), "--top-k", "4", "--json", "--threshold", "0"]) == 0
    doc = json.loads(capsys.readouterr().out)
    top = doc["top_k"]
    assert len(top) == 4 and top[0]["label"] == doc["label"]
    assert [t["probability"] for t in top] == sorted((t["probability"] for t in top), reverse=True)
    assert top[0]["probability"] == doc["confidence"]


def test_show_preprocessed_saves_what_the_model_saw(tiny_run, test_digits, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _photo(test_digits[0][0]).save(a / "x.png")
    _photo(test_digits[0][1]).save(b / "x.png")  # same name in another folder
    Image.new("L", (100, 100), 235).save(a / "blank.png")
    out = tmp_path / "seen" / "deeper"
    assert main(["predict", "--model", str(tiny_run), "--json", "--show-preprocessed", str(out), str(a), str(b)]) == 0
    docs = _json_lines(capsys.readouterr().out)
    assert sorted(p.name for p in out.iterdir()) == ["x-2.png", "x.png"]  # nothing for the blank page
    assert [d.get("preprocessed") for d in docs] == [None, str(out / "x.png"), str(out / "x-2.png")]
    with Image.open(out / "x.png") as img:
        assert img.size == (28, 28) and img.mode == "L"
        seen = np.asarray(img, dtype=np.float32) / 255
    assert seen.max() > 0.9 and seen[0].max() == 0  # white ink on black, margin kept like MNIST


# --- abstaining ----------------------------------------------------------------------------


def test_blank_page_and_noise_are_not_given_a_label(tiny_run, tmp_path, capsys):
    rng = np.random.default_rng(0)
    blank = render_like_user(np.zeros((28, 28), np.uint8), rng)  # photographed paper, noise, JPEG
    blank.save(tmp_path / "blank.jpg")
    Image.new("RGB", (300, 200), (250, 250, 250)).save(tmp_path / "white.png")
    assert main(["predict", "--model", str(tiny_run), "--json", str(tmp_path)]) == 0
    for doc in _json_lines(capsys.readouterr().out):
        _check_doc(doc)
        assert doc["label"] is None and doc["reason"] == "no ink found"


def test_threshold_flag(tiny_run, test_digits, tmp_path, capsys):
    path = tmp_path / "d.png"
    _photo(test_digits[0][3]).save(path)
    assert main(["predict", "--model", str(tiny_run), "--json", "--threshold", "1", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["label"] is None and doc["reason"].startswith("unsure: best guess")
    assert doc["confidence"] < 1 and len(doc["probabilities"]) == 10  # the guess is still shown
    assert main(["predict", "--model", str(tiny_run), "--threshold", "1", str(path)]) == 0
    assert "no answer (unsure: best guess" in capsys.readouterr().out
    assert main(["predict", "--model", str(tiny_run), "--json", "--threshold", "0", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in range(10)


@pytest.mark.parametrize("argv,message", [
    (["--threshold", "1.5", "x.png"], "argument --threshold: must be between 0 and 1, got 1.5"),
    (["--top-k", "11", "x.png"], "argument --top-k: must be between 1 and 10, got 11"),
    (["--index", "0", "x.png"], "give image files or --index, not both"),
    (["--index", "0", "--top-k", "2"], "--top-k apply to image files, not to --index"),
    ([], "the following arguments are required: --index or FILE_OR_DIR"),
])
def test_flag_errors_are_one_line(argv, message, capsys):
    assert exit_code(["predict", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


# --- bad input -----------------------------------------------------------------------------


def _bad_inputs(folder: Path, good: Image.Image) -> dict[str, tuple[str, str]]:
    """name -> (path, expected message) for every kind of bad input."""
    folder.mkdir()
    good.save(folder / "good.png")
    buf = folder / "good.png"
    (folder / "truncated.png").write_bytes(buf.read_bytes()[: len(buf.read_bytes()) // 2])
    (folder / "notes.png").write_text("this is text, not a picture\n")
    (folder / "empty.png").write_bytes(b"")
    (folder / "bomb.png").write_bytes(png_bomb(30_000, 30_000))  # 900 Mpx: over twice Pillow's limit
    (folder / "bomb-small.png").write_bytes(png_bomb(10_000, 10_000))  # 100 Mpx: Pillow only warns
    (folder / "no-images").mkdir()
    (folder / "no-images" / "readme.txt").write_text("nothing to see")
    good.save(folder / "icon.png", format="ICO")  # a format Digits refuses, whatever the name says
    scan = folder / "scan.tif"
    good.convert("L").save(scan, compression="tiff_lzw")
    (folder / "damaged.tif").write_bytes(scan.read_bytes()[:-40])  # LZW data cut short
    os.mkfifo(folder / "pipe.png")  # reading it would wait forever for a writer
    # Running as root, chmod 000 does not stop a read, so "unreadable" is tested with
    # paths that no user can read: a missing file, and a path through a regular file.
    return {
        "truncated": (str(folder / "truncated.png"), "truncated or corrupt image"),
        "not an image": (str(folder / "notes.png"), "not an image file Pillow can read"),
        "empty": (str(folder / "empty.png"), "is empty (0 bytes), not an image"),
        "bomb": (str(folder / "bomb.png"), "image is too large to decode safely"),
        "bomb below 2x the limit": (str(folder / "bomb-small.png"), "image is too large to decode safely"),
        "missing": (str(folder / "missing.png"), "no such file"),
        "through a file": (str(folder / "good.png" / "inner.png"), "cannot read"),
        "folder without images": (str(folder / "no-images"), "no image files in this folder"),
        "unsupported format": (str(folder / "icon.png"), "unsupported image format (it looks like ICO)"),
        "damaged tiff": (str(folder / "damaged.tif"), "truncated or corrupt image"),
        "fifo": (str(folder / "pipe.png"), "is a named pipe (FIFO), not an image file"),
    }


def test_each_bad_input_is_one_line_and_the_rest_still_run(tiny_run, test_digits, tmp_path, capsys):
    bad = _bad_inputs(tmp_path / "in", _photo(test_digits[0][0]))
    good = str(tmp_path / "in" / "good.png")
    argv = [good]
    for path, _ in bad.values():
        argv += [path, good]
    assert main(["predict", "--model", str(tiny_run), "--json", *argv]) == 2
    captured = capsys.readouterr()
    docs = _json_lines(captured.out)
    assert [d["file"] for d in docs] == [good] * (len(bad) + 1)
    err = captured.err.strip().splitlines()
    assert len(err) == len(bad) + 1, captured.err
    for line, (name, (path, message)) in zip(err, bad.items()):
        assert line.startswith(f"digits predict: error: {path}: "), (name, line)
        assert message in line, (name, line)
    assert err[-1] == f"digits predict: error: {len(bad)} of {2 * len(bad) + 1} inputs could not be read (see above)"


def test_a_folder_with_damaged_and_refused_files_reads_the_rest(tiny_run, test_digits, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    photo = _photo(test_digits[0][0])
    photo.save(folder / "1-good.png")
    photo.save(folder / "2-icon.png", format="ICO")
    photo.convert("L").save(folder / "3-scan.tif", compression="tiff_lzw")
    (folder / "3-scan.tif").write_bytes((folder / "3-scan.tif").read_bytes()[:-40])
    photo.save(folder / "4-good.png")
    assert main(["predict", "--model", str(tiny_run), "--json", str(folder)]) == 2
    captured = capsys.readouterr()
    assert [Path(d["file"]).name for d in _json_lines(captured.out)] == ["1-good.png", "4-good.png"]
    err = captured.err.strip().splitlines()
    assert len(err) == 3, captured.err
    assert err[0].startswith(f"digits predict: error: {folder / '2-icon.png'}: unsupported image format")
    assert err[1].startswith(f"digits predict: error: {folder / '3-scan.tif'}: truncated or corrupt image")
    assert err[2] == "digits predict: error: 2 of 4 inputs could not be read (see above)"


@pytest.mark.parametrize("name", ["truncated", "not an image", "empty", "bomb", "missing", "folder without images",
                                  "unsupported format", "damaged tiff", "fifo"])
def test_a_single_bad_input_is_exactly_one_line(name, tiny_run, test_digits, tmp_path, capsys):
    path, message = _bad_inputs(tmp_path / "in", _photo(test_digits[0][0]))[name]
    assert main(["predict", "--model", str(tiny_run), path]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"digits predict: error: {path}: ") and message in captured.err
    assert len(captured.err.strip().splitlines()) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file, whatever its permissions")
def test_unreadable_file(tiny_run, test_digits, tmp_path, capsys):  # pragma: no cover - non-root only
    path = tmp_path / "locked.png"
    _photo(test_digits[0][0]).save(path)
    path.chmod(0)
    assert main(["predict", "--model", str(tiny_run), str(path)]) == 2
    assert "permission denied" in capsys.readouterr().err


def test_missing_model_is_reported_before_reading_files(tmp_path, capsys):
    assert main(["predict", "--model", str(tmp_path / "nope"), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no such run directory" in err and len(err.strip().splitlines()) == 1


# --- the library functions behind the command ----------------------------------------------


def test_recognize_files_streams_in_batches_and_keeps_order(tiny_run, test_digits, tmp_path, monkeypatch):
    from digits import inference

    for i in range(5):
        _photo(test_digits[0][i], i).save(tmp_path / f"{i}.png")
    (tmp_path / "2b.png").write_bytes(b"broken")
    predictor = load_predictor(tiny_run)
    calls = []
    real = inference.recognize
    monkeypatch.setattr(inference, "recognize", lambda p, pics, **kw: calls.append(len(pics)) or real(p, pics, **kw))
    streamed = list(recognize_files(predictor, [tmp_path], batch_files=2))
    assert calls == [2, 2, 1]
    assert [p.name for p, _ in streamed] == ["0.png", "1.png", "2.png", "2b.png", "3.png", "4.png"]
    assert isinstance(streamed[3][1], DigitsError)
    whole = list(recognize_files(predictor, [tmp_path]))
    assert [r.probabilities for _, r in whole if not isinstance(r, DigitsError)] == \
        [r.probabilities for _, r in streamed if not isinstance(r, DigitsError)]
    calls.clear()
    list(recognize_files(predictor, [tmp_path], batch_pixels=1))  # big pictures: one at a time
    assert calls == [1] * 5


def test_image_paths_passes_files_through_and_expands_folders(tmp_path):
    (tmp_path / "b.PNG").write_bytes(b"")
    (tmp_path / "a.webp").write_bytes(b"")
    (tmp_path / "c.txt").write_bytes(b"")
    assert [(p.name, e) for p, e in image_paths([tmp_path])] == [("a.webp", None), ("b.PNG", None)]
    assert list(image_paths(["whatever.txt"])) == [(Path("whatever.txt"), None)]
    empty = tmp_path / "empty"
    empty.mkdir()
    [(path, error)] = image_paths([empty])
    assert path == empty and "no image files in this folder" in str(error)
