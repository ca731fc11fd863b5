"""`digits read FILE`: the digits of a number, found, ordered left to right and recognized.

The tiny MLP checks the structure of the answer (one entry per digit, boxes in
order, where the digits are); the bundled model must read "2025", both typed
and handwritten.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from digits.cli import main
from digits.inference import BUNDLED_DIR

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


@pytest.fixture(scope="module")
def tiny_run(tiny_mlp_run):
    return tiny_mlp_run.path  # `digits read --model` only reads it


def typed(text: str, *, broken: bool = False, seed: int = 0) -> tuple[Image.Image, list[tuple[int, int]]]:
    """`text` typed in dark ink on off-white paper with a little noise; also each glyph's x-range.

    ``broken`` erases a band through the middle of every glyph, so each digit
    falls apart into pieces that `read` must put back together.
    """
    font = ImageFont.truetype(str(FONT), 110)
    img = Image.new("RGB", (120 + 80 * len(text), 220), (244, 240, 228))
    draw = ImageDraw.Draw(img)
    spans, x = [], 60
    for ch in text:
        mask = Image.new("L", img.size, 0)
        ImageDraw.Draw(mask).text((x, 40), ch, fill=255, font=font)
        left, top, right, bottom = mask.getbbox()  # the ink itself, not the glyph's advance
        draw.text((x, 40), ch, fill=(30, 30, 45), font=font)
        spans.append((left, right))
        if broken:
            middle = (top + bottom) // 2
            draw.rectangle([left - 2, middle - 2, right + 2, middle + 2], fill=(244, 240, 228))
        x += 80
    a = np.asarray(img, dtype=np.float32) + np.random.default_rng(seed).normal(0, 4, (img.height, img.width, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)), spans


def handwritten(data, labels=(2, 0, 2, 5)) -> Image.Image:
    """Real MNIST test digits (of the `mnist_data` fixture), dark on a white sheet, side by side: a number."""
    used, picks = set(), []
    for label in labels:
        i = next(i for i in range(len(data.y_test)) if data.y_test[i] == label and i not in used)
        used.add(i)
        picks.append(data.x_test[i])
    sheet = np.full((150, 60 + 90 * len(picks)), 255, np.uint8)
    for k, digit in enumerate(picks):
        big = np.asarray(Image.fromarray(digit).resize((112, 112), Image.Resampling.BICUBIC))
        y, x = 18 + 4 * (k % 2), 20 + 90 * k  # a little uneven, the boxes overlap by 22 px of paper
        region = sheet[y: y + 112, x: x + 112]
        np.minimum(region, 255 - big, out=region)
    return Image.fromarray(sheet)


def _read(args, capsys):
    code = main(["read", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- structure (tiny model) ----------------------------------------------------------------


def test_json_has_one_entry_per_digit_left_to_right_where_each_was_written(tiny_run, tmp_path, capsys):
    picture, spans = typed("2025")
    picture.save(tmp_path / "number.png")
    code, out, err = _read(["--model", tiny_run, "--json", tmp_path / "number.png"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["file"] == str(tmp_path / "number.png")
    digits = doc["digits"]
    assert len(digits) == 4 and len(doc["number"]) == 4
    assert doc["number"] == "".join("?" if d["label"] is None else str(d["label"]) for d in digits)
    assert doc["complete"] == ("?" not in doc["number"])
    for d, (left, right) in zip(digits, spans):
        x0, y0, x1, y1 = d["box"]
        assert abs(x0 - left) <= 3 and abs(x1 - right) <= 3, (d["box"], left, right)
        assert 40 < y0 < y1 < 200
        assert len(d["probabilities"]) == 10 and 0 <= d["confidence"] <= 1


def test_broken_strokes_are_put_back_together(tiny_run, tmp_path, capsys):
    picture, spans = typed("2025", broken=True)
    picture.save(tmp_path / "broken.png")
    code, out, _ = _read(["--model", tiny_run, "--json", tmp_path / "broken.png"], capsys)
    assert code == 0
    assert [(d["box"][0], d["box"][2]) for d in json.loads(out)["digits"]] == \
        [pytest.approx(span, abs=3) for span in spans]


def test_text_output(tiny_run, tmp_path, capsys):
    typed("17")[0].save(tmp_path / "n.jpg", quality=85)
    code, out, _ = _read(["--model", tiny_run, "--threshold", "0", tmp_path / "n.jpg"], capsys)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3
    assert lines[0].startswith(f"{tmp_path / 'n.jpg'}: ") and len(lines[0].split(": ")[1]) == 2
    assert all("confidence" in line and " at x " in line for line in lines[1:])


def test_unsure_digits_are_question_marks(tiny_run, tmp_path, capsys, monkeypatch):
    # Without the group reader, whose second opinion can be exactly 1.0 sure, so at the threshold 1.
    monkeypatch.setattr("digits.sequence.load_group_reader", lambda path=None: None)
    typed("42")[0].save(tmp_path / "n.png")
    code, out, _ = _read(["--model", tiny_run, "--threshold", "1", "--json", tmp_path / "n.png"], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["number"] == "??" and doc["complete"] is False
    assert all(d["label"] is None and d["reason"].startswith("unsure") for d in doc["digits"])


def test_blank_page_has_no_number(tiny_run, tmp_path, capsys):
    Image.new("L", (300, 120), 240).save(tmp_path / "blank.png")
    code, out, _ = _read(["--model", tiny_run, "--json", tmp_path / "blank.png"], capsys)
    assert code == 0
    assert json.loads(out) == {"file": str(tmp_path / "blank.png"), "number": None, "complete": False,
                               "reason": "no digits found", "rows": [], "digits": []}
    code, out, _ = _read(["--model", tiny_run, tmp_path / "blank.png"], capsys)
    assert out.strip() == f"{tmp_path / 'blank.png'}: no number (no digits found)"


def test_bad_files_are_one_line_each_and_the_rest_still_read(tiny_run, tmp_path, capsys):
    typed("7")[0].save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code, out, err = _read(["--model", tiny_run, "--json", tmp_path / "bad.png", tmp_path / "good.png",
                            tmp_path / "missing.png"], capsys)
    assert code == 2
    assert [json.loads(line)["file"] for line in out.splitlines()] == [str(tmp_path / "good.png")]
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"digits read: error: {tmp_path / 'bad.png'}: ")
    assert lines[1] == f"digits read: error: {tmp_path / 'missing.png'}: no such file"
    assert lines[2] == "digits read: error: 2 of 3 inputs could not be read (see above)"
    code, out, err = _read(["--model", tiny_run, tmp_path / "missing.png"], capsys)
    assert code == 2 and err.strip() == f"digits read: error: {tmp_path / 'missing.png'}: no such file"


# --- the bundled model reads "2025" ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["typed", "typed jpeg", "broken", "handwritten"])
def test_bundled_model_reads_2025(kind, tmp_path, capsys, mnist_data):
    assert (BUNDLED_DIR / "model.keras").is_file(), "the bundled model is missing"
    if kind == "handwritten":
        picture = handwritten(mnist_data)
    else:
        picture = typed("2025", broken=kind == "broken")[0]
    path = tmp_path / ("2025.jpg" if "jpeg" in kind else "2025.png")
    picture.save(path)
    code, out, err = _read(["--json", path], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["number"] == "2025", doc
    assert doc["complete"] and all(d["confidence"] >= 0.5 for d in doc["digits"])


def test_bundled_model_reads_every_digit_handwritten(mnist_data, tmp_path, capsys):
    handwritten(mnist_data, labels=range(10)).save(tmp_path / "all.png")
    code, out, _ = _read(["--json", tmp_path / "all.png"], capsys)
    assert code == 0 and json.loads(out)["number"] == "0123456789"
