"""Reading digits on real paper: printed lines removed, touching digits split, several rows.

Pictures come from :func:`digits.testing.render_on_paper` with fixed seeds
(the same generator as ``benchmarks/real_paper.py``, which measures the
accuracy of each kind on hundreds of pictures); these tests check each
mechanism on a few pictures with the bundled model, and the parts on
hand-made arrays where the expected answer is exact.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from digits.testing import PaperLayout, render_on_paper
from digits.vision import find_ink, to_mnist
from digits.vision.lines import remove_printed_lines
from digits.vision.segment import Segment, cut, cut_paths, pad_square, split_rows


@pytest.fixture(scope="module")
def bundled():
    from digits.backend import use_backend

    use_backend(None)
    from digits.inference import load_predictor

    return load_predictor()


def _digits(mnist_data, *indices):
    return [mnist_data.x_test[i] for i in indices], "".join(str(mnist_data.y_test[i]) for i in indices)


# ---------------------------------------------------------------------------
# Printed lines, on arrays where the answer is exact


def _ruled_page(with_stroke: bool) -> np.ndarray:
    """A byte ink map (ink high): ruled lines every 40 px, 2 px thick, and a vertical pen stroke across two."""
    q = np.zeros((200, 300), np.uint8)
    for y in range(20, 200, 40):
        q[y : y + 2, :] = 120
    if with_stroke:
        q[50:150, 140:150] = 230
    return q


def test_ruled_lines_are_removed_and_the_crossing_stroke_repaired() -> None:
    cleaned = remove_printed_lines(_ruled_page(True), ink_threshold=40, paper=0)
    assert not (cleaned[:, :130] > 40).any()  # every line gone left of the stroke...
    assert not (cleaned[:, 160:] > 40).any()  # ...and right of it
    # The stroke is whole again where the lines at y=60 and y=100 crossed it.
    assert (cleaned[50:150, 140:150] > 200).all()


def test_the_skew_follows_a_thin_line_among_bold_digits() -> None:
    """Bold strokes across the width fill many rows a third full at any angle; the one thin
    line, turned 1 degree, is what sets the shear."""
    from digits.vision.lines import _skew

    mask = np.zeros((270, 700), bool)
    for x in range(60, 640, 150):  # four bold strokes, together a third of the width, 120 rows tall
        mask[70:190, x : x + 60] = True
    xs = np.arange(700)
    mask[np.rint(120 + xs * np.tan(np.radians(1.0))).astype(int), xs] = True
    assert _skew(mask) == pytest.approx(np.tan(np.radians(1.0)), abs=1e-9)


def test_the_end_of_a_line_cut_by_the_frame_is_no_ink() -> None:
    """A grid line's last stub at the picture's edge, a pixel wide, is not a digit; a digit is kept."""
    page = np.full((300, 575), 235, np.uint8)
    page[270:301, 574] = 90  # a vertical line's end, cut by the frame just beyond its last crossing
    assert not find_ink(Image.fromarray(page)).found
    page[100:200, 280:292] = 30  # a pen's 1
    report = find_ink(Image.fromarray(page))
    assert report.found and report.box[0] >= 279 and report.box[2] <= 293


def test_a_page_of_lines_only_has_no_ink_left() -> None:
    cleaned = remove_printed_lines(_ruled_page(False), ink_threshold=40, paper=0)
    assert not (cleaned > 40).any()
    grid = np.zeros((240, 320), np.uint8)
    grid[::30, :] = 200
    grid[:, ::30] = 200
    assert not (remove_printed_lines(grid, 40, 0) > 40).any()


def test_a_box_is_removed_and_what_it_holds_is_kept() -> None:
    q = np.zeros((200, 200), np.uint8)
    q[30:33, 30:170] = q[167:170, 30:170] = 200  # top and bottom
    q[30:170, 30:33] = q[30:170, 167:170] = 200  # left and right walls
    q[60:140, 95:105] = 220  # a 1 inside
    cleaned = remove_printed_lines(q, 40, 0)
    # At most a corner pixel or two of the box is left, far below a digit's size.
    assert np.count_nonzero(cleaned[:, :50] > 40) + np.count_nonzero(cleaned[:, 150:] > 40) <= 4
    assert (cleaned[60:140, 95:105] > 200).all()


def test_a_pen_stroke_along_a_short_straight_run_is_not_a_box() -> None:
    """A 7's bar meets a stroke at one end only: it stays."""
    q = np.zeros((200, 200), np.uint8)
    q[40:50, 50:150] = 220  # the bar
    for y in range(50, 170):  # the slanted stem from its right end
        x = 150 - (y - 50) // 3
        q[y, x - 5 : x + 5] = 220
    assert (remove_printed_lines(q, 40, 0) == q).all()


def test_small_pictures_pass_unchanged() -> None:
    q = np.zeros((28, 28), np.uint8)
    q[5:7, :] = 200
    assert remove_printed_lines(q, 40, 0) is q


# ---------------------------------------------------------------------------
# Cutting touching digits


def test_cut_paths_find_the_gap_between_two_touching_strokes() -> None:
    ink = np.zeros((100, 100), np.float32)
    ink[:, 0:30] = 1.0  # left blob
    ink[:, 60:100] = 1.0  # right blob
    ink[45:55, 30:60] = 1.0  # a bridge joining them
    segment = Segment(box=(0, 0, 100, 100), image=pad_square(ink), ink=ink)
    paths = cut_paths(segment, height=100.0)
    best = min(paths, key=lambda p: float(ink[np.arange(100), p].sum()))
    assert 30 <= best.min() and best.max() < 60  # through the bridge, not through a blob
    left, right = cut(segment, None, best), cut(segment, best, None)
    assert left.box[2] <= best.max() + 1 and right.box[0] >= best.min()
    assert cut(segment, best, best) is None  # nothing between a path and itself


def _read_digit(label: int, start: int):
    from digits.sequence import ReadDigit

    return ReadDigit(label, 0.99, (start, start + 8), (0.1,) * 10)


def test_the_reader_places_cuts_where_its_digits_begin() -> None:
    """Three strokes joined top and bottom: no least-ink seam between them, so the cuts go where the
    reader fired (each digit's left edge), or to a seam close by."""
    from digits.inference import _reader_cuts

    ink = np.zeros((100, 150), np.float32)
    ink[10:90, 10:40] = ink[10:90, 60:90] = ink[10:90, 110:140] = 1.0
    ink[10:20, :] = ink[80:90, :] = 1.0  # joined: every seam crosses ink
    segment = Segment(box=(200, 50, 350, 150), image=pad_square(ink), ink=ink)
    pieces = _reader_cuts(segment, [_read_digit(1, 5), _read_digit(2, 52), _read_digit(3, 100)], 100.0)
    assert len(pieces) == 3
    lefts = [p.box[0] - 200 for p in pieces]
    assert lefts[0] <= 12 and 45 <= lefts[1] <= 70 and 95 <= lefts[2] <= 115
    assert all(p.box[2] > p.box[0] for p in pieces)
    # A cut that would leave a piece with no ink gives no pieces at all.
    assert _reader_cuts(segment, [_read_digit(1, 5), _read_digit(2, 148), _read_digit(3, 149)], 100.0) is None


def test_when_no_classifier_cut_makes_the_readers_count_the_readers_cuts_do(monkeypatch) -> None:
    """A reader that counts three digits in a group the classifier's cuts cannot make three of."""
    from digits.backend import use_backend

    use_backend(None)
    import digits.inference as inference

    class Reader:
        def read(self, inks):
            return [[_read_digit(d, int(i * ink.shape[1] / 3)) for i, d in enumerate((4, 5, 6))] for ink in inks]

    # Three upright strokes joined at the top and bottom, as one group of ink.
    picture = np.full((240, 420), 255, np.uint8)
    for x in (60, 170, 280):
        picture[50:190, x : x + 60] = 30
        picture[65:175, x + 15 : x + 45] = 255
    picture[50:62, 60:340] = picture[178:190, 60:340] = 30
    monkeypatch.setattr(inference, "_split", lambda predictor, segment, height, count=None: [segment])
    doc = inference.read_number(inference.load_predictor(), Image.fromarray(picture), reader=Reader())
    assert len(doc["digits"]) == 3
    boxes = [d["box"] for d in doc["digits"]]
    assert all(a[2] <= b[0] + 2 for a, b in zip(boxes, boxes[1:]))  # side by side, left to right
