"""Pictures for tests and benchmarks: MNIST digits rendered the way users photograph them.

Not used by Digits itself; imported by the test suite, ``benchmarks/`` and the
notebooks (their stand-in for a user's photo).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from digits.datasets.arrays import MNIST_SIDE
from digits.sequence import crop_to_ink
from digits.vision.decode import grey_floats


def render_like_user(digit28: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Render an MNIST digit the way users photograph digits: an RGB picture.

    Dark ink (black, blue or pencil grey) on off-white paper; a canvas of
    160..320 x 140..260 pixels (larger when the digit needs it) with the
    digit off-centre and scaled up 3..6x; strokes made thinner or thicker (Pillow MinFilter / MaxFilter)
    as different pens would; rotated up to 10 degrees; a lighting gradient;
    Gaussian sensor noise; and a JPEG round trip at quality 50..95.  Every
    random choice comes from ``rng``, so a seed gives the same picture.

    ``digit28`` is an MNIST image (uint8 0..255 or float 0..1, white on black).
    """
    d = grey_floats(digit28)
    scale = float(rng.uniform(3.0, 6.0))
    side = int(round(MNIST_SIDE * scale))
    img = Image.fromarray(np.rint(d * 255.0).astype(np.uint8)).resize((side, side), Image.Resampling.BICUBIC)
    stroke = int(rng.integers(0, 4))  # 0 thinner, 1 as drawn, 2 thicker, 3 much thicker
    if stroke == 0:
        img = img.filter(ImageFilter.MinFilter(3))
    elif stroke >= 2:
        size = 3 if stroke == 2 else 2 * int(round(scale * 0.6)) + 1
        img = img.filter(ImageFilter.MaxFilter(size))
    img = img.rotate(float(rng.uniform(-10.0, 10.0)), Image.Resampling.BICUBIC, expand=True, fillcolor=0)
    alpha = np.asarray(img, dtype=np.float32) / 255.0

    width = max(int(rng.integers(160, 321)), img.width + 8)
    height = max(int(rng.integers(140, 261)), img.height + 8)
    x = int(rng.integers(2, width - img.width - 1))
    y = int(rng.integers(2, height - img.height - 1))
    cover = np.zeros((height, width), dtype=np.float32)
    cover[y : y + img.height, x : x + img.width] = alpha

    paper = np.array([rng.uniform(215, 250), rng.uniform(210, 245), rng.uniform(195, 240)], dtype=np.float32)
    inks = ([20, 20, 25], [25, 35, 110], [80, 80, 85])
    ink = np.array(inks[int(rng.integers(0, len(inks)))], dtype=np.float32) + rng.uniform(-10, 10, 3).astype(np.float32)
    light = _lighting(rng, height, width)
    rgb = (paper * (1.0 - cover[..., None]) + ink * cover[..., None]) * light[..., None]
    rgb += rng.normal(0.0, float(rng.uniform(2.0, 8.0)), rgb.shape).astype(np.float32)
    photo = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))
    return _jpeg_round_trip(photo, int(rng.integers(50, 96)))


def _lighting(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A light falling off by up to 15% across the picture, in a random direction: (height, width) factors."""
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (np.cos(angle) * xx / width + np.sin(angle) * yy / height).astype(np.float32)
    return 1.0 - float(rng.uniform(0.0, 0.15)) * (ramp - ramp.min()) / max(1e-6, float(np.ptp(ramp)))


def _jpeg_round_trip(photo: Image.Image, quality: int) -> Image.Image:
    """`photo` saved as JPEG at `quality` and read back, as a phone or a web upload leaves it."""
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as jpeg:
        return jpeg.convert("RGB")


# ---------------------------------------------------------------------------
# Real paper: ruled and squared pages, form boxes, touching digits, several rows

PAPER_KINDS = ("plain", "ruled", "squared")
"""The backgrounds :func:`render_on_paper` draws."""


@dataclass(frozen=True)
class PaperLayout:
    """How :func:`render_on_paper` lays out digits on a page (the benchmark's kinds are presets).

    ``paper``: one of :data:`PAPER_KINDS`; ``boxes``: a printed box around
    each digit (adjacent boxes share their walls, like a form's comb);
    ``touching``: neighbouring digits touch or overlap instead of standing
    apart.
    """

    paper: str = "plain"
    boxes: bool = False
    touching: bool = False


def _ink_alpha(digit28: np.ndarray, height: int, stroke: int) -> np.ndarray:
    """An MNIST digit scaled so that its ink is `height` pixels tall, cropped to its ink, as alpha 0..1.

    None is an empty place as wide as a digit (a form's box left blank).
    """
    if digit28 is None:
        return np.zeros((height, int(round(0.6 * height))), np.float32)
    d = grey_floats(digit28)
    d = crop_to_ink(d)
    scale = height / d.shape[0]
    size = (max(1, int(round(d.shape[1] * scale))), height)
    img = Image.fromarray(np.rint(d * 255).astype(np.uint8)).resize(size, Image.Resampling.BICUBIC)
    if stroke == 0:
        img = img.filter(ImageFilter.MinFilter(3))
    elif stroke == 2:
        img = img.filter(ImageFilter.MaxFilter(3))
    elif stroke == 3:
        img = img.filter(ImageFilter.MaxFilter(5))
    return np.asarray(img, dtype=np.float32) / 255.0


def render_on_paper(rows: list[list[np.ndarray | None]], rng: np.random.Generator,
                    layout: PaperLayout = PaperLayout()) -> tuple[Image.Image, list[list[tuple[int, int, int, int]]]]:
    """Render rows of MNIST digits as a photo of handwriting on real paper; also return each digit's box.

    Each row is a number written left to right, rows top to bottom.  Digits
    are 100..160 pixels tall (one height per picture, each digit 90..110% of
    it), in dark ink (black, blue or pencil grey) with the pen 3 px thinner
    to 4 px thicker.  The page is off-white, ruled (lines every 0.6..1.4
    digit heights, 1..4 px, light blue, grey, dark or red, faint or dark) or
    squared (a grid every 0.35..0.8 digit heights), optionally with a printed
    box around each digit (1..5 px walls, 1.05..1.5 digit heights, adjacent
    boxes sharing walls).  Neighbours stand 0.15..0.5 heights apart, or
    -0.15..0.02 (touching, overlapping) with ``layout.touching``.  Then the
    photo: the whole sheet turned up to 3 degrees, a lighting gradient,
    sensor noise and a JPEG round trip at quality 60..95.  An empty `rows`
    gives a page with its lines but no digit; a None in a row leaves that
    digit's place (and its box) blank.

    Boxes are ``(x0, y0, x1, y1)`` of each digit's ink before the turn, for
    debugging; the turn moves them by a few pixels at most near the centre.
    """
    height = int(rng.integers(100, 161))
    stroke = int(rng.integers(0, 4))
    alphas = [[_ink_alpha(d, int(round(height * rng.uniform(0.9, 1.1))), stroke) for d in row] for row in rows]
    box_side = height * rng.uniform(1.05, 1.5) if layout.boxes else 0.0
    margin = int(round(height * rng.uniform(0.4, 0.9)))
    row_pitch = int(round(max(box_side, height) * rng.uniform(1.5, 2.0)))

    # Lay the digits out: x positions per row, and the row's box walls.
    placed: list[list[tuple[int, int, np.ndarray]]] = []
    walls: list[tuple[int, int, list[int]]] = []  # (top, bottom, x of each wall) per row
    y_base = margin
    for row in alphas:
        x = margin
        cells, wall_x = [], [x]
        for a in row:
            h, w = a.shape
            if layout.boxes:
                side = int(round(box_side))
                left = x + (side - w) // 2 + int(rng.integers(-max(1, (side - w) // 4), max(1, (side - w) // 4) + 1))
                top = y_base + (side - h) // 2 + int(rng.integers(-max(1, (side - h) // 4), max(1, (side - h) // 4) + 1))
                cells.append((max(x, left), top, a))
                x += side
                wall_x.append(x)
            else:
                gap = height * (rng.uniform(-0.15, 0.02) if layout.touching else rng.uniform(0.15, 0.5))
                top = y_base + int(rng.integers(-height // 10, height // 10 + 1))
                cells.append((x, top, a))
                x += w + int(round(gap))
        placed.append(cells)
        if layout.boxes:
            walls.append((y_base, y_base + int(round(box_side)), wall_x))
        y_base += row_pitch
    width = max([margin * 2 + int(round(height * 3))] + [c[0] + c[2].shape[1] + margin for r in placed for c in r]
                + [w[2][-1] + margin for w in walls])
    page_h = max(margin * 2 + height, y_base - row_pitch + max(height, int(box_side)) + margin)
    page_h = max(page_h, int(rng.integers(140, 300)))
    width, page_h = int(width), int(page_h)

    ink_cover = np.zeros((page_h, width), np.float32)
    boxes_out: list[list[tuple[int, int, int, int]]] = []
    for cells in placed:
        row_boxes = []
        for x, y, a in cells:
            y = max(0, min(page_h - a.shape[0], y))
            region = ink_cover[y : y + a.shape[0], x : x + a.shape[1]]
            np.maximum(region, a[: region.shape[0], : region.shape[1]], out=region)
            row_boxes.append((x, y, x + a.shape[1], y + a.shape[0]))
        boxes_out.append(row_boxes)

    line_cover = np.zeros((page_h, width), np.float32)
    strength = float(rng.uniform(0.35, 1.0))  # faint .. dark
    if layout.paper == "ruled":
        pitch = height * rng.uniform(0.6, 1.4)
        thick = int(rng.integers(1, 5))
        for y in np.arange(rng.uniform(0, pitch), page_h, pitch):
            line_cover[int(y) : int(y) + thick, :] = strength
        if rng.random() < 0.3:  # the red margin of a notebook page
            x = int(rng.integers(2, max(3, margin // 2)))
            line_cover[:, x : x + thick] = strength
    elif layout.paper == "squared":
        pitch = height * rng.uniform(0.35, 0.8)
        thick = int(rng.integers(1, 3))
        offset = rng.uniform(0, pitch, 2)
        for y in np.arange(offset[0], page_h, pitch):
            line_cover[int(y) : int(y) + thick, :] = strength
        for x in np.arange(offset[1], width, pitch):
            line_cover[:, int(x) : int(x) + thick] = strength
    if layout.boxes:
        thick = int(rng.integers(1, 6))
        for top, bottom, wall_x in walls:
            x0, x1 = wall_x[0], wall_x[-1]
            line_cover[top : top + thick, x0 : x1 + thick] = 1.0
            line_cover[bottom : bottom + thick, x0 : x1 + thick] = 1.0
            for x in wall_x:
                line_cover[top : bottom + thick, x : x + thick] = 1.0

    paper = np.array([rng.uniform(215, 250), rng.uniform(210, 245), rng.uniform(195, 240)], np.float32)
    line_colours = ([120, 160, 220], [150, 150, 150], [70, 70, 80], [220, 90, 90], [120, 190, 150])
    line_rgb = np.array(line_colours[int(rng.integers(0, len(line_colours)))], np.float32)
    inks = ([20, 20, 25], [25, 35, 110], [80, 80, 85])
    ink = np.array(inks[int(rng.integers(0, len(inks)))], np.float32) + rng.uniform(-10, 10, 3).astype(np.float32)
    rgb = paper * (1 - line_cover[..., None]) + line_rgb * line_cover[..., None]
    rgb = rgb * (1 - ink_cover[..., None]) + ink * ink_cover[..., None]
    return _photograph(rgb, rng, max_turn=3.0), boxes_out


def _photograph(rgb: np.ndarray, rng: np.random.Generator, *, max_turn: float) -> Image.Image:
    """A sheet (float RGB 0..255) as a phone photo: turned, unevenly lit, noisy, JPEG-compressed."""
    height, width = rgb.shape[:2]
    sheet = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))
    fill = tuple(int(v) for v in np.median(np.asarray(sheet).reshape(-1, 3), axis=0))
    sheet = sheet.rotate(float(rng.uniform(-max_turn, max_turn)), Image.Resampling.BICUBIC, fillcolor=fill)
    # The turn leaves an interpolated seam along the border: the photo is framed inside the sheet.
    rim = 3
    sheet = sheet.crop((rim, rim, width - rim, height - rim))
    width, height = sheet.size
    # The light falls on the turned sheet (it is the camera's), so the corners the turn fills match.
    light = _lighting(rng, height, width)
    sheet = Image.fromarray(np.clip(np.rint(np.asarray(sheet, np.float32) * light[..., None]), 0, 255).astype(np.uint8))
    noisy = np.asarray(sheet, np.float32) + rng.normal(0.0, float(rng.uniform(2.0, 6.0)), (height, width, 3))
    photo = Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))
    return _jpeg_round_trip(photo, int(rng.integers(60, 96)))
