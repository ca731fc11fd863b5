"""Reading pictures: image files and uploaded bytes as upright greyscale, arrays as grey levels.

:func:`load_image` reads an image file in one of :data:`ACCEPTED_FORMATS`
(:func:`decode_image` the same from bytes in memory, e.g. an HTTP upload),
turns it upright (EXIF orientation), lays transparency on white paper and
makes it grey.
:func:`grey_floats` and :func:`grey_bytes` turn a Pillow image or an array of
any accepted shape and dtype into grey levels, which is what the rest of
:mod:`digits.vision` works on.  :func:`save_preprocessed` writes what a model
saw back out as a PNG.
"""

from __future__ import annotations

import io
import math
import os
import stat
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digits import files
from digits.datasets.arrays import MNIST_SIDE
from digits.errors import DigitsError

if TYPE_CHECKING:
    from numpy.typing import NDArray


OPEN_FORMATS = ("PNG", "JPEG", "BMP", "DIB", "GIF", "TIFF", "WEBP", "PPM")
"""The Pillow decoders a file or upload is ever handed to: the formats Digits
documents (PNG, JPEG, BMP, GIF, TIFF, WebP) and PBM/PGM/PPM, which
:data:`digits.inference.IMAGE_SUFFIXES` takes from folders (DIB is BMP without
its file header).  Pillow's other decoders are never tried, because several
of them fail on damaged data with exceptions of their own, and some (EPS,
through Ghostscript) run external programs on what they read."""

ACCEPTED_FORMATS = frozenset(OPEN_FORMATS) | {"MPO"}
"""``Image.format`` values accepted after decoding: MPO is the JPEG decoder's
name for a phone's multi-picture JPEG."""

_FORMAT_NAMES = "PNG, JPEG, BMP, GIF, TIFF, WebP or PBM/PGM/PPM"


class ImageDecodeError(DigitsError):
    """A file or upload that cannot be read as an image (raised by :func:`load_image`
    and :func:`decode_image`).

    ``kind`` says why, for callers that answer differently (the HTTP API's
    status codes): ``"unreadable"`` (missing path, directory, FIFO,
    permissions), ``"empty"`` (0 bytes), ``"not_image"`` (nothing Pillow
    recognizes), ``"unsupported"`` (an image format outside
    :data:`ACCEPTED_FORMATS`, e.g. EPS, DDS or ICO), ``"corrupt"`` (truncated
    or damaged data: any exception from a decoder) or ``"too_large"`` (more
    pixels than allowed: a decompression bomb).
    """

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Read an image file as an upright greyscale ("L") picture on white paper.

    Accepts PNG, JPEG, BMP, GIF, TIFF, WebP and PBM/PGM/PPM files (decided
    by decoding, never by the file name) in any mode; other formats are
    refused as unsupported.  Animated files give their first frame.  The EXIF orientation is
    applied because phones store photos sideways and say so only in that tag.
    Transparent pixels become white paper, because drawing apps export
    strokes on a transparent background, which must not read as black ink.

    Raises :class:`ImageDecodeError` (a DigitsError), with one line naming the
    path, for a missing or unreadable path, a directory or other file that is
    not a regular file (a FIFO would block), an empty file, a file that is not
    an image or is one in an unsupported format, a truncated or corrupt
    image, and one whose pixel
    count exceeds Pillow's ``Image.MAX_IMAGE_PIXELS`` (a decompression bomb: a
    small file that would fill the memory when decoded).
    """
    p = Path(path)
    try:
        info = p.stat()
    except FileNotFoundError:
        raise ImageDecodeError(f"{p}: no such file", "unreadable") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise ImageDecodeError(f"{p}: cannot read: {getattr(exc, 'strerror', None) or exc}", "unreadable") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageDecodeError(f"{p}: is a directory, not an image file", "unreadable")
    if not stat.S_ISREG(info.st_mode):
        # Reading a FIFO or a device would wait for a writer or never end.
        what = "a named pipe (FIFO)" if stat.S_ISFIFO(info.st_mode) else "not a regular file"
        raise ImageDecodeError(f"{p}: is {what}, not an image file", "unreadable")
    if info.st_size == 0:
        raise ImageDecodeError(f"{p}: is empty (0 bytes), not an image", "empty")
    return _decode(p, str(p))


def decode_image(data: bytes, name: str = "upload", *, max_pixels: int | None = None,
                 reduce_to: int | None = None) -> Image.Image:
    """Decode an image held in memory (an HTTP upload) exactly as :func:`load_image` reads a file.

    The same formats, orientation, transparency and checks, with the same
    one-line :class:`ImageDecodeError` messages naming `name` instead of a
    path.  What the bytes are is decided by decoding them, never by a
    declared content type or file name.  `max_pixels` lowers the
    decompression-bomb limit below Pillow's ``Image.MAX_IMAGE_PIXELS`` (a
    server may want a tighter bound than a command-line tool).

    `reduce_to` decodes a picture of more pixels reduced by a whole factor
    to at most that many: a JPEG through Pillow's ``draft`` (the decoder
    scales by 1/2, 1/4 or 1/8, so the full-size array never exists), then
    any picture by ``Image.reduce`` (box averaging) once it is grey.
    """
    if not data:
        raise ImageDecodeError(f"{name}: is empty (0 bytes), not an image", "empty")
    return _decode(io.BytesIO(data), name, max_pixels, reduce_to)


def decoded_size(data: bytes, reduce_to: int | None = None) -> tuple[int, int] | None:
    """(width, height) of the array that ``decode_image(data, reduce_to=...)`` has its decoder fill:
    the header's size, or a JPEG's reduced by ``draft``.  Read from the header, nothing decoded;
    None when no accepted decoder takes `data` (decode_image says why)."""
    try:
        with Image.open(io.BytesIO(data), formats=_open_formats()) as img:
            _draft(img, reduce_to)
            return img.size
    except Exception:
        return None


def _draft(img: Image.Image, reduce_to: int | None) -> None:
    """Have a big JPEG decoded reduced (the decoder scales by 1/2, 1/4 or 1/8): the full-size array never exists."""
    factor = _reduction(img.width, img.height, reduce_to)
    if factor > 1 and img.format in ("JPEG", "MPO"):
        img.draft(None, (math.ceil(img.width / factor), math.ceil(img.height / factor)))


def _reduction(width: int, height: int, reduce_to: int | None) -> int:
    """The smallest whole factor that brings width x height down to `reduce_to` pixels (1: none)."""
    if reduce_to is None or width * height <= reduce_to:
        return 1
    factor = math.ceil(math.sqrt(width * height / reduce_to))
    while math.ceil(width / factor) * math.ceil(height / factor) > reduce_to:
        factor += 1
    return factor


def _decode(source: Path | io.BytesIO, name: str, max_pixels: int | None = None,
            reduce_to: int | None = None) -> Image.Image:
    """Open, check and fully decode `source`; the shared body of load_image and decode_image.

    Only :data:`OPEN_FORMATS`' decoders are tried, and any exception one of
    them raises is a corrupt image: Pillow's decoders report damaged data
    with whatever exception the damage happens to cause.
    """
    limit = Image.MAX_IMAGE_PIXELS
    if max_pixels is not None:
        limit = max_pixels if limit is None else min(limit, max_pixels)
    try:
        with warnings.catch_warnings():
            # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that;
            # both must be refused, so the warning is turned into an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Damaged files also make Pillow warn ("Truncated File Read", "Corrupt
            # EXIF data"); the outcome is an image or one error line, not a warning.
            warnings.simplefilter("ignore", UserWarning)
            with Image.open(source, formats=_open_formats()) as img:
                if img.format not in ACCEPTED_FORMATS:
                    raise _unsupported(name, img.format)
                # The filter above is process-wide state that another thread
                # may be changing; this check is not.
                if limit is not None and img.width * img.height > limit:
                    raise Image.DecompressionBombError(f"{img.width}x{img.height} pixels")
                img.seek(0)
                _draft(img, reduce_to)
                img.load()  # decode every byte now: truncation shows up here
                upright = ImageOps.exif_transpose(img)  # a loaded copy, usable after the file closes
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError):
        raise ImageDecodeError(
            f"{name}: image is too large to decode safely (over {limit} pixels)", "too_large"
        ) from None
    except UnidentifiedImageError:
        raise _unidentified(source, name) from None
    except OSError as exc:
        if exc.errno is not None:  # the file system's error, not a decoder's
            raise ImageDecodeError(f"{name}: cannot read: {exc.strerror or exc}", "unreadable") from None
        raise _corrupt(name, exc) from None
    except Exception as exc:
        raise _corrupt(name, exc) from None
    grey = to_grey(upright)
    factor = _reduction(grey.width, grey.height, reduce_to)
    return grey.reduce(factor) if factor > 1 else grey


def _open_formats() -> list[str]:
    """:data:`OPEN_FORMATS` that this Pillow build registers (WebP is optional)."""
    Image.init()
    return [f for f in OPEN_FORMATS if f in Image.OPEN]


def _corrupt(name: str, exc: BaseException) -> ImageDecodeError:
    return ImageDecodeError(f"{name}: truncated or corrupt image ({type(exc).__name__}: {exc})", "corrupt")


def _unsupported(name: str, fmt: str | None) -> ImageDecodeError:
    return ImageDecodeError(
        f"{name}: unsupported image format (it looks like {fmt}); use {_FORMAT_NAMES}", "unsupported")


def _unidentified(source: Path | io.BytesIO, name: str) -> ImageDecodeError:
    """Why no accepted decoder took `source`: a refused format, a damaged header, or no image at all.

    Only the formats' signature checks (Pillow's ``accept`` functions, which
    look at the first 16 bytes) run here; no other decoder is opened.
    """
    try:
        if isinstance(source, io.BytesIO):
            prefix = source.getvalue()[:16]
        else:
            with open(source, "rb") as f:
                prefix = f.read(16)
    except OSError as exc:
        return ImageDecodeError(f"{name}: cannot read: {exc.strerror or exc}", "unreadable")
    Image.init()
    for fmt in Image.ID:
        accept = Image.OPEN[fmt][1]
        try:
            if accept is None or accept(prefix) is not True:
                continue
        except Exception:  # a signature check tripping over odd bytes: not that format
            continue
        if fmt in ACCEPTED_FORMATS:
            return ImageDecodeError(f"{name}: truncated or corrupt image (a damaged {fmt} header)", "corrupt")
        return _unsupported(name, fmt)
    return ImageDecodeError(f"{name}: not an image file Pillow can read", "not_image")


def to_grey(img: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit greyscale, transparency laid on white."""
    mode = img.mode
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        # High bit depths: Pillow's own convert("L") clips at 255 instead of
        # scaling, which turns a 16-bit photo white.  float32 holds 16-bit
        # levels exactly at half float64's memory; NaN and infinities (a
        # damaged float TIFF) count as black.
        a = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
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



def grey_floats(image: Image.Image | np.ndarray) -> NDArray[np.float32]:
    """A picture or array as float32 greyscale in [0, 1], keeping its polarity.

    Arrays may be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); uint8 and other
    integers are read as 0..255 (0..65535 when larger values occur), floats
    as 0..1 (0..255 when larger values occur), booleans as 0/1.  An alpha
    channel is laid on white, as in :func:`load_image`.
    """
    if isinstance(image, Image.Image):
        return np.asarray(to_grey(image), dtype=np.float32) / 255.0
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        if a.shape[2] == 1:
            a = a[:, :, 0]
        else:
            rgba = _scaled_grey(a, "array")
            luma = rgba[:, :, 0] * 0.299 + rgba[:, :, 1] * 0.587 + rgba[:, :, 2] * 0.114
            if rgba.shape[2] == 4:
                alpha = rgba[:, :, 3]
                luma = luma * alpha + (1.0 - alpha)
            return luma.astype(np.float32)
    if a.ndim != 2:
        raise DigitsError(f"image array has shape {a.shape}; expected (height, width) or (height, width, 1|3|4)")
    return _scaled_grey(a, "array").astype(np.float32)


def _scaled_grey(a: np.ndarray, what: str) -> NDArray[np.float32]:
    """Scale raw pixel values of any dtype to [0, 1] (see :func:`grey_floats`)."""
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


def grey_bytes(image: Image.Image | np.ndarray) -> NDArray[np.uint8]:
    """A picture as 0..255 greyscale bytes (see :func:`grey_floats` for what is accepted).

    The analysis runs on bytes: Pillow's histogram, reduce and subtract are
    then C loops over one byte a pixel, and the input had no finer levels
    anyway (MNIST, PNG and JPEG are 8-bit).
    """
    if isinstance(image, Image.Image):
        return np.asarray(to_grey(image))
    return float_to_bytes(grey_floats(image))

def float_to_bytes(a: NDArray[np.float32]) -> NDArray[np.uint8]:
    """A [0, 1] image as 0..255 bytes, for Pillow's fast histogram and filters."""
    return (a * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)



def save_preprocessed(array: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write a 28x28 array in [0, 1] (as from :func:`to_mnist`) as an 8-bit PNG.

    Written through :func:`digits.files.atomic_file`, so a reader never sees
    half a file and an interrupted run leaves no truncated PNG behind; the
    PNG gets the same permissions as any file written there.  Raises
    DigitsError naming the path when the folder is missing or not writable;
    ValueError for an array that is not 28x28.
    """
    a = np.asarray(array, dtype=np.float32)
    if a.shape != (MNIST_SIDE, MNIST_SIDE):
        raise ValueError(f"expected a ({MNIST_SIDE}, {MNIST_SIDE}) array, got shape {a.shape}")
    img = Image.fromarray(np.rint(np.clip(np.nan_to_num(a), 0.0, 1.0) * 255.0).astype(np.uint8))
    with files.atomic_file(path) as out:
        img.save(out, format="PNG")


