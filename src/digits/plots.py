"""Figures, rendered headless: matplotlib figures for notebooks and scripts, PNG bytes for runs and reports.

Every figure shares one style (:data:`STYLE`, applied with ``rc_context`` so
nothing leaks into other users of Matplotlib) and one palette (Okabe–Ito,
readable by colour-blind people): training is blue, validation orange,
right green, wrong vermilion.

Digits are drawn at their native 28×28 and scaled up with nearest-neighbour
interpolation.  The grids of digits (:func:`samples_figure`,
:func:`mistakes_figure`) are one ``imshow`` of a montage, sized so that each
digit pixel becomes exactly :data:`SCALE`×:data:`SCALE` screen pixels: sharp,
and about 30× faster than a subplot per digit.

Each figure has a fixed pixel size (no ``bbox_inches="tight"``), so reports
lay out the same way every time.  Each comes two ways:

- ``NAME_figure(...)`` returns a :class:`Figure`, which a notebook shows
  (its ``_repr_png_``) and a script saves with ``fig.savefig(path)`` or
  :func:`to_png`.  It is made without pyplot, so no global backend is chosen
  and nothing needs closing;
- ``NAME_png(...)`` returns the same figure's PNG bytes and writes nothing:
  whoever needs a file (a run, a report) writes the bytes through
  :mod:`digits.files`, so this module depends on no other part of Digits.
"""

from __future__ import annotations

import functools
import io

import matplotlib
import matplotlib.figure
import numpy as np

DPI = 100
SCALE = 3  # screen pixels per digit pixel in the digit grids: 28×28 → 84×84
PAD = 2  # blank digit pixels between tiles
LABEL_BAND = 10  # digit pixels above each tile for its label (30 screen pixels)
TITLE_PX = 44  # the title strip above a digit grid

BLUE, ORANGE, GREEN, VERMILION = "#0072B2", "#E69F00", "#009E73", "#D55E00"
PURPLE, SKY, BROWN, BLACK = "#CC79A7", "#56B4E9", "#8C6D31", "#000000"
PALETTE = (BLUE, ORANGE, GREEN, VERMILION, PURPLE, SKY, BROWN, BLACK)
INK, MUTED, GRID = "#222222", "#9a9a9a", "#e2e2e2"
TRAINING, VALIDATION, RIGHT, WRONG = BLUE, ORANGE, GREEN, VERMILION


def _style() -> dict:
    from cycler import cycler

    return {
        "figure.dpi": DPI,
        "savefig.dpi": DPI,
        "figure.facecolor": "white",
        "savefig.facecolor": "white",
        "axes.facecolor": "white",
        "font.family": "DejaVu Sans",
        "font.size": 10,
        "text.color": INK,
        "axes.labelcolor": INK,
        "axes.edgecolor": "#555555",
        "xtick.color": INK,
        "ytick.color": INK,
        "figure.titlesize": 14,
        "figure.titleweight": "bold",
        "axes.titlesize": 11,
        "axes.titlepad": 6,
        "axes.labelsize": 10,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": False,
        "grid.color": GRID,
        "grid.linewidth": 0.8,
        "legend.frameon": False,
        "legend.fontsize": 9.5,
        "xtick.labelsize": 9,
        "ytick.labelsize": 9,
        "lines.linewidth": 2,
        "lines.markersize": 5,
        "axes.prop_cycle": cycler(color=list(PALETTE)),
        "image.interpolation": "nearest",
        "image.cmap": "gray",
    }


STYLE = _style()


class Figure(matplotlib.figure.Figure):
    """A matplotlib figure that Jupyter shows as the PNG a run saves: the house style, its pixel size.

    Made directly, not through pyplot: no global backend is chosen (a notebook's
    inline plots keep working) and nothing needs closing.
    """

    def _repr_png_(self) -> bytes:
        return to_png(self)


def _new_figure(width: float, height: float, **kwargs):
    """A figure of width × height inches, drawn by nothing but itself: no pyplot, no global backend."""
    return Figure(figsize=(width + 1e-3 / DPI, height + 1e-3 / DPI), **kwargs)


def _figure_px(width: int, height: int, **kwargs):
    """A figure of exactly width × height pixels (Agg truncates, so nudge up by a hair)."""
    return _new_figure(width / DPI, height / DPI, **kwargs)


def to_png(fig) -> bytes:
    """`fig` as PNG bytes at its own pixel size, in the house style (what a run or a report embeds)."""
    buf = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _styled(render):
    """`render(...) -> Figure`, run in the house style; the figure is laid out before it is returned.

    Matplotlib makes ticks and grid lines at the first draw, reading the
    style then, so the figure is drawn once (without rendering) inside it:
    a notebook shows it, and ``fig.savefig`` writes it, as a run's PNG looks.
    """

    @functools.wraps(render)
    def figure(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            fig = render(*args, **kwargs)
            fig.draw_without_rendering()
        return fig

    figure.render = render
    return figure


def _png(figure_function):
    """The ``*_png`` twin of a figure function: the same arguments, PNG bytes back, nothing kept.

    It renders straight to PNG in the style, without the figure function's
    extra layout pass (a third of the time).
    """
    render = figure_function.render

    @functools.wraps(render)
    def png(*args, **kwargs) -> bytes:
        with matplotlib.rc_context(STYLE):
            return to_png(render(*args, **kwargs))

    png.__name__ = png.__qualname__ = figure_function.__name__.replace("_figure", "_png")
    png.__doc__ = f"{figure_function.__name__}(...) as PNG bytes (:func:`to_png`)."
    return png


def _as_uint8(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    scale = 255.0 if images.size and float(images.max()) <= 1.0 else 1.0
    return np.clip(np.rint(images * scale), 0, 255).astype(np.uint8)


def _names(class_names, k: int = 10) -> list[str]:
    return [str(n) for n in class_names] if class_names else [str(d) for d in range(k)]


def _short_names(names: list[str]) -> list[str]:
    """Class names for tick labels: the names if short (digits, kana), else the indices."""
    return names if max(len(n) for n in names) <= 3 else [str(i) for i in range(len(names))]


# --------------------------------------------------------------------------- digit grids


def montage(images: np.ndarray, cols: int, pad: int = PAD, *, top: int = 0, fill: int = 0) -> np.ndarray:
    """Tile 28×28 images into one array (one imshow is ~30× faster than a subplot per digit).

    `pad` blank pixels separate the tiles and frame the whole; `top` extra
    blank rows above each tile leave room for a label; blanks are `fill`.
    """
    n, h, w = images.shape
    rows = max(1, -(-n // cols))
    cell_h = top + h + pad
    out = np.full((rows * cell_h + pad, cols * (w + pad) + pad), fill, dtype=images.dtype)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        y, x = pad + r * cell_h + top, pad + c * (w + pad)
        out[y: y + h, x: x + w] = image
    return out


def _digit_grid(images, labels: list[str], cols: int, title: str, *, pad: int = PAD,
                band: int = LABEL_BAND, fontsize: float = 12, color=INK):
    """White-on-black digits in a white grid, each with its label above, scaled exactly SCALE×."""
    images = _as_uint8(images)
    cols = max(1, min(cols, len(images)))
    tiles = montage(images, cols, pad, top=band, fill=255)
    h, w = tiles.shape
    width, height = w * SCALE, h * SCALE + TITLE_PX
    fig = _figure_px(width, height)
    ax = fig.add_axes((0, 0, 1, h * SCALE / height))
    ax.imshow(tiles, cmap="gray", vmin=0, vmax=255, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    cell_h, cell_w = band + 28 + pad, 28 + pad
    for i, text in enumerate(labels):
        r, c = divmod(i, cols)
        x = pad + c * cell_w + 13.5
        y = pad + r * cell_h + band / 2 - 0.5
        ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, color=color,
                linespacing=1.05)
    fig.suptitle(title, y=1 - TITLE_PX / 2 / height, va="center")
    return fig


@_styled
def samples_figure(images: np.ndarray, labels: np.ndarray, class_names=None,
                rows: int = 3, cols: int = 10):
    """The first rows×cols training images, each labelled above its tile."""
    names = _names(class_names)
    n = min(len(images), rows * cols)
    texts = [names[int(y)] for y in labels[:n]]
    long = max((len(t) for t in texts), default=1) > 3
    return _digit_grid(images[:n], texts, cols, f"The first {n} training images and their labels",
                       pad=8 if long else PAD, fontsize=8 if long else 12)


def most_confident_mistakes(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Indices of the misclassified images, the most confidently wrong first."""
    probabilities = np.asarray(probabilities)
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != np.asarray(labels))
    confidence = probabilities[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")]


@_styled
def mistakes_figure(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
                 class_names=None, limit: int = 32, cols: int = 8):
    """The misclassified images, most confident first, each titled "true → predicted (p)"."""
    names = _names(class_names, probabilities.shape[1])
    order = most_confident_mistakes(labels, probabilities)
    total = len(order)
    if total == 0:
        fig = _figure_px(800, 120)
        fig.text(0.5, 0.5, "No mistakes: every test image was classified correctly.",
                 ha="center", va="center", fontsize=14, color=RIGHT)
        return fig
    order = order[:limit]
    predicted = probabilities[order].argmax(axis=1)
    long = max(len(n) for n in names) > 3
    texts = []
    for i, p in zip(order, predicted):
        true, guess, prob = names[int(labels[i])], names[int(p)], probabilities[i, p]
        texts.append(f"{true} →\n{guess} ({prob:.2f})" if long else f"{true} → {guess} ({prob:.2f})")
    shown = f"The {len(order)} most confident" if len(order) < total else "All"
    title = f"{shown} of {total:,} mistakes: true → predicted (probability)"
    return _digit_grid(images[order], texts, cols, title, pad=10 if long else 8,
                       band=16 if long else LABEL_BAND, fontsize=9 if long else 10.5)


# --------------------------------------------------------------------------- curves


def _epoch_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # one epoch: one tick, 1
    ax.set_xlabel("Epoch")
    ax.grid(True)
    ax.set_axisbelow(True)


def _percent_axis(ax, decimals=None) -> None:
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=decimals))


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color=MUTED, fontsize=11)


@_styled
def curves_figure(history: dict[str, list[float]],
               title: str = "Learning curves: training and validation per epoch"):
    """Loss and accuracy per epoch, training and validation on the same axes."""
    fig = _new_figure(10, 4, layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, metric, label in zip(axes, ("loss", "accuracy"), ("Loss (cross-entropy)", "Accuracy")):
        drawn = False
        for key, name, color, style in ((metric, "training", TRAINING, "-o"),
                                        (f"val_{metric}", "validation", VALIDATION, "--s")):
            values = history.get(key)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, color=color, label=name)
                drawn = True
        ax.set_title(label)
        ax.set_ylabel(label)
        _epoch_axis(ax)
        if metric == "accuracy":
            _percent_axis(ax)
        if drawn:
            ax.legend(loc="best")
        else:
            _no_data(ax, "no history recorded")
    fig.suptitle(title)
    return fig


@_styled
def comparison_curves_figure(histories: dict[str, dict[str, list[float]]]):
    """Several runs' curves overlaid: loss and accuracy, training and validation, one colour per run."""
    fig = _new_figure(10, 7.6, layout="constrained")
    axes = fig.subplots(2, 2, sharey="row")
    panels = (("loss", "Training loss"), ("val_loss", "Validation loss"),
              ("accuracy", "Training accuracy"), ("val_accuracy", "Validation accuracy"))
    handles = {}
    for ax, (key, title) in zip(axes.flat, panels):
        drawn = False
        for i, (label, history) in enumerate(histories.items()):
            values = history.get(key)
            if not values:
                continue
            style = ("-", "--", ":")[i // len(PALETTE) % 3]
            (line,) = ax.plot(range(1, len(values) + 1), values, style, marker="o", markersize=4,
                              color=PALETTE[i % len(PALETTE)], label=label)
            handles.setdefault(label, line)
            drawn = True
        ax.set_title(title)
        _epoch_axis(ax)
        if "accuracy" in key:
            _percent_axis(ax)
        if not drawn:
            _no_data(ax, "no run recorded this")
    axes[0, 0].set_ylabel("Loss (cross-entropy)")
    axes[1, 0].set_ylabel("Accuracy")
    for ax in axes[0]:
        ax.tick_params(labelbottom=True)
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="outside lower center",
                   ncol=min(len(handles), 4), fontsize=10.5)
    fig.suptitle("Learning curves of the runs, overlaid")
    return fig


# --------------------------------------------------------------------------- evaluation


def _luminance(rgba) -> float:
    r, g, b = rgba[:3]
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


@_styled
def confusion_figure(confusion: np.ndarray, class_names=None):
    """The confusion matrix twice: annotated counts, and rates as % of each true class."""
    from matplotlib import colormaps
    from matplotlib.colors import PowerNorm

    c = np.asarray(confusion, dtype=np.int64)
    k = len(c)
    names = _short_names(_names(class_names, k))
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.nan_to_num(c / c.sum(axis=1, keepdims=True)) * 100
    fig = _new_figure(10.2, 6.0, layout="constrained")
    left, right = fig.subplots(1, 2)

    # Counts: a square-root-like scale so that small confusions still show a tint.
    blues = colormaps["Blues"]
    norm = PowerNorm(0.4, vmin=0, vmax=max(int(c.max()), 1))
    left.imshow(c, cmap=blues, norm=norm, interpolation="nearest")
    for i in range(k):
        for j in range(k):
            v = int(c[i, j])
            colour = MUTED if v == 0 else ("white" if _luminance(blues(norm(v))) < 0.5 else INK)
            left.text(j, i, str(v), ha="center", va="center", fontsize=8.5, color=colour,
                      fontweight="bold" if i == j else "normal")
    left.set_title("Counts (rows: true class, columns: predicted)")

    # Rates: the errors (off the diagonal) on their own red scale, so confusions stand out.
    reds = colormaps["Reds"]
    off = rates.copy()
    np.fill_diagonal(off, 0)
    top = max(float(off.max()), 2.0)  # rates under 2% stay pale however good the model
    rgba = np.array([[reds(0.85 * min(off[i, j] / top, 1.0)) if off[i, j] > 0 else (1, 1, 1, 1)
                      for j in range(k)] for i in range(k)])
    for i in range(k):
        rgba[i, i] = (0.86, 0.91, 0.96, 1.0)
    right.imshow(rgba, interpolation="nearest")
    for i in range(k):
        for j in range(k):
            v = rates[i, j]
            text = "0" if v == 0 else (f"{v:.1f}" if v < 99.95 else "100")
            colour = MUTED if v == 0 else ("white" if _luminance(rgba[i, j]) < 0.5 else INK)
            right.text(j, i, text, ha="center", va="center", fontsize=8.5, color=colour,
                       fontweight="bold" if i == j else "normal")
    right.set_title("% of each true class (diagonal: recall; red: errors)")

    for ax in (left, right):
        ax.set_xticks(range(k), names)
        ax.set_yticks(range(k), names)
        ax.set_xlabel("Predicted class")
        ax.set_ylabel("True class")
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
    total, errors = int(c.sum()), int(c.sum() - np.trace(c))
    fig.suptitle(f"Confusion matrix: {total:,} test images, {errors:,} misclassified")
    return fig


@_styled
def per_class_figure(per_class: list[dict]):
    """Precision, recall and F1 of each class as grouped bars (rows of Evaluation.per_class())."""
    names = _short_names([str(r["class"]) for r in per_class])
    keys = (("precision", "Precision", BLUE), ("recall", "Recall", ORANGE), ("f1", "F1", GREEN))
    values = np.array([[float(r[key]) for key, _, _ in keys] for r in per_class])
    fig = _new_figure(10, 4.2, layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(per_class))
    width = 0.26
    lowest = float(values.min()) if values.size else 0.0
    bottom = 0.0 if lowest < 0.5 else np.floor((lowest - 0.01) * 20) / 20
    for j, (_, label, colour) in enumerate(keys):
        ax.bar(x + (j - 1) * width, values[:, j] - bottom, width * 0.95, bottom=bottom,
               label=label, color=colour)
    ax.set_xticks(x, names)
    ax.set_xlabel("Class")
    ax.set_ylim(bottom, 1.0)
    ax.set_ylabel("Score" + (f" (axis starts at {bottom:.2f})" if bottom > 0 else ""))
    ax.grid(True, axis="y")
    ax.set_axisbelow(True)
    ax.legend(ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    fig.suptitle("Precision, recall and F1 per class")
    return fig


@_styled
def predictions_figure(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
                    class_names=None, count: int = 12, cols: int = 4):
    """The first `count` test images, each beside the bar chart of its 10 probabilities.

    Laid out by hand in pixels (24 axes through a layout engine take ~1 s);
    each digit is exactly SCALE× its native size.
    """
    names = _names(class_names, probabilities.shape[1])
    ticks = _short_names(names)
    n = min(count, len(images))
    rows = max(1, -(-n // cols))
    block_w, block_h, top = 250, 170, 52
    width, height = block_w * cols, top + block_h * rows
    fig = _figure_px(width, height)
    side = 28 * SCALE
    bars_w, bars_h = block_w - side - 50, 104

    def axes(x, y, w, h):  # pixels from the top left → a figure-fraction rectangle
        return fig.add_axes((x / width, 1 - (y + h) / height, w / width, h / height))

    images = _as_uint8(images)
    k = probabilities.shape[1]
    for i in range(n):
        r, c = divmod(i, cols)
        x0, y0 = c * block_w + 8, top + r * block_h + 30
        image_ax = axes(x0, y0 + (bars_h - side) / 2, side, side)
        image_ax.imshow(images[i], cmap="gray", vmin=0, vmax=255, interpolation="nearest", aspect="auto")
        image_ax.set_axis_off()
        bars_ax = axes(x0 + side + 30, y0, bars_w, bars_h)
        p = probabilities[i]
        true, guess = int(labels[i]), int(p.argmax())
        colours = [MUTED] * k
        colours[true] = RIGHT
        if guess != true:
            colours[guess] = WRONG
        bars_ax.bar(range(k), p, color=colours, width=0.75)
        bars_ax.set_ylim(0, 1)
        bars_ax.set_xlim(-0.6, k - 0.4)
        bars_ax.set_xticks(range(k), ticks, fontsize=8)
        bars_ax.set_yticks([0, 0.5, 1], ["0", ".5", "1"], fontsize=8)
        bars_ax.tick_params(length=2, pad=2)
        bars_ax.grid(True, axis="y")
        bars_ax.set_axisbelow(True)
        fig.text((x0 + 2) / width, 1 - (y0 - 12) / height,
                 f"{names[true]} → {names[guess]} ({p[guess]:.2f})", fontsize=10.5,
                 fontweight="bold", va="center", color=RIGHT if guess == true else WRONG)
    fig.suptitle(f"The first {n} test images: true → predicted (probability), and the probability of "
                 f"every class", y=1 - 16 / height, va="center", fontsize=12.5)
    fig.text(0.5, 1 - 38 / height, "green bar: the true class    vermilion bar: a wrong prediction",
             ha="center", va="center", fontsize=9.5, color="#555555")
    return fig


samples_png = _png(samples_figure)
mistakes_png = _png(mistakes_figure)
curves_png = _png(curves_figure)
comparison_curves_png = _png(comparison_curves_figure)
confusion_png = _png(confusion_figure)
per_class_png = _png(per_class_figure)
predictions_png = _png(predictions_figure)


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) of PNG bytes, read from the IHDR header."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
