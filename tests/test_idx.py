"""IDX reading and writing: round trips, and every way a file can be broken."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from digits.datasets import read_idx, write_idx
from digits.errors import DigitsError

IDX_DTYPES = ["u1", "i1", "<i2", ">i2", "<i4", ">i4", "<f4", ">f4", "<f8", ">f8"]


def idx_bytes(code: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------
# Round trips


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    array=st.sampled_from(IDX_DTYPES).flatmap(
        lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6))
    ),
    compress=st.booleans(),
)
def test_round_trip_any_dtype_and_shape(tmp_path: Path, array: np.ndarray, compress: bool) -> None:
    path = tmp_path / "a.idx"
    write_idx(path, array, gzip=compress)
    back = read_idx(path)
    assert back.shape == array.shape
    assert back.dtype == array.dtype.newbyteorder("=")
    assert back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_gz_name_means_gzip_and_plain_name_means_raw(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", images)
    write_idx(tmp_path / "x", images)
    assert (tmp_path / "x.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert (tmp_path / "x").read_bytes() == idx_bytes(0x08, (2, 3, 4), images.tobytes())
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), images)
    np.testing.assert_array_equal(read_idx(tmp_path / "x"), images)


def test_gzip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    write_idx(tmp_path / "looks-raw", labels, gzip=True)
    write_idx(tmp_path / "looks-compressed.gz", labels, gzip=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "looks-raw"), labels)
    np.testing.assert_array_equal(read_idx(tmp_path / "looks-compressed.gz"), labels)


def test_big_endian_on_disk_and_writable_result(tmp_path: Path) -> None:
    values = np.array([1, -2, 300], dtype=np.int16)
    write_idx(tmp_path / "s", values)
    assert (tmp_path / "s").read_bytes()[8:] == b"\x00\x01\xff\xfe\x01\x2c"
    back = read_idx(tmp_path / "s")
    assert back.flags.writeable
    back[0] = 7  # training code normalises in place; a read-only array would break it


def test_write_is_reproducible_and_leaves_no_temp_files(tmp_path: Path) -> None:
    array = np.ones((4, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "a.gz", array)
    first = (tmp_path / "a.gz").read_bytes()
    write_idx(tmp_path / "a.gz", array)  # overwrite in place
    assert (tmp_path / "a.gz").read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == ["a.gz"]


@pytest.mark.parametrize("array", [np.zeros(3, dtype=np.int64), np.zeros(3, dtype=bool), np.uint8(5)])
def test_write_refuses_what_idx_cannot_hold(tmp_path: Path, array) -> None:
    with pytest.raises(DigitsError, match="bad.idx"):
        write_idx(tmp_path / "bad.idx", array)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------
# Broken files: each is a DigitsError whose message names the file


def test_truncated_payload_message(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(0x08, (10000, 28, 28), b"\0" * 123))
    with pytest.raises(DigitsError) as info:
        read_idx(path)
    assert str(info.value) == (
        f"{path}: truncated IDX data: header says 10000×28×28 = 7840000 bytes, found 123"
    )


def test_truncated_payload_inside_gzip(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "short.gz", gzip.compress(idx_bytes(0x08, (10, 28, 28), b"\0" * 100)))
    with pytest.raises(DigitsError, match=r"short\.gz: truncated IDX data: .* = 7840 bytes, found 100"):
        read_idx(path)


def test_trailing_bytes(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "long", idx_bytes(0x0B, (3,), b"\0" * 8))
    expected = r"long: trailing bytes after IDX data: header says 3 × 2 = 6 bytes, found 8$"
    with pytest.raises(DigitsError, match=expected):
        read_idx(path)


def test_header_claiming_huge_sizes_is_truncated_not_memory_error(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "huge.gz", gzip.compress(idx_bytes(0x0E, (2**32 - 1, 2**32 - 1), b"x")))
    with pytest.raises(DigitsError, match=r"huge\.gz: truncated IDX data: .*found 1$"):
        read_idx(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"\0\0", r"truncated IDX header \(2 bytes\)"),
        (b"PK\x03\x04rest", "not an IDX file"),
        (b"\x01\x00\x08\x01\0\0\0\0", "not an IDX file"),
        (idx_bytes(0x07, (1,), b"\0"), "unknown IDX data type code 0x07"),
        (idx_bytes(0x08, (), b""), "0 dimensions"),
        (b"\0\0\x08\x03\0\0\0\x01", "truncated IDX header"),
    ],
)
def test_malformed_headers(tmp_path: Path, content: bytes, message: str) -> None:
    path = write_bytes(tmp_path / "broken-idx1-ubyte", content)
    with pytest.raises(DigitsError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def _good_gzip() -> bytes:
    return gzip.compress(idx_bytes(0x08, (1000,), bytes(range(256)) * 3 + b"\7" * 232), mtime=0)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[:-8] + bytes(x ^ 0xFF for x in b[-8:-4]) + b[-4:], id="bad-crc"),
        pytest.param(lambda b: b[: len(b) // 2], id="truncated-stream"),
        pytest.param(lambda b: b[:12] + b"\xff" * 40 + b[52:], id="garbled-deflate"),
        pytest.param(lambda b: b[:5], id="header-only"),
    ],
)
def test_corrupt_gzip(tmp_path: Path, damage) -> None:
    path = write_bytes(tmp_path / "labels.gz", damage(_good_gzip()))
    with pytest.raises(DigitsError, match=r"labels\.gz: corrupt gzip data"):
        read_idx(path)


def test_nonexistent_path(tmp_path: Path) -> None:
    with pytest.raises(DigitsError, match=r"nope\.gz: no such file"):
        read_idx(tmp_path / "nope.gz")


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(DigitsError, match=f"{tmp_path.name}: is a folder"):
        read_idx(tmp_path)


# --------------------------------------------------------------------------
# The real files


def mnist_file(folder: Path, name: str) -> Path:
    """``name`` in ``folder``, .gz or uncompressed (DIGITS_DATA_DIR may hold either)."""
    gz = folder / f"{name}.gz"
    return gz if gz.is_file() else folder / name


def test_real_mnist_test_split(mnist_dir: Path) -> None:
    images = read_idx(mnist_file(mnist_dir, "t10k-images-idx3-ubyte"))
    labels = read_idx(mnist_file(mnist_dir, "t10k-labels-idx1-ubyte"))
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(labels).tolist()[:3] == [980, 1135, 1032]


def test_real_mnist_train_split(mnist_dir: Path) -> None:
    images = read_idx(mnist_file(mnist_dir, "train-images-idx3-ubyte"))
    labels = read_idx(mnist_file(mnist_dir, "train-labels-idx1-ubyte"))
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,)
    assert labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert 0.130 < images.mean() / 255 < 0.132
