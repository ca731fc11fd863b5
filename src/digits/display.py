"""How Digits' objects show in Jupyter: compact HTML for a run, an evaluation, a prediction, a reading.

:class:`digits.runs.Run`, :class:`digits.evaluation.Evaluation`,
:class:`digits.inference.Prediction` and :class:`digits.inference.Reading`
each have a ``_repr_html_`` that calls one function here, so a notebook
cell ending in one of them shows a small table instead of
``<digits.runs.Run object at 0x…>``.  Figures are :mod:`digits.plots`'s job.

Everything shown is escaped: a run's path, a class name or a reason is text
from outside.  Nothing here imports Keras or matplotlib, nor another Digits
module; a prediction's 28×28 image is a PNG made by Pillow.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np

STYLE = ("border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:13px;"
         "margin:2px 0")
CELL = "padding:2px 10px;border-bottom:1px solid #e6e6e6;text-align:left"
MUTED = "color:#666"


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _pct(value) -> str:
    return f"{value:.2%}" if _number(value) else "—"


def _fixed(value, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if _number(value) else "—"


def _table(rows: list[tuple[str, str]]) -> str:
    """Two columns, a label and its (already escaped) value."""
    body = "".join(f'<tr><th style="{CELL};{MUTED};font-weight:normal">{_e(label)}</th>'
                   f'<td style="{CELL}">{value}</td></tr>' for label, value in rows)
    return f'<table style="{STYLE}">{body}</table>'


def _title(text: str, note: str = "") -> str:
    note = f' <span style="{MUTED};font-weight:normal">{_e(note)}</span>' if note else ""
    return f'<div style="font-weight:600;margin:2px 0 4px">{_e(text)}{note}</div>'


def _card(content: str) -> str:
    return f'<div class="digits">{content}</div>'


def error_html(what: str, message: str) -> str:
    """What shows in place of an object whose files cannot be read: the one-line error."""
    return _card(_title(what) + f'<div style="color:#b00">{_e(message)}</div>')


def run_html(path, config: dict, metrics: dict) -> str:
    """A run: its name, model and dataset, the headline metrics and the threshold."""
    seconds = metrics.get("train_seconds")
    parameters = metrics.get("parameters")
    train_images = metrics.get("train_images")
    rows = [
        ("model", _e(config.get("model", "—"))),
        ("dataset", _e(config.get("dataset", "—"))),
        ("test accuracy", f"<b>{_pct(metrics.get('test_accuracy'))}</b>"),
        ("test loss", _fixed(metrics.get("test_loss"))),
        ("epochs", _e(metrics.get("epochs_run", config.get("epochs", "—")))),
        ("trained on", f"{train_images:,} images" if _number(train_images) else "—"),
        ("training time", f"{seconds:.1f} s" if _number(seconds) else "—"),
        ("parameters", f"{parameters:,}" if _number(parameters) else "—"),
        ("abstains below", _fixed(metrics.get("threshold"), 2)),
        ("path", f"<code>{_e(path)}</code>"),
    ]
    return _card(_title(f"Run {getattr(path, 'name', path)}") + _table(rows))


def evaluation_html(accuracy: float, loss: float, labels: np.ndarray, predicted: np.ndarray,
                    per_class: list[dict]) -> str:
    """An evaluation: accuracy, loss, the mistakes, and precision, recall and F1 per class in one table."""
    n = len(labels)
    wrong = int((np.asarray(predicted) != np.asarray(labels)).sum())
    head = _table([("accuracy", f"<b>{_pct(accuracy)}</b>"), ("loss", _fixed(loss)),
                   ("mistakes", f"{wrong:,} of {n:,} test images")])
    header = "".join(f'<th style="{CELL}">{_e(r["class"])}</th>' for r in per_class)
    lines = "".join(
        f'<tr><th style="{CELL};{MUTED};font-weight:normal">{name}</th>'
        + "".join(f'<td style="{CELL}">{r[key]:.3f}</td>' for r in per_class) + "</tr>"
        for key, name in (("precision", "precision"), ("recall", "recall"), ("f1", "F1")))
    scores = (f'<table style="{STYLE}"><tr><th style="{CELL};{MUTED};font-weight:normal">class</th>'
              f"{header}</tr>{lines}</table>")
    return _card(_title("Evaluation", "on the test split") + head + scores)


def image_html(image: np.ndarray | None, size: int = 56) -> str:
    """A 28×28 float [0, 1] image as an inline PNG, scaled up without blurring ('' when there is none)."""
    if image is None:
        return ""
    from PIL import Image

    pixels = np.clip(np.rint(np.asarray(image, dtype=np.float64) * 255), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (f'<img src="data:image/png;base64,{data}" width="{size}" height="{size}" '
            'alt="the 28×28 image the model saw" style="image-rendering:pixelated;border:1px solid #ccc">')


def prediction_html(label: int | None, confidence: float, top: list[tuple[int, float]],
                    reason: str | None, image: np.ndarray | None) -> str:
    """A prediction: the image the model saw, the label (or ? and why), the most probable digits."""
    answer = "?" if label is None else str(label)
    rows = [("label", f'<b style="font-size:18px">{_e(answer)}</b>'), ("confidence", _fixed(confidence, 3))]
    if top:
        rows.append(("most probable", _e(", ".join(f"{d} ({p:.3f})" for d, p in top))))
    if reason:
        rows.append(("why no label", _e(reason)))
    picture = image_html(image)
    body = (f'<div style="display:flex;gap:12px;align-items:center">{picture}{_table(rows)}</div>'
            if picture else _table(rows))
    return _card(_title("Prediction") + body)


def reading_html(reading: dict) -> str:
    """A read number: the number, whether every digit was sure, and each digit's label and confidence."""
    if reading.get("number") is None:
        return _card(_title("Reading") + _table([("number", "none"),
                                                 ("why", _e(reading.get("reason", "no digits found")))]))
    rows = [("number", f'<b style="font-size:18px;font-family:monospace;white-space:pre">'
                       f'{_e(reading["number"])}</b>'),
            ("complete", "yes" if reading.get("complete") else "no: ? marks a digit the model is unsure of")]
    for i, row in enumerate(reading.get("rows", []), 1):
        pieces = ", ".join(f'{"?" if d.get("label") is None else d["label"]} ({d.get("confidence", 0):.2f})'
                           for d in row.get("digits", []))
        rows.append((f"row {i}", _e(pieces)))
    return _card(_title("Reading", "digits left to right, with their confidences") + _table(rows))
