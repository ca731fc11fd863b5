"""Pictures for tests and benchmarks: MNIST digits rendered the way users photograph them.

Not used by Digits itself; imported by the test suite and ``benchmarks/``.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

from digits.datasets.arrays import MNIST_SIDE
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
