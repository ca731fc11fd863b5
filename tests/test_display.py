"""What a notebook shows: each object's HTML holds its key facts, escaped; figures show as PNG.

Jupyter calls ``_repr_html_`` on a cell's last value (and ``_repr_png_`` on
a figure); these tests call them the same way.
"""

from __future__ import annotations

import html
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest

from digits import plots
from digits.evaluation import Evaluation
from digits.inference import Prediction, Reading, read_number
from digits.runs import Run

HOSTILE = '<script>alert("x")</script>&'


class Tags(HTMLParser):
    """The tags of a piece of HTML, to check that no text became markup."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)


def assert_escaped(page: str) -> None:
    assert "<script" not in page and html.escape(HOSTILE) in page
    assert "script" not in Tags(page).tags


def test_a_run_shows_its_model_metrics_and_path(tiny_mlp_run):
    page = tiny_mlp_run._repr_html_()
    m = tiny_mlp_run.metrics
    assert f"Run {tiny_mlp_run.path.name}" in page
    assert "mlp" in page and "mnist" in page
    assert f"{m['test_accuracy']:.2%}" in page and f"{m['test_loss']:.4f}" in page
    assert f"{m['parameters']:,}" in page and f"{m['threshold']:.2f}" in page
    assert html.escape(str(tiny_mlp_run.path)) in page
    assert len(page) < 3000  # compact: a table, no figures


def test_a_run_escapes_what_its_files_say(tiny_mlp_run, tmp_path):
    folder = tmp_path / HOSTILE.replace("/", "_")
    shutil.copytree(tiny_mlp_run.path, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model": HOSTILE, "dataset": HOSTILE}))
    page = Run(folder)._repr_html_()
    assert "<script" not in page and page.count(html.escape(HOSTILE)) == 2


def test_a_broken_run_shows_its_one_line_error(tiny_mlp_run, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(tiny_mlp_run.path, folder)
    (folder / "metrics.json").write_text("{not json")
    page = Run(folder)._repr_html_()
    assert "unreadable JSON" in page and "metrics.json" in page


def evaluation(class_names=tuple(str(d) for d in range(10))) -> Evaluation:
    labels = np.arange(20) % 10
    probabilities = np.eye(10)[labels]
    probabilities[[3, 7]] = np.eye(10)[[5, 1]]  # two mistakes
    confusion = np.zeros((10, 10), np.int64)
    np.add.at(confusion, (labels, probabilities.argmax(axis=1)), 1)
    return Evaluation(0.4321, 0.9, confusion, probabilities, labels, class_names)


def test_an_evaluation_shows_accuracy_loss_mistakes_and_per_class_scores():
    result = evaluation()
    page = result._repr_html_()
    assert "90.00%" in page and "0.4321" in page and "2 of 20 test images" in page
    rows = result.per_class()
    assert f"{rows[3]['recall']:.3f}" == "0.500" and "0.500" in page  # class 3: one of two right
    assert all(f">{r['class']}</th>" in page for r in rows)
    assert "probabilities" not in page and len(page) < 6000  # no arrays dumped


def test_an_evaluation_escapes_class_names():
    assert_escaped(evaluation((HOSTILE, *map(str, range(1, 10))))._repr_html_())


def test_a_prediction_shows_the_image_the_label_and_the_best_guesses():
    p = np.full(10, 0.01)
    p[7], p[1] = 0.85, 0.06
    image = np.zeros((28, 28), np.float32)
    image[4:24, 12:16] = 1.0
    page = Prediction(7, 0.85, p.tolist(), None, image)._repr_html_()
    assert ">7</b>" in page and "0.850" in page and "7 (0.850), 1 (0.060)" in page
    assert 'src="data:image/png;base64,' in page and "pixelated" in page


def test_an_unsure_prediction_shows_a_question_mark_and_why_escaped():
    page = Prediction(None, 0.4, [0.1] * 10, f"unsure {HOSTILE}", None)._repr_html_()
    assert ">?</b>" in page and "why no label" in page and "<img" not in page
    assert_escaped(page)


def test_a_reading_shows_the_number_its_rows_and_each_digits_confidence():
    reading = Reading(number="12\n3", complete=False, rows=[
        {"number": "12", "digits": [{"label": 1, "confidence": 0.99}, {"label": 2, "confidence": 0.97}]},
        {"number": "?", "digits": [{"label": None, "confidence": 0.41}]}], digits=[])
    page = reading._repr_html_()
    assert "12\n3" in page and "white-space:pre" in page
    assert "1 (0.99), 2 (0.97)" in page and "? (0.41)" in page and "complete" in page and "no:" in page
    assert json.loads(json.dumps(reading)) == dict(reading)  # still plain JSON for the CLI and the API


def test_a_reading_of_nothing_says_why():
    page = Reading(number=None, complete=False, reason=HOSTILE, rows=[], digits=[])._repr_html_()
    assert "none" in page
    assert_escaped(page)


def test_read_number_answers_a_reading(tiny_mlp_run):
    from digits.inference import load_predictor

    picture = np.zeros((40, 90), np.float32)
    picture[8:32, 20:24] = 1.0
    picture[8:32, 60:64] = 1.0
    reading = read_number(load_predictor(tiny_mlp_run.path), picture)
    assert isinstance(reading, Reading) and len(reading["digits"]) == 2
    assert reading["number"] in reading._repr_html_()


@pytest.mark.parametrize("name, args, size", [
    ("curves", ({"loss": [0.3, 0.2], "accuracy": [0.9, 0.95]},), (1000, 400)),
    ("confusion", (np.eye(10, dtype=np.int64) * 5,), (1020, 600)),
])
def test_figures_show_in_a_notebook_as_the_png_a_run_saves(name, args, size, tmp_path):
    figure = getattr(plots, f"{name}_figure")(*args)
    png = figure._repr_png_()
    assert png == getattr(plots, f"{name}_png")(*args)
    assert plots.png_size(png) == size
    figure.savefig(tmp_path / "figure.png")  # a script saves it as it would any matplotlib figure
    assert plots.png_size((tmp_path / "figure.png").read_bytes()) == size


def test_figures_leave_pyplot_and_its_backend_alone(tmp_path):
    """Made without pyplot, so a notebook's own plots (inline backend) are untouched and nothing leaks."""
    code = ("import sys, numpy as np; from digits import plots; "
            "f = plots.samples_figure(np.zeros((3, 28, 28), np.uint8), np.arange(3)); f.savefig(sys.argv[1]); "
            "print('matplotlib.pyplot' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "f.png")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False" and (tmp_path / "f.png").stat().st_size > 1000
