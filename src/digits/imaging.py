"""Turn users' pictures of handwritten digits into MNIST-style 28x28 arrays.

Models trained on MNIST only ever saw one kind of picture: a digit in white
ink on black, its grey levels stretched so that the stroke cores are near 1.0,
scaled so that its longer side is 20 pixels and placed in a 28x28 frame with
its centre of mass in the middle.  A photo of a digit on paper is nothing like
that, so every picture goes through the same steps NIST and LeCun used to make
MNIST before a model sees it:

1. :func:`load_image` reads any file Pillow can decode (:func:`decode_image`
   the same from bytes in memory, e.g. an HTTP upload), turns it upright
   (EXIF orientation), lays transparency on white paper and makes it grey.
2. :func:`find_ink` decides which side of the grey scale is ink, evens out
   uneven lighting, finds the paper level and the noise on it, and keeps the
   connected strokes that stand clearly above both (hysteresis thresholding:
   strokes must reach a high threshold somewhere and are then followed down
   to a low one, so anti-aliased grey edges survive but specks and paper
   texture do not).
3. :func:`to_mnist` crops the ink, scales it into a 20x20 box with
   anti-aliasing and centres its centre of mass in a 28x28 frame.  When there
   is no ink it raises :class:`NoDigitError` instead of returning a made-up
   digit, so a predictor can answer ``{"label": null, "reason": "no ink found"}``.
4. :func:`split_digits` cuts a picture of several digits into one
   :class:`Segment` per digit, left to right.

An input that already is an MNIST image (28x28, white on black) comes out
almost as it went in, because there is no paper to remove and the box and
centre of mass are already where MNIST put them.  Measured on the 10,000
MNIST test images: mean absolute difference 0.0010 per image (99th
percentile 0.0021); 36 images differ by more than 0.01, of which 21 moved by
one pixel (a centre of mass on a rounding tie), 12 lost a detached speck that
MNIST had kept, and 3 are digits MNIST cut at the frame's edge; a 3-nearest-
neighbour classifier gives the same label on 99.94% of them.

:func:`render_like_user` goes the other way, turning an MNIST digit into the
kind of photo users send, for tests and benchmarks.

Nothing here imports Keras, so this module stays quick to import and runs on
any backend.  SciPy (``scipy.ndimage``) is imported on first use, for
connected components and morphology.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageChops, ImageFilter, ImageOps, UnidentifiedImageError

from digits.errors import DigitsError

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "MNIST_SIZE",
    "InkReport",
    "ImageDecodeError",
    "NoDigitError",
    "Segment",
    "decode_image",
    "find_ink",
    "load_image",
    "render_like_user",
    "save_preprocessed",
    "split_digits",
    "to_mnist",
]

MNIST_SIZE = 28
"""Side of an MNIST image, in pixels."""
_BOX = 20
"""MNIST digits were scaled so that their longer side fits this box."""
_CENTRE = 14.0
"""Where MNIST put the centre of mass, in row/column index units (measured on
the 10,000 test images: mean 13.99 / 14.01, every image within 0.5 of 14)."""

NO_INK = "no ink found"
"""The reason :class:`NoDigitError` and :class:`InkReport` give for a blank picture."""

# Thresholds, all on the 0..1 ink scale (0 = paper, 1 = ink), after the paper
# level has been found.  Why each value:
_MIN_CONTRAST = 0.15
"""Ink must stand at least this far above the paper (about 38 grey levels).
Below it lie JPEG ringing, paper texture and mild shading; even a faint
pencil stroke on a phone photo is above it."""
_HIGH_NOISE = 5.0
"""...and at least this many noise deviations above it, so that noise alone
(a blank page photographed in dim light, random pixels) is never ink."""
_HIGH_PEAK = 0.35
"""...and at least this share of the strongest ink, so the grey halo of a
blurred stroke is not a stroke of its own."""
_LOW_NOISE = 3.0
"""Strokes are followed down to this many noise deviations above paper: the
anti-aliased edges a model expects are kept, the paper's grain is not."""
_LOW_HIGH = 0.25
"""...and down to no less than this share of the high threshold, so that a
stroke does not grow into faint shading or blur.  The one-pixel rim kept
around every stroke (see :func:`_ink_crop`) still holds the faintest edge."""
_INK_QUANTILE = 0.95
"""The ink level mapped to 1 is this quantile of the pixels above the high
threshold: MNIST's stroke cores sit at 0.98..1.0, and so do a photo's after
the stretch, while a few saturated outliers cannot set the scale alone."""
_SPECK_SHARE = 0.02
"""A component with less high-ink than this share of the largest one is a speck."""
_MIN_DIGIT_SIDE = 0.03
"""Ink whose bounding box is shorter than this share of the picture's longer
side is dust, not a digit."""
_MIN_DIGIT_PIXELS = 8
"""...and so is ink shorter than this many pixels: MNIST digits are 20 pixels
tall, and a digit a few pixels tall cannot be read anyway."""
_CLUTTER_SPAN = 0.8
"""Ink touching the edge and spanning this share of the picture is clutter (see :func:`_is_clutter`)."""
_FLATTEN_MIN_SIDE = 64
"""Pictures smaller than this (MNIST arrays, thumbnails) have no lighting to even out."""
_FLATTEN_GRID = 64
"""Lighting is estimated on a grid of about this many cells along the longer side."""
_FLATTEN_WINDOW = 0.25
"""Anything narrower than this share of the picture is ink, not lighting."""
_FLATTEN_MIN_RANGE = 0.04
"""Lighting that varies by less than this (about 10 grey levels) is left alone."""


class NoDigitError(DigitsError):
    """The picture holds no ink that could be a digit (blank page, only noise).

    Raised by :func:`to_mnist`.  ``reason`` is a short phrase meant for output
    such as ``{"label": null, "reason": err.reason}``; it does not name a file,
    since arrays have none, so a caller that has a path should put it in front.
    """

    def __init__(self, reason: str = NO_INK):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class InkReport:
    """What :func:`find_ink` saw in a picture.

    ``found`` is False when there is nothing a model should be asked about;
    ``reason`` then says why (``"no ink found"``).  The other fields explain
    the decision and help debugging: ``box`` is the digit's bounding box
    ``(x0, y0, x1, y1)`` in input pixels (x1, y1 exclusive, as in
    ``PIL.Image.crop``), ``inverted`` is True when the input was dark ink on
    light paper, ``paper`` / ``ink`` are the paper and ink levels and
    ``noise`` the paper's noise (standard deviation), all on the 0..1 ink
    scale after lighting was evened out, and ``ink_fraction`` is the share of
    pixels that are ink.
    """

    found: bool
    reason: str | None
    box: tuple[int, int, int, int] | None
    inverted: bool
    paper: float
    ink: float
    noise: float
    ink_fraction: float

    @property
    def contrast(self) -> float:
        """How far the ink stands above the paper (0 when nothing was found)."""
        return max(0.0, self.ink - self.paper)


@dataclass(frozen=True)
class Segment:
    """One digit cut out of a picture by :func:`split_digits`.

    ``box`` is ``(x0, y0, x1, y1)`` in the picture's pixels (x1, y1
    exclusive).  ``image`` is that digit alone, white ink on black with the
    other digits' ink and the noise removed, padded to a square with a margin:
    pass it to :func:`to_mnist`, or save it to see what the model was shown.
    """

    box: tuple[int, int, int, int]
    image: Image.Image


# ---------------------------------------------------------------------------
# Reading files


class ImageDecodeError(DigitsError):
    """A file or upload that cannot be read as an image (raised by :func:`load_image`
    and :func:`decode_image`).

    ``kind`` says why, for callers that answer differently (the HTTP API's
    status codes): ``"unreadable"`` (missing path, directory, permissions),
    ``"empty"`` (0 bytes), ``"not_image"`` (nothing Pillow recognizes),
    ``"corrupt"`` (truncated or damaged data) or ``"too_large"`` (more pixels
    than allowed: a decompression bomb).
    """

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Read an image file as an upright greyscale ("L") picture on white paper.

    Accepts anything Pillow decodes (PNG, JPEG, BMP, GIF, TIFF, WebP, ...) in
    any mode.  Animated files give their first frame.  The EXIF orientation is
    applied because phones store photos sideways and say so only in that tag.
    Transparent pixels become white paper, because drawing apps export
    strokes on a transparent background, which must not read as black ink.

    Raises :class:`ImageDecodeError` (a DigitsError), with one line naming the
    path, for a missing or unreadable path, a directory, an empty file, a file
    that is not an image, a truncated or corrupt image, and one whose pixel
    count exceeds Pillow's ``Image.MAX_IMAGE_PIXELS`` (a decompression bomb: a
    small file that would fill the memory when decoded).
    """
    p = Path(path)
    try:
        if p.is_dir():
            raise ImageDecodeError(f"{p}: is a directory, not an image file", "unreadable")
        size = p.stat().st_size
    except FileNotFoundError:
        raise ImageDecodeError(f"{p}: no such file", "unreadable") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise ImageDecodeError(f"{p}: cannot read: {getattr(exc, 'strerror', None) or exc}", "unreadable") from None
    if size == 0:
        raise ImageDecodeError(f"{p}: is empty (0 bytes), not an image", "empty")
    return _decode(p, str(p))


def decode_image(data: bytes, name: str = "upload", *, max_pixels: int | None = None) -> Image.Image:
    """Decode an image held in memory (an HTTP upload) exactly as :func:`load_image` reads a file.

    The same formats, orientation, transparency and checks, with the same
    one-line :class:`ImageDecodeError` messages naming `name` instead of a
    path.  What the bytes are is decided by decoding them, never by a
    declared content type or file name.  `max_pixels` lowers the
    decompression-bomb limit below Pillow's ``Image.MAX_IMAGE_PIXELS`` (a
    server may want a tighter bound than a command-line tool).
    """
    if not data:
        raise ImageDecodeError(f"{name}: is empty (0 bytes), not an image", "empty")
    return _decode(io.BytesIO(data), name, max_pixels)


def _decode(source: Path | io.BytesIO, name: str, max_pixels: int | None = None) -> Image.Image:
    """Open, check and fully decode `source`; the shared body of load_image and decode_image."""
    limit = Image.MAX_IMAGE_PIXELS
    if max_pixels is not None:
        limit = max_pixels if limit is None else min(limit, max_pixels)
    try:
        with warnings.catch_warnings():
            # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that;
            # both must be refused, so the warning is turned into an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                # The filter above is process-wide state that another thread
                # may be changing; this check is not.
                if limit is not None and img.width * img.height > limit:
                    raise Image.DecompressionBombError(f"{img.width}x{img.height} pixels")
                img.seek(0)
                img.load()  # decode every byte now: truncation shows up here
                upright = ImageOps.exif_transpose(img)
                return _pil_to_l(upright)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageDecodeError(
            f"{name}: image is too large to decode safely (over {limit} pixels)", "too_large"
        ) from None
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{name}: not an image file Pillow can read", "not_image") from None
    except PermissionError:
        raise ImageDecodeError(f"{name}: cannot read: permission denied", "unreadable") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError) as exc:
        # Pillow's decoders report damaged data with any of these.
        raise ImageDecodeError(
            f"{name}: truncated or corrupt image ({type(exc).__name__}: {exc})", "corrupt"
        ) from None


def _pil_to_l(img: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit greyscale, transparency laid on white."""
    mode = img.mode
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        # High bit depths: Pillow's own convert("L") clips at 255 instead of
        # scaling, which turns a 16-bit photo white.
        a = np.asarray(img, dtype=np.float64)
        top = float(a.max()) if a.size else 0.0
        if mode.startswith("I;16"):
            scale = 65535.0
        elif mode == "F" and top <= 1.0:
            scale = 1.0
        else:
            scale = 255.0 if top <= 255 else 65535.0 if top <= 65535 else top
        return Image.fromarray(np.rint(np.clip(a / scale, 0.0, 1.0) * 255).astype(np.uint8))
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB", "1") and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, rgba).convert("L")
    if mode == "L":
        return img.copy()
    if mode in ("1", "P", "RGB", "RGBX", "CMYK", "YCbCr"):
        return img.convert("L")
    return img.convert("RGB").convert("L")  # LAB, HSV and other rarities


# ---------------------------------------------------------------------------
# Pixels as numbers


def _gray(image: Image.Image | np.ndarray) -> NDArray[np.float32]:
    """A picture or array as float32 greyscale in [0, 1], keeping its polarity.

    Arrays may be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); uint8 and other
    integers are read as 0..255 (0..65535 when larger values occur), floats
    as 0..1 (0..255 when larger values occur), booleans as 0/1.  An alpha
    channel is laid on white, as in :func:`load_image`.
    """
    if isinstance(image, Image.Image):
        return np.asarray(_pil_to_l(image), dtype=np.float32) / 255.0
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        if a.shape[2] == 1:
            a = a[:, :, 0]
        else:
            rgba = _gray_values(a, "array")
            luma = rgba[:, :, 0] * 0.299 + rgba[:, :, 1] * 0.587 + rgba[:, :, 2] * 0.114
            if rgba.shape[2] == 4:
                alpha = rgba[:, :, 3]
                luma = luma * alpha + (1.0 - alpha)
            return luma.astype(np.float32)
    if a.ndim != 2:
        raise DigitsError(f"image array has shape {a.shape}; expected (height, width) or (height, width, 1|3|4)")
    return _gray_values(a, "array").astype(np.float32)


def _gray_values(a: np.ndarray, what: str) -> NDArray[np.float32]:
    """Scale raw pixel values of any dtype to [0, 1] (see :func:`_gray`)."""
    if a.size == 0 or min(a.shape[:2]) == 0:
        raise DigitsError(f"image {what} is empty (shape {a.shape})")
    if a.dtype == bool:
        return a.astype(np.float32)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise DigitsError(f"image {what} has dtype {a.dtype}; expected numbers")
    f = a.astype(np.float32)
    if not np.isfinite(f).all():
        raise DigitsError(f"image {what} holds NaN or infinite values")
    lo, hi = float(f.min()), float(f.max())
    if lo < 0:
        raise DigitsError(f"image {what} has negative values (min {lo:g}); expected 0..1 or 0..255")
    if np.issubdtype(a.dtype, np.floating):
        scale = 1.0 if hi <= 1.0 else 255.0 if hi <= 255.0 else None
    else:
        scale = 255.0 if hi <= 255 else 65535.0 if hi <= 65535 else None
    if scale is None:
        raise DigitsError(f"image {what} has values up to {hi:g}; expected 0..1 or 0..255")
    return f / np.float32(scale) if scale != 1.0 else f


def _bytes(image: Image.Image | np.ndarray) -> NDArray[np.uint8]:
    """A picture as 0..255 greyscale bytes (see :func:`_gray` for what is accepted).

    The analysis runs on bytes: Pillow's histogram, reduce and subtract are
    then C loops over one byte a pixel, and the input had no finer levels
    anyway (MNIST, PNG and JPEG are 8-bit).
    """
    if isinstance(image, Image.Image):
        return np.asarray(_pil_to_l(image))
    return _to_bytes(_gray(image))


def _quantile_from_hist(hist: np.ndarray, q: float) -> int:
    """The q-quantile (as a bin index) of a histogram: a median in O(bins)."""
    cum = np.cumsum(hist)
    return int(np.searchsorted(cum, q * cum[-1], side="left"))


def _to_bytes(a: NDArray[np.float32]) -> NDArray[np.uint8]:
    """A [0, 1] image as 0..255 bytes, for Pillow's fast histogram and filters."""
    return (a * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def _histogram(q: NDArray[np.uint8]) -> NDArray[np.int64]:
    return np.asarray(Image.fromarray(q).histogram(), dtype=np.int64)


def _median(q: NDArray[np.uint8]) -> float:
    """Median of a byte image in [0, 1], from Pillow's histogram (far quicker than np.median)."""
    return _quantile_from_hist(_histogram(q), 0.5) / 255.0


def _otsu(hist: NDArray[np.int64]) -> int:
    """Otsu's threshold: the last level of the lower of the two classes that
    best split a histogram (the top level when there is only one class)."""
    levels = np.arange(hist.size, dtype=np.float64)
    weight = np.cumsum(hist).astype(np.float64)
    total = weight[-1]
    mass = np.cumsum(hist * levels)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mass[-1] * weight / total - mass) ** 2 / (weight * (total - weight))
    between = np.nan_to_num(between, nan=0.0, posinf=0.0)
    return int(np.argmax(between)) if between.max() > 0 else hist.size - 1


def _paper_and_noise(q: NDArray[np.uint8]) -> tuple[float, float]:
    """Paper level and the noise on it (a standard deviation), for a byte image with ink high.

    The paper is the most common level among the darker of Otsu's two
    classes, so neither a thin digit on a big photo nor a bold one filling
    40% of a tight crop moves it.  The noise is the larger of two robust
    estimates: 1.4826 x the median deviation of the pixels *below* the paper
    level (the side ink never reaches, so it sees paper grain and texture
    however much ink there is), and the same measure on differences of
    neighbouring pixels over sqrt(2) (which sees fine-grained noise however
    the histogram looks, e.g. pure random pixels).  Both are 0 for a clean
    synthetic picture such as an MNIST array.
    """
    hist = _histogram(q)
    # The peak of a lightly smoothed histogram (JPEG leaves gaps between
    # levels), then the exact most common level next to it.
    smooth = np.convolve(hist, np.ones(5), mode="same")
    peak = int(np.argmax(smooth[: _otsu(hist) + 1]))
    paper = max(0, peak - 2) + int(np.argmax(hist[max(0, peak - 2) : peak + 3]))
    below = hist[: paper + 1][::-1]  # histogram of paper - level, for levels at or below the paper
    noise = 1.4826 * _quantile_from_hist(below, 0.5)
    img = Image.fromarray(q)
    w, h = img.size
    if w >= 2:
        diff = ImageChops.difference(img.crop((1, 0, w, h)), img.crop((0, 0, w - 1, h)))
        noise = max(noise, 1.4826 * _quantile_from_hist(_histogram(np.asarray(diff)), 0.5) / np.sqrt(2.0))
    return paper / 255.0, noise / 255.0


# ---------------------------------------------------------------------------
# Finding the ink


@dataclass
class _Ink:
    """Everything the public functions need from one analysis of a picture."""

    v: NDArray[np.float32]  # ink scale: paper low, ink high, lighting evened out
    labels: np.ndarray  # connected components of the low-threshold mask
    n_labels: int
    boxes: list[tuple[int, int, int, int]]  # kept components: (x0, y0, x1, y1)
    ids: list[int]  # their labels
    mass: list[int]  # their high-threshold pixel counts
    low: float  # value mapped to 0 in the output (paper + noise)
    high: float  # value mapped to 1 (typical stroke core)
    paper: float
    noise: float
    inverted: bool


def _analyze(image: Image.Image | np.ndarray) -> _Ink:
    """Polarity, lighting, paper level, noise, thresholds and ink components."""
    from scipy import ndimage

    q = _bytes(image)
    h, w = q.shape
    # Polarity.  Paper is the majority of the pixels, so the median is the
    # paper level; ink is whatever lies far from it.  Compare how far the
    # darkest and the brightest spots reach from the paper, after 2x2
    # averaging so single noisy pixels do not count.  Extremes, not averages,
    # so that a thin digit covering 0.1% of a photo still decides, and
    # vignetting or a shadow (a large but shallow deviation) does not.
    med = _median(q)
    smooth = Image.fromarray(q)
    if min(h, w) >= 4:
        smooth = smooth.reduce(2)
    darkest, brightest = (e / 255.0 for e in smooth.getextrema())
    inverted = (med - darkest) > (brightest - med)
    peak = (med - darkest) if inverted else (brightest - med)
    if inverted:
        q = 255 - q
    q = _even_lighting(q)
    v = q.astype(np.float32) * np.float32(1.0 / 255.0)

    # Thresholds (see the module constants): a component is ink when it
    # reaches t_high somewhere; it extends over its pixels above t_low.
    paper, noise = _paper_and_noise(q)
    t_high = paper + max(_MIN_CONTRAST, _HIGH_NOISE * noise, _HIGH_PEAK * peak)
    t_low = paper + max(_LOW_NOISE * noise, _LOW_HIGH * (t_high - paper))
    low = paper + _LOW_NOISE * noise
    empty = _Ink(v, np.zeros((h, w), np.int32), 0, [], [], [], low, 1.0, paper, noise, inverted)
    high_mask = v > t_high
    if not high_mask.any():
        return empty
    labels, n = ndimage.label(v > t_low, structure=np.ones((3, 3), dtype=bool))
    mass = np.bincount(labels[high_mask], minlength=n + 1)
    mass[0] = 0
    slices = ndimage.find_objects(labels)

    def box_of(i: int) -> tuple[int, int, int, int]:
        rows, cols = slices[i - 1]
        return cols.start, rows.start, cols.stop, rows.stop

    candidates = {int(i): box_of(int(i)) for i in np.flatnonzero(mass)}
    clutter = [i for i, box in candidates.items() if _is_clutter(box, (h, w))]
    if clutter and any(_is_digit_sized(box, (h, w)) for i, box in candidates.items() if i not in clutter):
        mass[clutter] = 0
    keep = np.flatnonzero(mass >= max(1, _SPECK_SHARE * mass.max()))
    boxes = [candidates[int(i)] for i in keep]
    kept_high = v[high_mask & _lookup(n, keep)[labels]] if len(keep) < n else v[high_mask]
    ink_level = float(np.quantile(kept_high, _INK_QUANTILE))
    return _Ink(
        v=v,
        labels=labels,
        n_labels=n,
        boxes=boxes,
        ids=[int(i) for i in keep],
        mass=[int(mass[i]) for i in keep],
        low=low,
        high=max(ink_level, low + 1e-3),
        paper=paper,
        noise=noise,
        inverted=inverted,
    )


def _lookup(n: int, ids: list[int] | np.ndarray) -> NDArray[np.bool_]:
    """A table label -> bool, True for ids: indexing it with a label image is a fast isin."""
    table = np.zeros(n + 1, dtype=bool)
    table[np.asarray(ids, dtype=np.intp)] = True
    return table


def _even_lighting(q: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Subtract slow variations of the paper (shadows, vignetting, gradients).

    Photos are lit unevenly, so a single paper level would call a shadowed
    corner ink.  The paper is estimated on a coarse grid holding the minimum
    of each cell (paper is the low side of the ink scale) in two ways, each
    of which follows the paper from below, and the higher one is used: a grey
    opening over a quarter of the picture, which removes everything narrower
    (strokes) and keeps shadows with sharp edges; and a smooth cubic surface
    fitted to the cells with the strokes left out, which follows vignetting
    and gradients into the corners, where the opening falls short.  Small
    pictures and evenly lit ones are returned unchanged, so MNIST arrays and
    clean scans pass through exactly.  Works on bytes (ink high), which is
    fast and as precise as the picture.
    """
    from scipy import ndimage

    h, w = q.shape
    if min(h, w) < _FLATTEN_MIN_SIDE:
        return q
    cell = max(1, max(h, w) // _FLATTEN_GRID)
    gh, gw = h // cell, w // cell
    grid = q[: gh * cell, : gw * cell].reshape(gh, cell, gw, cell).min(axis=(1, 3)).astype(np.float32)
    k = max(3, int(round(_FLATTEN_WINDOW * max(gh, gw))) | 1)
    opened = ndimage.grey_opening(grid, size=(k, k), mode="nearest")
    lighting = np.maximum(opened, _paper_surface(grid))
    lighting = ndimage.uniform_filter(lighting, size=3, mode="nearest")
    lighting -= lighting.min()
    if float(lighting.max()) < _FLATTEN_MIN_RANGE * 255.0:
        return q
    full = Image.fromarray(np.rint(np.clip(lighting, 0, 255)).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(ImageChops.subtract(Image.fromarray(q), full))


def _paper_surface(grid: NDArray[np.float32]) -> NDArray[np.float32]:
    """A cubic surface through the paper cells of a grid (ink high), ignoring the ink.

    Starts from the darker half of the cells, which is paper in any picture
    of a digit, and refits a few times on the cells that lie near or below
    the surface: strokes are bright outliers and drop out.
    """
    gh, gw = grid.shape
    y, x = np.mgrid[0:gh, 0:gw].astype(np.float32)
    x = 2.0 * x / max(1, gw - 1) - 1.0
    y = 2.0 * y / max(1, gh - 1) - 1.0
    terms = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y, x**3, x * x * y, x * y * y, y**3])
    terms = terms.reshape(10, -1).T.astype(np.float64)
    values = grid.ravel().astype(np.float64)
    use = values <= np.median(values)
    fit = np.zeros_like(values)
    for _ in range(4):
        if use.sum() < terms.shape[1]:
            break
        a = terms[use]
        # Normal equations: a 10x10 solve, far quicker than lstsq's SVD here.
        coef = np.linalg.solve(a.T @ a + 1e-6 * np.eye(a.shape[1]), a.T @ values[use])
        fit = terms @ coef
        residual = values - fit
        tolerance = max(2.0, 2.5 * 1.4826 * float(np.median(np.abs(residual[use]))))
        use = residual < tolerance
    return fit.reshape(gh, gw).astype(np.float32)


def _gap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Distance in pixels between two boxes (0 when they touch or overlap)."""
    dx = max(0, max(a[0], b[0]) - min(a[2], b[2]))
    dy = max(0, max(a[1], b[1]) - min(a[3], b[3]))
    return float(np.hypot(dx, dy))


def _union(boxes: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _main_digit(ink: _Ink) -> list[int]:
    """Indices (into ink.boxes) of the digit: the biggest stroke and what lies near it.

    Starting from the component with the most ink, grow by any component
    closer than half the digit's size: that keeps the detached pieces of a
    broken stroke and drops a stray mark or the edge of the sheet far away.
    """
    order = sorted(range(len(ink.boxes)), key=lambda i: -ink.mass[i])
    chosen = [order[0]]
    rest = order[1:]
    grew = True
    while grew and rest:
        grew = False
        box = _union([ink.boxes[i] for i in chosen])
        reach = 0.5 * max(box[2] - box[0], box[3] - box[1])
        for i in list(rest):
            if _gap(box, ink.boxes[i]) <= reach:
                chosen.append(i)
                rest.remove(i)
                grew = True
    return chosen


def _is_clutter(box: tuple[int, int, int, int], shape: tuple[int, int]) -> bool:
    """Ink that touches the picture's edge and runs along most of it.

    The edge of a desk around the sheet, a ruled line, a finger or the
    border of a scan: in a photo the digit lies inside the frame.  Such
    components are ignored when some other ink could be the digit; when
    nothing else is there (a crop tighter than the digit), they are kept.
    """
    h, w = shape
    x0, y0, x1, y1 = box
    touches = x0 == 0 or y0 == 0 or x1 == w or y1 == h
    return touches and (x1 - x0 >= _CLUTTER_SPAN * w or y1 - y0 >= _CLUTTER_SPAN * h)


def _is_digit_sized(box: tuple[int, int, int, int], shape: tuple[int, int]) -> bool:
    side = max(box[2] - box[0], box[3] - box[1])
    return side >= max(_MIN_DIGIT_PIXELS, _MIN_DIGIT_SIDE * max(shape))


def _report(ink: _Ink, chosen: list[int] | None) -> InkReport:
    if not chosen:
        return InkReport(False, NO_INK, None, ink.inverted, ink.paper, ink.paper, ink.noise, 0.0)
    box = _union([ink.boxes[i] for i in chosen])
    fraction = sum(ink.mass[i] for i in chosen) / ink.v.size
    return InkReport(True, None, box, ink.inverted, ink.paper, ink.high, ink.noise, fraction)


def _find(image: Image.Image | np.ndarray) -> tuple[_Ink, list[int] | None]:
    ink = _analyze(image)
    if not ink.boxes:
        return ink, None
    chosen = _main_digit(ink)
    if not _is_digit_sized(_union([ink.boxes[i] for i in chosen]), ink.v.shape):
        return ink, None
    return ink, chosen


def find_ink(image: Image.Image | np.ndarray) -> InkReport:
    """Say whether a picture holds a digit, and where.

    Use it to check a picture without converting it; :func:`to_mnist` does
    the same analysis and raises :class:`NoDigitError` when ``found`` would be
    False.  A blank or evenly lit page, pure noise, JPEG artefacts and dust
    are "no ink"; see the module constants for the thresholds and why.
    """
    return _report(*_find(image))


def _ink_crop(ink: _Ink, chosen: list[int], box: tuple[int, int, int, int]) -> NDArray[np.float32]:
    """The normalized ink of the chosen components inside box (0 paper .. 1 ink).

    Contrast is stretched so paper-plus-noise maps to 0 and a typical stroke
    core to 1, like MNIST's saturated strokes; values in between stay grey.
    Only the chosen components and a one-pixel rim around them (the faintest
    anti-aliased edge) are kept, so specks and other digits vanish.
    """
    from scipy import ndimage

    x0, y0, x1, y1 = box
    labels = ink.labels[y0:y1, x0:x1]
    ours = _lookup(ink.n_labels, [ink.ids[i] for i in chosen])
    mine = ndimage.binary_dilation(ours[labels], structure=np.ones((3, 3), dtype=bool))
    # Keep a pixel of the rim only where it does not belong to another component.
    ours[0] = True
    mine &= ours[labels]
    values = (ink.v[y0:y1, x0:x1] - ink.low) / (ink.high - ink.low)
    return np.where(mine, np.clip(values, 0.0, 1.0), 0.0).astype(np.float32)


def _ink_box(ink: _Ink, chosen: list[int]) -> tuple[int, int, int, int]:
    """Union box of the chosen components grown by the one-pixel rim, clipped to the picture."""
    x0, y0, x1, y1 = _union([ink.boxes[i] for i in chosen])
    h, w = ink.v.shape
    return max(0, x0 - 1), max(0, y0 - 1), min(w, x1 + 1), min(h, y1 + 1)


def _frame(patch: NDArray[np.float32]) -> NDArray[np.float32]:
    """Scale ink into the 20x20 box and centre its mass in 28x28, as MNIST was made.

    The longer side becomes 20 pixels and the aspect ratio is kept.  Pillow
    resizes float images with a proper anti-aliasing filter: BOX (area
    averaging) when shrinking, which never overshoots, and LANCZOS when
    enlarging a tiny digit, whose ringing is clipped.  Then the image is
    shifted by whole pixels so that its centre of mass lands on (14, 14).
    """
    ys, xs = np.nonzero(patch)
    if ys.size == 0:
        return np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.float32)
    patch = patch[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = patch.shape
    side = max(h, w)
    if side != _BOX:
        size = (max(1, int(round(w * _BOX / side))), max(1, int(round(h * _BOX / side))))
        method = Image.Resampling.BOX if side > _BOX else Image.Resampling.LANCZOS
        patch = np.clip(np.asarray(Image.fromarray(patch).resize(size, method)), 0.0, 1.0)
        h, w = patch.shape
    total = float(patch.sum())
    if total <= 0:
        return np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.float32)
    cy = float(patch.sum(axis=1) @ np.arange(h)) / total
    cx = float(patch.sum(axis=0) @ np.arange(w)) / total
    top = int(np.floor(_CENTRE - cy + 0.5))
    left = int(np.floor(_CENTRE - cx + 0.5))
    out = np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.float32)
    oy0, ox0 = max(0, top), max(0, left)
    oy1, ox1 = min(MNIST_SIZE, top + h), min(MNIST_SIZE, left + w)
    out[oy0:oy1, ox0:ox1] = patch[oy0 - top : oy1 - top, ox0 - left : ox1 - left]
    return out


def to_mnist(image: Image.Image | np.ndarray) -> NDArray[np.float32]:
    """A picture of one digit as a float32 (28, 28) MNIST image in [0, 1], white on black.

    Steps, each because MNIST was made that way or because photos need it:
    greyscale; polarity (dark ink on light paper is inverted, decided from
    which side of the paper level the strongest marks lie); uneven lighting
    evened out; paper level and noise measured, contrast stretched so paper
    is 0 and stroke cores 1 with grey edges kept (not binarized); specks,
    stray marks and noise removed; the digit cropped, its longer side scaled
    to 20 pixels with anti-aliasing, and its centre of mass put at (14, 14).

    Accepts a Pillow image in any mode or an array (see :func:`_gray` for the
    accepted shapes and dtypes).  An MNIST image comes back as it was, to
    within rounding.  A picture of several digits is squeezed into one; use
    :func:`split_digits` for those.

    Raises NoDigitError (a DigitsError) when there is no ink: blank page,
    noise, dust.  DigitsError for arrays of the wrong shape or values.
    """
    ink, chosen = _find(image)
    if not chosen:
        raise NoDigitError(NO_INK)
    box = _ink_box(ink, chosen)
    return _frame(_ink_crop(ink, chosen, box))


# ---------------------------------------------------------------------------
# Several digits


def _groups(ink: _Ink) -> list[list[int]]:
    """Group ink components into digits.

    A handwritten digit often falls apart into pieces (a pen lifted, a faint
    joint).  Pieces belong together when their x-ranges overlap by at least
    half the narrower one's width and they are vertically close (pieces of
    one digit stack, neighbouring digits stand side by side), or when a piece
    is small (under half the typical digit's height) and lies near a bigger
    group.  Small groups near nothing are dropped as noise.
    """
    n = len(ink.boxes)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        parent[root(i)] = root(j)

    b = ink.boxes
    for i in range(n):
        for j in range(i + 1, n):
            overlap = min(b[i][2], b[j][2]) - max(b[i][0], b[j][0])
            narrower = min(b[i][2] - b[i][0], b[j][2] - b[j][0])
            taller = max(b[i][3] - b[i][1], b[j][3] - b[j][1])
            vgap = max(b[i][1], b[j][1]) - min(b[i][3], b[j][3])
            if overlap >= 0.5 * narrower and vgap <= 0.5 * taller:
                join(i, j)

    def collect() -> list[list[int]]:
        found: dict[int, list[int]] = {}
        for i in range(n):
            found.setdefault(root(i), []).append(i)
        return list(found.values())

    groups = collect()
    heights = [(_union([b[i] for i in g])[3] - _union([b[i] for i in g])[1]) for g in groups]
    typical = float(np.median(heights))
    small = [g for g, hgt in zip(groups, heights) if hgt < 0.5 * typical]
    big = [g for g, hgt in zip(groups, heights) if hgt >= 0.5 * typical]
    for g in small:
        box = _union([b[i] for i in g])
        if not big:
            break
        nearest = min(big, key=lambda other: _gap(box, _union([b[i] for i in other])))
        other_box = _union([b[i] for i in nearest])
        if _gap(box, other_box) <= 0.3 * (other_box[3] - other_box[1]):
            join(g[0], nearest[0])
    groups = collect()
    keep = []
    for g in groups:
        box = _union([b[i] for i in g])
        if (box[3] - box[1]) >= 0.3 * typical or (box[2] - box[0]) >= 0.3 * typical:
            keep.append(g)
    return sorted(keep, key=lambda g: _union([b[i] for i in g])[0])


def split_digits(image: Image.Image | np.ndarray) -> list[Segment]:
    """Cut a picture of a row of digits into one :class:`Segment` per digit, left to right.

    Uses the same ink analysis as :func:`to_mnist`, then connected components
    of the ink, grouped into digits (see :func:`_groups`: broken strokes are
    put back together, specks dropped).  Returns an empty list when there is
    no ink.  Digits that touch each other come out as one segment; digits on
    several lines are not supported (pieces stacked vertically are merged).
    """
    ink = _analyze(image)
    if not ink.boxes:
        return []
    segments = []
    for group in _groups(ink):
        box = _union([ink.boxes[i] for i in group])
        if not _is_digit_sized(box, ink.v.shape):
            continue
        patch = _ink_crop(ink, group, _ink_box(ink, group))
        segments.append(Segment(box=box, image=_pad_square(patch)))
    return segments


def _pad_square(patch: NDArray[np.float32]) -> Image.Image:
    """Centre ink on a black square with a margin, so the crop is mostly paper
    (to_mnist reads the majority of a picture as paper)."""
    h, w = patch.shape
    side = int(round(max(h, w) * 1.4)) + 2
    out = np.zeros((side, side), dtype=np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = patch
    return Image.fromarray(np.rint(out * 255.0).astype(np.uint8))


# ---------------------------------------------------------------------------
# Writing


def save_preprocessed(array: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write a 28x28 array in [0, 1] (as from :func:`to_mnist`) as an 8-bit PNG.

    Written to a temporary file in the same folder and renamed into place, so
    a reader never sees half a file and an interrupted run leaves no
    truncated PNG behind.  Raises DigitsError naming the path when the folder
    is missing or not writable; ValueError for an array that is not 28x28.
    """
    a = np.asarray(array, dtype=np.float32)
    if a.shape != (MNIST_SIZE, MNIST_SIZE):
        raise ValueError(f"expected a ({MNIST_SIZE}, {MNIST_SIZE}) array, got shape {a.shape}")
    img = Image.fromarray(np.rint(np.clip(np.nan_to_num(a), 0.0, 1.0) * 255.0).astype(np.uint8))
    target = Path(path)
    # A unique name opened with "x" (not mkstemp, whose files are private to
    # the owner): the PNG gets the same permissions as any file written here.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            img.save(f, format="PNG")
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise DigitsError(f"{target}: cannot write: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------------
# Making user-like pictures from MNIST digits


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
    d = _gray(digit28)
    scale = float(rng.uniform(3.0, 6.0))
    side = int(round(MNIST_SIZE * scale))
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
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (np.cos(angle) * xx / width + np.sin(angle) * yy / height).astype(np.float32)
    light = 1.0 - float(rng.uniform(0.0, 0.15)) * (ramp - ramp.min()) / max(1e-6, float(np.ptp(ramp)))
    rgb = (paper * (1.0 - cover[..., None]) + ink * cover[..., None]) * light[..., None]
    rgb += rng.normal(0.0, float(rng.uniform(2.0, 8.0)), rgb.shape).astype(np.float32)
    photo = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", quality=int(rng.integers(50, 96)))
    buf.seek(0)
    with Image.open(buf) as jpeg:
        return jpeg.convert("RGB")
