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


def test_a_pen_stroke_standing_on_a_boxs_side_is_kept() -> None:
    """A 1 written from the box's bottom to its top meets a side at both ends, as a wall does; but a
    wall is printed as thin as the sides, and a pen's stroke is thicker (a 4's stem, a 7's bar).
    (At this size an 8 px stroke is thin enough to be taken for a line: see MAX_LINE_THICKNESS.)"""
    q = np.zeros((600, 600), np.uint8)
    q[100:103, 100:500] = q[497:500, 100:500] = 200  # top and bottom, 3 px
    q[100:500, 100:103] = q[100:500, 497:500] = 200  # left and right walls
    q[103:497, 295:303] = 220  # an 8 px stroke from side to side
    cleaned = remove_printed_lines(q, 40, 0)
    assert (cleaned[120:480, 295:303] > 200).all()
    assert np.count_nonzero(cleaned[:, :150] > 40) + np.count_nonzero(cleaned[:, 450:] > 40) <= 4


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


def _read_digit(label: int, start: int, confidence: float = 0.99):
    from digits.sequence import ReadDigit

    return ReadDigit(label, confidence, (start, start + 8), (0.1,) * 10)


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


def test_the_reader_gives_a_second_opinion_on_digits_the_classifier_is_unsure_of() -> None:
    """Its answer is taken only where it is sure the segment holds one digit; sure digits, digits the
    reader already read within a group, and pieces with no ink are left alone."""
    from digits.inference import Prediction, _second_opinion
    from digits.vision import NO_INK

    class Reader:
        def __init__(self, readings):
            self.readings, self.asked = readings, 0

        def read(self, inks):
            self.asked += len(inks)
            return self.readings[: len(inks)]

    ink = np.ones((30, 20), np.float32)
    segment = Segment(box=(0, 0, 20, 30), image=pad_square(ink), ink=ink)
    unsure = Prediction(None, 0.6, [0.0] * 10, "unsure: best guess 4 at 0.60, below the threshold 0.80")
    sure, empty = Prediction(3, 0.99, [0.0] * 10), Prediction(None, 0.0, [0.0] * 10, NO_INK)
    for readings, label in [([[_read_digit(9, 0, 0.95)]], 9),  # sure of one digit: taken
                            ([[_read_digit(9, 0, 0.70)]], None),  # unsure too: still unsure
                            ([[_read_digit(1, 0, 0.95), _read_digit(1, 10, 0.95)]], None),  # two digits
                            ([None], None)]:  # no reading
        (result,) = _second_opinion(Reader(readings), [segment], [unsure], [None], 0.8)
        assert result.label == label
    reader = Reader([])
    assert _second_opinion(reader, [segment] * 3, [sure, empty, unsure], [None, None, "read"], 0.8) \
        == [sure, empty, unsure]
    assert reader.asked == 0
    assert _second_opinion(False, [segment], [unsure], [None], 0.8) == [unsure]  # reader=False: none asked


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


# ---------------------------------------------------------------------------
# Each kind, with the bundled model


# These read a few pictures of each kind and require most of them right: the rates themselves
# are measured on hundreds of pictures by benchmarks/real_paper.py (BENCHMARKS.md).

@pytest.mark.parametrize("layout", [PaperLayout(paper="ruled"), PaperLayout(paper="squared"),
                                    PaperLayout(boxes=True)], ids=["ruled", "squared", "boxed"])
def test_one_digit_on_real_paper(bundled, mnist_data, layout) -> None:
    from digits.inference import recognize

    right = 0
    for seed in range(6):
        (digit,), label = _digits(mnist_data, 40 + seed)
        picture, _ = render_on_paper([[digit]], np.random.default_rng([1, seed]), layout)
        (result,) = recognize(bundled, [picture])
        right += str(result.label) == label
    assert right >= 5


@pytest.mark.parametrize(("layout", "at_least"), [(PaperLayout(paper="ruled"), 3), (PaperLayout(boxes=True), 2)],
                         ids=["ruled", "boxed"])
def test_numbers_on_real_paper(bundled, mnist_data, layout, at_least) -> None:
    from digits.inference import read_number

    read = 0
    for seed in range(4):
        digits, number = _digits(mnist_data, *range(60 + 4 * seed, 64 + 4 * seed))
        picture, _ = render_on_paper([digits], np.random.default_rng([3, seed]), layout)
        doc = read_number(bundled, picture)
        assert len(doc["rows"]) == 1
        read += doc["number"] == number and doc["complete"]
    assert read >= at_least


def test_touching_digits_are_split(bundled, mnist_data) -> None:
    """Digits that touch come out of segmentation as fewer groups than digits; the group reader counts them."""
    from digits.inference import read_number

    exact = counted = unhelped = 0
    for seed in range(8):
        digits, number = _digits(mnist_data, *range(60 + 4 * seed, 64 + 4 * seed))
        picture, _ = render_on_paper([digits], np.random.default_rng([3, seed]), PaperLayout(touching=True))
        groups = sum(len(row) for row in split_rows(picture))
        assert groups < len(number)  # they do touch
        doc = read_number(bundled, picture)
        exact += doc["number"] == number and doc["complete"]
        counted += len(doc["digits"]) == len(number)
        # Without the reader, the classifier alone chooses the cuts (the fallback for very wide groups).
        unhelped += read_number(bundled, picture, reader=False)["number"] == number
    # The first four of these are hard (how often numbers like them are read: BENCHMARKS.md).
    assert exact >= 5 and counted >= 7
    assert exact > unhelped


def test_the_rows_of_a_turned_page_stay_apart() -> None:
    """Three rows of marks, each row falling 11 px per mark: level bands of ink would join them all."""
    page = np.full((360, 700), 240, np.uint8)
    for row in range(3):
        for k in range(6):
            top = 40 + 110 * row + 11 * k
            page[top : top + 70, 60 + 100 * k : 110 + 100 * k] = 20
            page[top + 15 : top + 55, 75 + 100 * k : 95 + 100 * k] = 240  # a ring, like a 0
    rows = split_rows(Image.fromarray(page))
    assert [len(r) for r in rows] == [6, 6, 6]
    assert all(r[0].box[1] < s[0].box[1] for r, s in zip(rows, rows[1:]))  # top to bottom


def test_several_rows_are_read_top_to_bottom(bundled, mnist_data) -> None:
    from digits.inference import read_number

    first, a = _digits(mnist_data, 0, 1, 2)
    second, b = _digits(mnist_data, 3, 4, 5, 6)
    picture, boxes = render_on_paper([first, second], np.random.default_rng(5), PaperLayout(paper="ruled"))
    doc = read_number(bundled, picture)
    assert [row["number"] for row in doc["rows"]] == [a, b]
    assert doc["number"] == f"{a}\n{b}" and doc["complete"]
    assert doc["rows"][0]["box"][3] <= doc["rows"][1]["box"][1]  # the first row lies above the second
    assert [d["label"] for d in doc["digits"]] == [int(c) for c in a + b]
    for row in doc["rows"]:
        xs = [d["box"][0] for d in row["digits"]]
        assert xs == sorted(xs)


def test_read_rows_keeps_the_image_the_classifier_saw_of_each_digit(bundled, mnist_data) -> None:
    """read_rows is read_number before formatting: the same rows and boxes, and each digit's 28×28 input,
    which the classifier reads alone as the same digit (what benchmarks/paper_crops.py trains on)."""
    from digits.inference import read_number, read_rows, recognize

    first, a = _digits(mnist_data, 7, 8, 9)
    second, b = _digits(mnist_data, 10, 11, 12, 13)
    picture, _ = render_on_paper([first, second], np.random.default_rng(6), PaperLayout(paper="squared"))
    rows = read_rows(bundled, picture)
    doc = read_number(bundled, picture)
    assert doc["number"] == f"{a}\n{b}"
    assert [[list(s.box) for s, _ in row] for row in rows] == [[d["box"] for d in r["digits"]] for r in doc["rows"]]
    images = [p.image for row in rows for _, p in row]
    assert all(image.shape == (28, 28) and image.dtype == np.float32 for image in images)
    assert [p.label for p in recognize(bundled, images)] == [int(c) for c in a + b]


def test_a_ruled_page_is_no_digit(bundled) -> None:
    from digits.inference import read_number, recognize

    for seed in range(3):
        picture, _ = render_on_paper([], np.random.default_rng([4, seed]), PaperLayout(paper="ruled"))
        assert not find_ink(picture).found
        assert read_number(bundled, picture)["number"] is None
        (result,) = recognize(bundled, [picture])
        assert result.label is None and result.reason == "no ink found"


def test_a_squared_page_is_no_digit(bundled) -> None:
    """This page's grid line ends in a stub at the picture's edge, which was once read as a 1."""
    from digits.inference import recognize

    picture, _ = render_on_paper([], np.random.default_rng([4, 1]), PaperLayout(paper="squared"))
    (result,) = recognize(bundled, [picture])
    assert result.label is None and result.reason == "no ink found"


def test_an_empty_form_is_no_digit(bundled) -> None:
    from digits.inference import read_number

    picture, _ = render_on_paper([[None] * 4], np.random.default_rng(6), PaperLayout(boxes=True))
    assert read_number(bundled, picture)["number"] is None


@pytest.mark.parametrize("page, paper", [(94, "squared"), (192, "ruled"), (255, "ruled")])
def test_line_ends_at_the_frame_are_no_digit(bundled, page, paper) -> None:
    """Pages of lines alone (``real_paper.py --seed 1``'s) on which the ends and crossings of lines
    cut by the frame were once read as digits (``1\n1\n1...``, ``84``, ``88?``)."""
    from digits.inference import read_number

    picture, _ = render_on_paper([], np.random.default_rng([1, 8, page]), PaperLayout(paper=paper))
    assert read_number(bundled, picture)["number"] is None


def _marks(shape, boxes) -> Image.Image:
    """Dark rectangles (x0, y0, x1, y1) on white paper, rings like 0s where wider than 20 px."""
    page = np.full(shape, 240, np.uint8)
    for x0, y0, x1, y1 in boxes:
        page[y0:y1, x0:x1] = 20
        if x1 - x0 > 20:
            page[y0 + 10 : y1 - 10, x0 + 10 : x1 - 10] = 240
    return Image.fromarray(page)


def test_small_ink_at_the_frame_is_a_remnant_and_digits_there_are_kept() -> None:
    digits = [(100 + 80 * k, 100, 150 + 80 * k, 180) for k in range(4)]  # 80 px tall, inside
    stub = (0, 120, 6, 150)  # 30 px tall at the left edge: under half the digits' height
    rows = split_rows(_marks((300, 500), digits + [stub]))
    assert [[s.box for s in r] for r in rows] == [digits]
    # Alone, a stub is judged against the picture: 30 px is a tenth of its 300.
    assert split_rows(_marks((300, 500), [stub])) == []
    # A tight crop's digits touch the frame, and fill it: all kept.
    tight = [(0, 0, 50, 80), (60, 0, 110, 80), (120, 0, 170, 80)]
    assert [s.box for s in split_rows(_marks((80, 170), tight))[0]] == tight
    # Small marks away from the frame are the segmentation's to judge, not this rule's.
    assert len(split_rows(_marks((300, 500), digits + [(30, 120, 36, 150)]))[0]) == 5


def test_many_small_digits_are_all_kept(mnist_data) -> None:
    """Dust is judged against the picture's 1%, not 3%: a row of 30 digits keeps all 30."""
    row = np.concatenate([np.pad(mnist_data.x_test[i], ((4, 4), (2, 2))) for i in range(30)], axis=1)
    page = Image.fromarray(255 - row).resize((row.shape[1] * 2, row.shape[0] * 2), Image.Resampling.BICUBIC)
    rows = split_rows(page)
    assert len(rows) == 1 and len(rows[0]) >= 29  # MNIST has the odd digit in two pieces that touch a neighbour


def test_to_mnist_of_a_boxed_digit_is_the_digit_alone(mnist_data) -> None:
    """The box's inside is what the model sees: the same 28x28 as the digit on plain paper, nearly."""
    digit = mnist_data.x_test[0]
    boxed, _ = render_on_paper([[digit]], np.random.default_rng(7), PaperLayout(boxes=True))
    plain, _ = render_on_paper([[digit]], np.random.default_rng(7), PaperLayout())
    assert np.abs(to_mnist(boxed) - to_mnist(plain)).mean() < 0.05


@pytest.mark.parametrize("script, flags, message", [
    ("real_paper.py", ["--reader", "nothing.keras"], "argument --reader: nothing.keras: no such file"),
    ("reader_columns.py", ["--reader", "nothing.keras"], "argument --reader: nothing.keras: no such file"),
    ("reader_columns.py", ["--groups", "0"], "argument --groups: must be at least 1, got 0"),
    ("paper_crops.py", ["--per-kind", "0"], "argument --per-kind: must be at least 1, got 0"),
    ("paper_crops.py", ["--rate", "-1"], "argument --rate: must be positive, got -1.0"),
    ("paper_crops.py", ["--model", "nowhere"], "argument --model: nowhere: no model.keras there"),
])
def test_the_paper_benchmarks_refuse_a_bad_flag_in_one_line(script, flags, message, tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    benchmarks = Path(__file__).resolve().parents[1] / "benchmarks"
    proc = subprocess.run([sys.executable, str(benchmarks / script), *flags, *(["--out", str(tmp_path / "run")]
                          if script == "paper_crops.py" else [])], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(message)
    assert not (tmp_path / "run").exists()
