"""Reports: one self-contained HTML page per run, and a page comparing runs.

:func:`write_report` evaluates a run on its test split
(:func:`digits.evaluation.evaluate`), draws every figure of
:mod:`digits.plots` and writes ``report.html`` (figures embedded as
``data:`` URIs, inline CSS, no external reference of any kind) plus the
figures as PNG files in ``plots/``.  :func:`write_comparison` reads only the
runs' saved files (no Keras) and writes ``compare.html`` with a table of the
runs and their learning curves overlaid, plus ``compare-curves.png``.

Everything is checked and rendered in memory first and written last, all
files or none (:func:`digits.files.write_all`): a missing or corrupt run
file raises one :class:`DigitsError` naming it and leaves the folder as it
was.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path

from digits import files
from digits.display import _e
from digits.display import _number as _is_number
from digits.display import _pct
from digits.errors import DigitsError
from digits.runs import Run

REPORT_FILE = "report.html"
COMPARE_FILE = "compare.html"
COMPARE_CURVES_FILE = "compare-curves.png"
PLOTS_DIR = "plots"

#: The figures of a run report, in page order: file stem → (heading, how to read it).
FIGURES = {
    "samples": (
        "Training samples",
        "The first training images with the label each came with: what the model learns from. "
        "Each digit is 28×28 pixels, shown enlarged without smoothing.",
    ),
    "curves": (
        "Learning curves",
        "Loss (lower is better) and accuracy (higher is better) after each epoch, one pass over the "
        "training images. Training (blue) is measured on the images the model learns from, "
        "validation (orange) on images held out from training. A validation curve that stalls "
        "or turns while the training curve keeps improving is the sign of overfitting.",
    ),
    "confusion": (
        "Confusion matrix",
        "Every test image counted by its true class (row) and the class the model predicted "
        "(column). The diagonal holds the correct answers; every other cell is a kind of mistake. "
        "The right panel divides each row by its total, so the red cells show which digits are "
        "most often mistaken for which.",
    ),
    "per_class": (
        "Precision, recall and F1 per class",
        "Precision: of the images predicted as this class, the share that truly are. Recall: of "
        "the images of this class, the share found. F1 combines the two (their harmonic mean).",
    ),
    "mistakes": (
        "Mistakes, most confident first",
        "Test images the model got wrong, sorted by how sure it was of its wrong answer. Each is "
        "titled true → predicted (the probability it gave its prediction). Some are genuinely "
        "ambiguous or mislabelled; others show what the model has not learned.",
    ),
    "predictions": (
        "Predictions with their probabilities",
        "The first test images, each beside the probability the model gave to every class. A tall "
        "single bar is a confident answer; several mid-height bars mean the model hesitated.",
    ),
}

#: What each configuration key means, for the configuration table.
CONFIG_HELP = {
    "model": "architecture from the model registry (see: digits models)",
    "dataset": "the dataset trained and tested on",
    "epochs": "passes over the training images",
    "batch_size": "images per gradient step",
    "learning_rate": "Adam's (peak) learning rate",
    "lr_schedule": "cosine: decays to 0 over the run; constant: fixed; onecycle: warm-up, then decay",
    "validation_split": "fraction of the training images held out for validation",
    "seed": "random seed; the same seed repeats the run",
    "early_stopping": "patience in epochs without a better validation loss (null: off)",
    "checkpoint_best": "keep the epoch with the best validation loss instead of the last",
    "limit": "trained on only the first N images (null: all of them)",
    "backend": "Keras backend that trained the model",
    "extra": "other settings",
    "dataset_source": "where the data was read from",
    "class_names": "the classes, in label order",
    "optimizer": "the recipe's optimizer and its settings (Adam's betas)",
}


@dataclass
class _RunInfo:
    run: Run
    config: dict
    metrics: dict
    history: dict[str, list[float]]

    @property
    def name(self) -> str:
        return self.run.path.name

    def number(self, key: str):
        return self.metrics.get(key)


def _read(run) -> _RunInfo:
    """Open and check a run's files (not the model): one DigitsError naming the first bad file."""
    run = run if isinstance(run, Run) else Run(run)
    config, metrics = run.config, run.metrics
    for key in ("test_accuracy", "test_loss"):
        if not _is_number(metrics.get(key)):
            raise DigitsError(f"{run.path / 'metrics.json'}: no numeric {key!r}; is this a finished run?")
    for key in ("train_seconds", "parameters", "epochs_run", "test_images"):
        if key in metrics and not _is_number(metrics[key]):
            raise DigitsError(f"{run.path / 'metrics.json'}: {key!r} is not a number")
    if not isinstance(config.get("model"), str):
        raise DigitsError(f"{run.path / 'config.json'}: no 'model' name")
    return _RunInfo(run, config, metrics, run.history())


# --------------------------------------------------------------------------- HTML pieces

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: #222; font: 15px/1.5 system-ui, "DejaVu Sans",
       "Liberation Sans", Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 22px 20px 40px; }
header h1 { font-size: 26px; margin: 0 0 4px; }
header p { margin: 2px 0; color: #555; }
nav { margin: 14px 0 4px; display: flex; flex-wrap: wrap; gap: 6px 8px; }
nav a { color: #0b5c8e; text-decoration: none; background: #fff; border: 1px solid #dfe2e6;
        border-radius: 14px; padding: 2px 11px; font-size: 13.5px; }
nav a:hover { border-color: #0072B2; }
section { background: #fff; border: 1px solid #e1e4e8; border-radius: 8px; padding: 16px 18px 18px;
          margin: 16px 0; }
h2 { font-size: 20px; margin: 0 0 4px; }
h3 { font-size: 16px; margin: 18px 0 6px; }
p.note { color: #4a4a4a; margin: 0 0 12px; max-width: 62em; }
figure { margin: 0; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(128px, 1fr)); gap: 10px; }
.card { border: 1px solid #e1e4e8; border-radius: 8px; padding: 10px 14px; background: #fbfbfc; }
.card .value { font-size: 24px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card .label { font-size: 13px; color: #555; }
.card.main { border-color: #0072B2; background: #f0f7fc; }
.card.main .value { color: #0b5c8e; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 14px; }
th, td { padding: 5px 12px; border-bottom: 1px solid #e6e8eb; text-align: right; vertical-align: top; }
th { background: #f6f7f9; font-weight: 600; border-bottom: 2px solid #d5d9de; }
th.text, td.text { text-align: left; }
td.mono, code { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 13px; }
td.help { color: #666; text-align: left; }
tr.best td, td.best { background: #eaf6f0; font-weight: 650; }
tr.low td { background: #fdf0ea; }
tfoot td { font-weight: 600; border-bottom: none; }
.wide { overflow-x: auto; }
.nowrap { white-space: nowrap; }
.warn { background: #fff7e6; border: 1px solid #f1d8a6; border-radius: 6px; padding: 8px 12px; }
footer { color: #777; font-size: 13px; margin-top: 24px; }
"""


def _img(png: bytes, alt: str) -> str:
    from digits.plots import png_size

    width, height = png_size(png)
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" width="{width}" height="{height}" '
            f'alt="{_e(alt)}"></figure>')


def _table(headers: list[str], rows: list[list], *, text_cols=(0,), row_classes=None,
           foot: list[str] | None = None) -> str:
    """An HTML table of already-escaped cells; `text_cols` are left-aligned.

    A cell is an HTML string, or a pair (HTML, class) to mark it, e.g. ``"best"``.
    """

    def td(j, cell, tag="td"):
        html_, extra = cell if isinstance(cell, tuple) else (cell, "")
        classes = " ".join(c for c in ("text" if j in text_cols else "", extra) if c)
        return f'<{tag} class="{classes}">{html_}</{tag}>' if classes else f"<{tag}>{html_}</{tag}>"

    head = "".join(td(j, h, "th") for j, h in enumerate(headers))
    body = []
    for i, row in enumerate(rows):
        rc = row_classes[i] if row_classes else ""
        attr = f' class="{rc}"' if rc else ""
        body.append(f"<tr{attr}>" + "".join(td(j, c) for j, c in enumerate(row)) + "</tr>")
    tfoot = ""
    if foot:
        tfoot = "<tfoot><tr>" + "".join(td(j, c) for j, c in enumerate(foot)) + "</tr></tfoot>"
    return (f'<div class="wide"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody>{tfoot}</table></div>')


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _section(anchor: str, heading: str, note: str, content: str) -> str:
    note_html = f'<p class="note">{note}</p>' if note else ""
    return f'<section id="{anchor}">\n<h2>{_e(heading)}</h2>\n{note_html}\n{content}\n</section>'


def _card(value: str, label: str, main: bool = False) -> str:
    return (f'<div class="card{" main" if main else ""}"><div class="value">{_e(value)}</div>'
            f'<div class="label">{_e(label)}</div></div>')


def _int(x) -> str:
    return f"{int(x):,}" if _is_number(x) else "—"


def _seconds(x) -> str:
    if not _is_number(x):
        return "—"
    if x >= 120:
        return f"{x / 60:.1f} min"
    return f"{x:.1f} s"


def _description(model_name: str) -> str:
    from digits.models import MODELS

    spec = MODELS.get(model_name)
    return spec.description if spec else ""


def _footer() -> str:
    from digits import __version__

    return (f'<footer>Generated {time.strftime("%Y-%m-%d %H:%M")} by digits {__version__}. '
            "This page is self-contained: the figures are embedded in it.</footer>")


# --------------------------------------------------------------------------- the run report


def _layer_rows(model) -> tuple[list[list[str]], list[str]]:
    import numpy as np

    def shape_of(tensor) -> str:
        try:
            return _e(str(tuple(tensor.shape)).replace("None", "batch"))
        except Exception:  # a layer without a symbolic output
            return "?"

    rows = []
    try:
        rows.append(["input", "Input", shape_of(model.inputs[0]), "0"])
    except Exception:
        pass
    for layer in model.layers:
        try:
            shape = shape_of(layer.output)
        except Exception:
            shape = "?"
        rows.append([_e(layer.name), _e(type(layer).__name__), shape, f"{layer.count_params():,}"])
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    foot = ["total", "", "all trainable" if not frozen else f"{frozen:,} of them not trainable",
            f"{trainable + frozen:,}"]
    return rows, foot


def _config_rows(config: dict) -> list[list[str]]:
    rows = []
    for key, value in config.items():
        if key == "versions" and isinstance(value, dict):
            continue
        if key == "class_names" and isinstance(value, list):
            shown = ", ".join(str(v) for v in value)
        elif isinstance(value, str):
            shown = value
        else:
            shown = json.dumps(value)
        rows.append([f"<code>{_e(key)}</code>", _e(shown), _e(CONFIG_HELP.get(key, ""))])
    versions = config.get("versions")
    if isinstance(versions, dict):
        shown = ", ".join(f"{k} {v}" for k, v in versions.items())
        rows.append(["<code>versions</code>", _e(shown), "software that trained the run"])
    return rows


def _render_report(info: _RunInfo, data_dir) -> tuple[str, dict[str, bytes]]:
    from digits import plots
    from digits.backend import use_backend
    from digits.datasets import load_dataset
    from digits.evaluation import evaluate

    use_backend(None)  # keeps a backend Keras already runs on; else $KERAS_BACKEND, else JAX
    result = evaluate(info.run, data_dir=data_dir)
    data = load_dataset(info.config.get("dataset", "mnist"), data_dir=data_dir, progress=False)
    model = info.run.load_model()
    names = data.class_names
    per_class = result.per_class()

    figures = {
        "samples": plots.samples_png(data.x_train, data.y_train, names),
        "curves": plots.curves_png(info.history),
        "confusion": plots.confusion_png(result.confusion, names),
        "per_class": plots.per_class_png(per_class),
        "mistakes": plots.mistakes_png(data.x_test, result.labels, result.probabilities, names),
        "predictions": plots.predictions_png(data.x_test, result.labels, result.probabilities, names),
    }

    m, cfg = info.metrics, info.config
    n_test = len(result.labels)
    errors = int((result.predicted != result.labels).sum())
    cards = [
        _card(_pct(result.accuracy), "test accuracy", main=True),
        _card(f"{errors:,}", f"mistakes in {n_test:,} test images"),
        _card(f"{result.loss:.4f}", "test loss (cross-entropy)"),
        _card(_int(m.get("parameters", model.count_params())), "parameters"),
        _card(_int(m.get("epochs_run", len(info.history.get("loss", [])))), "epochs trained"),
        _card(_seconds(m.get("train_seconds")), "training time"),
    ]
    if info.history.get("val_accuracy"):
        cards.append(_card(_pct(info.history["val_accuracy"][-1]), "validation accuracy, last epoch"))
    warn = ""
    if abs(float(m["test_accuracy"]) - result.accuracy) > 5e-4:
        warn = (f'<p class="warn">metrics.json recorded a test accuracy of {_pct(m["test_accuracy"])} '
                f"when training ended; evaluated again now it is {_pct(result.accuracy)}.</p>")

    model_name = cfg["model"]
    description = _description(model_name)
    limit = cfg.get("limit")
    trained_on = (f"the first {limit:,} training images" if _is_number(limit)
                  else f"{_int(m.get('train_images'))} training images")
    header = (
        f"<header><h1>Run report: {_e(info.name)}</h1>"
        f"<p>Model <b>{_e(model_name)}</b>{(' — ' + _e(description)) if description else ''}</p>"
        f"<p>Dataset {_e(cfg.get('dataset', 'mnist'))}, trained on {_e(trained_on)}; "
        f"tested on {n_test:,} images it never saw. Run folder: <code>{_e(info.run.path)}</code></p>"
        "</header>"
    )
    anchors = {"summary": "Summary", **{k.replace("_", "-"): v[0] for k, v in FIGURES.items()},
               "model": "Model", "config": "Configuration"}
    nav = "<nav>" + "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in anchors.items()) + "</nav>"

    sections = [_section("summary", "Summary",
                         "Scores on the test images, which the model never saw while training.",
                         warn + f'<div class="cards">{"".join(cards)}</div>')]
    for key, (heading, note) in FIGURES.items():
        content = _img(figures[key], heading)
        if key == "per_class":
            rows, row_classes = [], []
            worst = min(range(len(per_class)), key=lambda i: per_class[i]["f1"]) if per_class else -1
            for i, r in enumerate(per_class):
                wrong = r["support"] - int(result.confusion[i, i])
                rows.append([_e(r["class"]), f"{r['precision']:.4f}", f"{r['recall']:.4f}",
                             f"{r['f1']:.4f}", f"{r['support']:,}", f"{wrong:,}"])
                row_classes.append("low" if i == worst else "")
            content += "<h3>The same scores as a table</h3>" + _table(
                ["class", "precision", "recall", "F1", "test images", "missed"], rows,
                row_classes=row_classes)
            content += '<p class="note">The class with the lowest F1 is highlighted.</p>'
        sections.append(_section(key.replace("_", "-"), heading, _e(note), content))

    layer_rows, foot = _layer_rows(model)
    sections.append(_section(
        "model", "Model",
        "The layers in order, the shape of what each one outputs (batch: any number of images) "
        "and how many numbers it learns.",
        _table(["layer", "type", "output shape", "parameters"], layer_rows, text_cols=(0, 1, 2),
               foot=foot)))
    sections.append(_section(
        "config", "Configuration",
        "The full settings of this run, from <code>config.json</code>. "
        "<code>digits train --config config.json</code> trains it again.",
        _table(["setting", "value", "meaning"], _config_rows(cfg), text_cols=(0, 1, 2))))

    body = header + nav + "\n".join(sections) + _footer()
    return _page(f"Run report: {info.name}", body), figures


def write_report(run, *, out=None, data_dir=None) -> Path:
    """Write ``report.html`` and ``plots/*.png`` for a run into `out` (default: the run folder).

    `run` is a :class:`digits.runs.Run` or its path; `data_dir` is where the
    dataset is (default: ``$DIGITS_DATA_DIR``, then the download cache).
    Returns the path of ``report.html``.
    """
    info = _read(run)
    page, figures = _render_report(info, data_dir)
    target = Path(out) if out is not None else info.run.path
    outputs = {target / PLOTS_DIR / f"{name}.png": png for name, png in figures.items()}
    outputs[target / REPORT_FILE] = page.encode("utf-8")
    files.write_all(outputs)
    return target / REPORT_FILE


# --------------------------------------------------------------------------- comparison


def _labels(infos: list[_RunInfo]) -> list[str]:
    names = [i.name for i in infos]
    return [n if names.count(n) == 1 else str(i.run.path) for n, i in zip(names, infos)]


def render_comparison(runs) -> tuple[str, bytes]:
    """The comparison page and its curves figure, in memory (see :func:`write_comparison`)."""
    from digits import plots

    infos, seen = [], {}
    for run in runs:
        info = _read(run)
        key = info.run.path.resolve()
        if key in seen:
            raise DigitsError(f"{info.run.path}: given twice (also as {seen[key]})")
        seen[key] = info.run.path
        infos.append(info)
    if len(infos) < 2:
        raise DigitsError("compare needs at least two run directories")
    labels = _labels(infos)
    curves = plots.comparison_curves_png({label: i.history for label, i in zip(labels, infos)})

    acc = [float(i.metrics["test_accuracy"]) for i in infos]
    loss = [float(i.metrics["test_loss"]) for i in infos]
    secs = [i.number("train_seconds") for i in infos]
    best_acc, best_loss = max(acc), min(loss)
    timed = [s for s in secs if _is_number(s)]
    fastest = min(timed) if timed else None
    rows = []
    for label, info, a, lo, s in zip(labels, infos, acc, loss, secs):
        m = info.metrics
        n_test = m.get("test_images")
        errors = f"{round((1 - a) * n_test):,}" if _is_number(n_test) else "—"
        model = info.config["model"]
        top = "best" if a == best_acc else ""
        rows.append([
            (f"<b>{_e(label)}</b>", "nowrap"),
            (f"<code>{_e(model)}</code>", "nowrap"),
            _e(_description(model)),
            _int(m.get("parameters")),
            _int(m.get("epochs_run")),
            (_seconds(s), "best" if s == fastest else ""),
            (_pct(a), top),
            (errors, top),
            (f"{lo:.4f}", "best" if lo == best_loss else ""),
        ])
    table = _table(["run", "model", "architecture", "parameters", "epochs", "training time",
                    "test accuracy", "test errors", "test loss"], rows, text_cols=(0, 1, 2))

    best = infos[acc.index(best_acc)]
    best_label = labels[acc.index(best_acc)]
    model_note = "" if best_label == best.config["model"] else f" (<code>{_e(best.config['model'])}</code>)"
    lines = [f"<b>{_e(best_label)}</b>{model_note} has the best test accuracy, {_pct(best_acc)}"]
    if _is_number(best.number("train_seconds")):
        lines[0] += f", after {_seconds(best.number('train_seconds'))} of training"
    if fastest is not None:
        quick = secs.index(fastest)
        if labels[quick] != best_label:
            lines.append(f"the fastest to train, <b>{_e(labels[quick])}</b>, took "
                         f"{_seconds(fastest)} and reached {_pct(acc[quick])}")
    summary = "; ".join(lines) + "."

    header = (f"<header><h1>Comparing {len(infos)} runs</h1>"
              "<p>Each row is one trained model, scored on the same test images, which no model "
              "saw while training.</p></header>")
    missing = [label for label, i in zip(labels, infos) if not i.history]
    missing_note = (f'<p class="warn">No history.csv in {", ".join(_e(m) for m in missing)}: '
                    "no curves for them.</p>" if missing else "")
    sections = [
        _section("runs", "The runs", summary,
                 table + '<p class="note">Test errors: misclassified test images. Parameters: the '
                 "numbers the model learns. Training time: wall-clock seconds of fitting on this "
                 "machine. The best training time, test accuracy, test errors and test loss are highlighted.</p>"),
        _section("curves", "Learning curves",
                 "Each colour is one run. Top: loss (lower is better); bottom: accuracy (higher is "
                 "better). Left: on the training images; right: on the held-out validation images, "
                 "the better guide to how a model does on new digits. Runs may train for different "
                 "numbers of epochs.",
                 missing_note + _img(curves, "Learning curves of the runs, overlaid")),
        _section("folders", "Run folders",
                 "Where each run is; <code>digits report RUN_DIR</code> writes a full report for "
                 "one run.",
                 _table(["run", "folder"],
                        [[_e(label), f"<code>{_e(i.run.path)}</code>"] for label, i in zip(labels, infos)],
                        text_cols=(0, 1))),
    ]
    body = header + "\n".join(sections) + _footer()
    return _page(f"Comparing {len(infos)} runs", body), curves


def write_comparison(runs, *, out) -> Path:
    """Write ``compare.html`` and ``compare-curves.png`` comparing `runs` into the folder `out`.

    `runs` are :class:`digits.runs.Run` objects or their paths, at least two.
    Returns the path of ``compare.html``.
    """
    page, curves = render_comparison(runs)
    target = Path(out)
    files.write_all({target / COMPARE_CURVES_FILE: curves, target / COMPARE_FILE: page.encode("utf-8")})
    return target / COMPARE_FILE
