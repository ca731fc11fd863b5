"""Damaged and unsupported images through decoding and normalization: one user-facing error, never a crash.

A bounded fuzz test: small pictures of every accepted format (and of some
formats Digits refuses) are mutated with a fixed seed (bytes flipped, cut,
repeated, inserted) and fed to :func:`digits.vision.decode_image` and
:func:`digits.vision.to_mnist`.  The only exception allowed out is
DigitsError (ImageDecodeError, NoDigitError), because anything else is a
traceback on the CLI and a 500 from the server.
"""

from __future__ import annotations

import io
import json
import random
import subprocess

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image, ImageDraw, features

from digits.errors import DigitsError
from digits.vision import ImageDecodeError, decode_image, to_mnist

MUTATIONS_PER_SAMPLE = 12
"""About 20 accepted and 7 refused samples: a few hundred decodes, a few seconds."""


def _digit(mode: str = "L") -> Image.Image:
    img = Image.new("L", (40, 36), 255)
    ImageDraw.Draw(img).line([(12, 8), (28, 8), (18, 30)], fill=0, width=4)  # a 7
    return img.convert(mode)


def _saved(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def _accepted_samples() -> dict[str, bytes]:
    """One small file per accepted format and common variant (compression, mode)."""
    samples = {
        "png-L": _saved(_digit(), "PNG"),
        "png-RGBA": _saved(_digit("RGBA"), "PNG"),
        "png-P": _saved(_digit("P"), "PNG"),
        "png-16bit": _saved(Image.fromarray(np.asarray(_digit(), np.uint16) * 257), "PNG"),
        "jpeg": _saved(_digit("RGB"), "JPEG", quality=80),
        "jpeg-progressive": _saved(_digit(), "JPEG", progressive=True),
        "mpo": _saved(_digit("RGB"), "MPO", save_all=True, append_images=[_digit("RGB")]),
        "bmp": _saved(_digit("RGB"), "BMP"),
        "bmp-P": _saved(_digit("P"), "BMP"),
        "gif": _saved(_digit("P"), "GIF"),
        "tiff": _saved(_digit(), "TIFF"),
        "tiff-lzw": _saved(_digit("RGB"), "TIFF", compression="tiff_lzw"),
        "tiff-deflate": _saved(_digit(), "TIFF", compression="tiff_adobe_deflate"),
        "tiff-jpeg": _saved(_digit("RGB"), "TIFF", compression="jpeg"),
        "tiff-F": _saved(_digit("F"), "TIFF"),
        "pgm": _saved(_digit(), "PPM"),
        "ppm": _saved(_digit("RGB"), "PPM"),
        "pbm": _saved(_digit("1"), "PPM"),
    }
    if features.check("webp"):
        samples["webp"] = _saved(_digit("RGB"), "WEBP")
        samples["webp-lossless"] = _saved(_digit("RGBA"), "WEBP", lossless=True)
    return samples


EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 40 36\n%%EndComments\n"
       b"newpath 12 28 moveto 28 28 lineto 18 6 lineto 4 setlinewidth stroke\nshowpage\n%%EOF\n")


def _refused_samples() -> dict[str, bytes]:
    """Files Pillow could open but Digits refuses: EPS would run Ghostscript, the others are half-supported."""
    samples = {
        "eps": EPS,
        "dds": _saved(_digit("RGB"), "DDS"),
        "blp": _saved(_digit("P"), "BLP"),
        "ico": _saved(_digit("RGB"), "ICO"),
        "pcx": _saved(_digit(), "PCX"),
        "qoi": _saved(_digit("RGB"), "QOI"),
        "sgi": _saved(_digit(), "SGI"),
    }
    if features.check("avif"):
        samples["avif"] = _saved(_digit("RGB"), "AVIF")
    return samples


def _mutations(data: bytes, rng: random.Random, count: int):
    """`count` damaged copies of `data`: bytes flipped or set, cut short, a run repeated or inserted."""
    for _ in range(count):
        b = bytearray(data)
        how = rng.randrange(5)
        if how == 0:  # flip a few bits, often in the header where the sizes are
            for _ in range(rng.randint(1, 6)):
                i = rng.randrange(min(len(b), 64)) if rng.random() < 0.5 else rng.randrange(len(b))
                b[i] ^= 1 << rng.randrange(8)
        elif how == 1:  # a byte set to an extreme
            b[rng.randrange(len(b))] = rng.choice((0x00, 0xFF, 0x7F, 0x80))
        elif how == 2:  # cut short
            b = b[: rng.randrange(1, len(b))]
        elif how == 3:  # a run repeated
            i = rng.randrange(len(b))
            b[i:i] = b[i : i + rng.randint(1, 64)]
        else:  # random bytes inserted
            i = rng.randrange(len(b))
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        yield bytes(b)


def _no_external_programs(monkeypatch) -> list:
    """Record every attempt to start a program or open an EPS file (Ghostscript's way in)."""
    started: list = []

    def popen(*args, **kwargs):
        started.append(args)
        raise AssertionError("an upload started an external program")

    def eps_open(self, *args, **kwargs):
        started.append("EPS")
        raise AssertionError("an upload reached the EPS decoder")

    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", eps_open)
    return started


def test_every_accepted_format_decodes() -> None:
    for name, data in _accepted_samples().items():
        picture = decode_image(data, name)
        assert picture.mode == "L" and picture.size == (40, 36), name
        assert to_mnist(picture).shape == (28, 28), name


@pytest.mark.parametrize("name", sorted(_refused_samples()))
def test_other_formats_are_refused_as_unsupported_without_opening_them(name: str, monkeypatch) -> None:
    data = _refused_samples()[name]
    started = _no_external_programs(monkeypatch)
    with pytest.raises(ImageDecodeError) as err:
        decode_image(data, f"x.{name}")
    assert err.value.kind == "unsupported", err.value
    message = str(err.value)
    assert message.startswith(f"x.{name}: unsupported image format") and "\n" not in message
    assert started == []


def test_mutated_images_give_one_line_errors_only(monkeypatch) -> None:
    started = _no_external_programs(monkeypatch)
    rng = random.Random(20240612)
    samples = {**_accepted_samples(), **_refused_samples()}
    kinds: dict[str, int] = {}
    tried = 0
    for name, data in samples.items():
        for damaged in _mutations(data, rng, MUTATIONS_PER_SAMPLE):
            tried += 1
            try:
                picture = decode_image(damaged, name)
                result = to_mnist(picture)
            except ImageDecodeError as e:
                kinds[e.kind] = kinds.get(e.kind, 0) + 1
                assert str(e).startswith(f"{name}: ") and "\n" not in str(e), str(e)
                continue
            except DigitsError as e:  # NoDigitError: a decoded picture with no ink left
                assert "\n" not in str(e)
                kinds["no digit"] = kinds.get("no digit", 0) + 1
                continue
            assert result.shape == (28, 28) and np.isfinite(result).all(), name
            kinds["read"] = kinds.get("read", 0) + 1
    assert tried == len(samples) * MUTATIONS_PER_SAMPLE
    assert started == []
    # The mutations reach the decoders (not all refused at the signature) and some survive them.
    assert kinds.get("corrupt", 0) > 20 and kinds.get("read", 0) > 20, json.dumps(kinds)
