"""Read and write the IDX format that MNIST and its look-alikes ship in.

IDX is tiny: two zero bytes, a data-type code, the number of dimensions, one
big-endian uint32 per dimension, then the values in C order, big-endian.
The files are usually gzip-compressed; :func:`read_idx` sniffs the gzip magic
bytes instead of trusting the file name, because people unpack and rename.

Every way a file can be wrong (missing, empty, not IDX, truncated, trailing
bytes, corrupt gzip) raises :class:`~digits.errors.DigitsError` with a
message that starts with the file's path, so a user knows which file to fix.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from gzip import BadGzipFile, GzipFile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from digits import files
from digits.errors import DigitsError

GZIP_MAGIC = b"\x1f\x8b"

# IDX data-type code -> dtype as stored on disk (big-endian).
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# (numpy kind, itemsize) -> IDX data-type code, for writing any byte order.
_CODES: dict[tuple[str, int], int] = {(dt.kind, dt.itemsize): code for code, dt in _DTYPES.items()}

# Deflate cannot expand data more than ~1032:1, so a gzip file of n bytes
# decompresses to at most this many times n.  Used to refuse absurd headers
# before allocating memory for them.
_MAX_GZIP_RATIO = 1100

MAX_DIMENSIONS = 32
"""The most dimensions an IDX file may declare (the header allows 255): NumPy 1's limit, and
far above the 1 to 3 that datasets use."""
_CHUNK = 1 << 20


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-endian, writable array.

    The payload is decompressed straight into the array's buffer, so a 47 MB
    training set costs one allocation and no intermediate ``bytes`` copy.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            file_size = os.fstat(raw.fileno()).st_size
            is_gzip = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            if not is_gzip:
                return _read_stream(raw, path, max_payload=file_size)
            with GzipFile(fileobj=raw) as stream:
                return _read_stream(stream, path, max_payload=file_size * _MAX_GZIP_RATIO)
    except FileNotFoundError:
        raise DigitsError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DigitsError(f"{path}: is a folder, expected an IDX file") from None
    except (BadGzipFile, EOFError, zlib.error) as exc:
        raise DigitsError(f"{path}: corrupt gzip data ({exc})") from None
    except OSError as exc:
        raise DigitsError(f"{path}: cannot read ({exc.strerror or exc})") from None


def write_idx(path: str | os.PathLike, array: np.ndarray, *, gzip: bool | None = None) -> None:
    """Write ``array`` as IDX, gzip-compressed if ``gzip`` (default: name ends in .gz).

    The file appears atomically (:func:`digits.files.atomic_file`), so a
    reader never sees half a file and a crash never leaves one behind.
    """
    path = Path(path)
    array = np.asarray(array)
    code = _CODES.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise DigitsError(
            f"{path}: cannot store {array.dtype} in IDX "
            "(supported: uint8, int8, int16, int32, float32, float64)"
        )
    if not 1 <= array.ndim <= 255:
        raise DigitsError(f"{path}: IDX needs 1 to 255 dimensions, array has {array.ndim}")
    if any(side >= 2**32 for side in array.shape):
        raise DigitsError(f"{path}: dimension {max(array.shape)} does not fit IDX's uint32 sizes")
    if gzip is None:
        gzip = path.name.endswith(".gz")

    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    big_endian = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder(">"))
    payload = memoryview(big_endian.reshape(-1).view(np.uint8))

    with files.atomic_file(path) as out:
        if gzip:
            # filename="" and mtime=0 keep the output byte-for-byte reproducible.
            with GzipFile(filename="", mode="wb", fileobj=out, compresslevel=6, mtime=0) as gz:
                gz.write(header)
                gz.write(payload)
        else:
            out.write(header)
            out.write(payload)


def _read_stream(stream: BinaryIO, path: Path, *, max_payload: int) -> np.ndarray:
    """Parse header and payload from an open stream (raw file or GzipFile)."""
    magic = _read_up_to(stream, 4)
    if not magic:
        raise DigitsError(f"{path}: empty file")
    if len(magic) < 4:
        raise DigitsError(f"{path}: truncated IDX header ({len(magic)} bytes)")
    if magic[:2] != b"\0\0":
        raise DigitsError(
            f"{path}: not an IDX file (starts with {magic.hex(' ')}, expected 00 00 <type> <ndim>)"
        )
    code, ndim = magic[2], magic[3]
    if code not in _DTYPES:
        raise DigitsError(
            f"{path}: unknown IDX data type code 0x{code:02X} (expected 08, 09, 0B, 0C, 0D or 0E)"
        )
    if ndim == 0:
        raise DigitsError(f"{path}: IDX header declares 0 dimensions")
    if ndim > MAX_DIMENSIONS:
        raise DigitsError(f"{path}: IDX header declares {ndim} dimensions; at most {MAX_DIMENSIONS} can be read")
    dims_raw = _read_up_to(stream, 4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise DigitsError(f"{path}: truncated IDX header ({4 + len(dims_raw)} bytes, needs {4 + 4 * ndim})")
    dims = struct.unpack(f">{ndim}I", dims_raw)

    dtype = _DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    if expected > max_payload:
        # Cannot possibly be there; do not try to allocate it.
        _raise_size_mismatch(path, "truncated", dims, dtype, expected, _count_rest(stream))

    try:
        flat = np.empty(expected, dtype=np.uint8)
    except MemoryError:  # a gzip file may claim up to 1100 times its size
        shape = "×".join(str(d) for d in dims)
        raise DigitsError(f"{path}: IDX header says {shape} values ({expected:,} bytes), "
                          "more memory than this process may use") from None
    filled = _read_into(stream, memoryview(flat))
    if filled < expected:
        _raise_size_mismatch(path, "truncated", dims, dtype, expected, filled)
    extra = _count_rest(stream)  # also makes GzipFile verify its CRC and length
    if extra:
        _raise_size_mismatch(path, "trailing bytes after", dims, dtype, expected, expected + extra)

    array = flat.view(dtype).reshape(dims)
    if not dtype.isnative:
        array = array.byteswap(inplace=True).view(dtype.newbyteorder("="))
    return array


def _raise_size_mismatch(
    path: Path, problem: str, dims: tuple[int, ...], dtype: np.dtype, expected: int, found: int
) -> None:
    shape = "×".join(str(d) for d in dims)
    per_item = "" if dtype.itemsize == 1 else f" × {dtype.itemsize}"
    raise DigitsError(
        f"{path}: {problem} IDX data: header says {shape}{per_item} = {expected} bytes, found {found}"
    )


def _read_up_to(stream: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes, fewer only at end of stream (raw reads may return short)."""
    parts = []
    while size > 0:
        chunk = stream.read(size)
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def _read_into(stream: BinaryIO, buffer: memoryview) -> int:
    """Fill ``buffer`` from ``stream``; return how many bytes it got."""
    filled = 0
    while filled < len(buffer):
        got = stream.readinto(buffer[filled:])
        if not got:
            break
        filled += got
    return filled


def _count_rest(stream: BinaryIO) -> int:
    """Consume the rest of the stream and return its length."""
    total = 0
    while chunk := stream.read(_CHUNK):
        total += len(chunk)
    return total
