"""Plain helper functions shared by the test files (fixtures live in conftest.py).

Test files import them as ``from helpers import ...``: pytest puts this folder
on ``sys.path`` when it imports a test file from it (its default "prepend"
import mode, with no ``__init__.py`` here).
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import zlib
from pathlib import Path
from typing import NoReturn

import pytest

# Debian's chromium, driven by Playwright (whose own browser download is never used).
CHROMIUM = os.environ.get("DIGITS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def skip_or_fail(message: str, *, allow_module_level: bool = False) -> NoReturn:
    """Skip the test here, but fail it on CI, where a silent skip would hide that it never ran."""
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=allow_module_level)


def require_browser() -> None:
    """Chromium and the playwright package, or skip_or_fail saying what is missing."""
    problems = []
    if not Path(CHROMIUM).is_file():
        problems.append(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("no playwright package (pip install playwright)")
    if problems:
        skip_or_fail("; ".join(problems))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (free when asked; closed if nobody takes it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png_bomb(width: int, height: int) -> bytes:
    """A tiny, valid PNG file whose header claims width x height pixels: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
            + chunk(b"IEND", b""))


def exit_code(argv: list[str]) -> int:
    """`digits ARGV`'s exit status, also when argparse exits for a usage error."""
    from digits.cli import main

    try:
        return main(argv)
    except SystemExit as e:
        return e.code
