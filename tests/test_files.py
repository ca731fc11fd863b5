"""digits.files: whole files and folders or nothing, umask permissions, one error naming the path."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from digits import files
from digits.errors import DigitsError


@pytest.fixture
def umask():
    """Set the process umask for one test (the policy under test) and restore it after."""
    saved = os.umask(0o022)
    yield os.umask
    os.umask(saved)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def names(folder: Path) -> list[str]:
    """Everything under `folder`, hidden temporaries included, as sorted relative paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def assert_one_line_naming(error: DigitsError, path: Path) -> None:
    message = str(error)
    assert "\n" not in message
    assert message.startswith(f"{path}: cannot write: "), message


# --------------------------------------------------------------------------- permissions


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002], ids=oct)
def test_files_and_folders_follow_the_umask(tmp_path, umask, mask):
    umask(mask)
    files.write_bytes(tmp_path / "a.bin", b"x")
    files.write_all({tmp_path / "new" / "b.html": b"<p>"})
    with files.atomic_folder(tmp_path / "run") as folder:
        files.write_json(folder / "config.json", {"k": 1})
    with files.atomic_file(tmp_path / "c.gz") as out:
        out.write(b"streamed")
    for path in ("a.bin", "new/b.html", "run/config.json", "c.gz"):
        assert mode(tmp_path / path) == 0o666 & ~mask, path
    for path in ("new", "run"):
        assert mode(tmp_path / path) == 0o777 & ~mask, path


def test_replacing_a_file_gives_the_umask_mode_not_the_temporaries(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "report.html"
    path.write_bytes(b"old")
    path.chmod(0o600)
    files.write_text(path, "new")
    assert path.read_text() == "new" and mode(path) == 0o644


# --------------------------------------------------------------------------- contents


def test_text_and_json_are_written_as_read_back(tmp_path):
    files.write_text(tmp_path / "t.txt", "π ≈ 3.14\n")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "π ≈ 3.14\n"
    files.write_json(tmp_path / "m.json", {"accuracy": np.float32(0.5), "n": np.int64(3), "p": Path("x")})
    text = (tmp_path / "m.json").read_text()
    assert json.loads(text) == {"accuracy": 0.5, "n": 3, "p": "x"}
    assert text.endswith("}\n") and '\n  "n": 3' in text  # indented, one newline at the end


# --------------------------------------------------------------------------- failures


def test_a_failure_mid_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "cache.gz"
    path.write_bytes(b"old contents")
    with pytest.raises(RuntimeError, match="codec broke"):
        with files.atomic_file(path) as out:
            out.write(b"half of the new")
            raise RuntimeError("codec broke")
    assert path.read_bytes() == b"old contents"
    assert names(tmp_path) == ["cache.gz"]


def test_an_os_error_mid_write_is_the_one_error_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "cache.gz"
    path.write_bytes(b"old contents")
    with pytest.raises(DigitsError) as info:
        with files.atomic_file(path) as out:
            out.write(b"half")
            raise OSError(28, "No space left on device")
    assert_one_line_naming(info.value, path)
    assert str(info.value).endswith("No space left on device")
    assert path.read_bytes() == b"old contents" and names(tmp_path) == ["cache.gz"]


def test_ctrl_c_mid_write_leaves_no_temporary(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with files.atomic_file(tmp_path / "x.png") as out:
            out.write(b"half")
            raise KeyboardInterrupt
    assert names(tmp_path) == []


def test_a_write_into_a_missing_folder_names_the_path(tmp_path):
    path = tmp_path / "missing" / "x.json"
    with pytest.raises(DigitsError) as info:
        files.write_json(path, {})
    assert_one_line_naming(info.value, path)
    assert "No such file or directory" in str(info.value)
    assert names(tmp_path) == []


def test_a_write_under_a_regular_file_names_the_path(tmp_path):
    """A file where a folder should be stops a write even as root (chmod does not)."""
    (tmp_path / "blocker").write_text("x")
    path = tmp_path / "blocker" / "x.bin"
    with pytest.raises(DigitsError) as info:
        files.write_bytes(path, b"data")
    assert_one_line_naming(info.value, path)
    assert "Not a directory" in str(info.value)


def test_a_write_into_a_read_only_folder_names_the_path(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; the folder-under-a-file test covers the error")
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(DigitsError) as info:
            files.write_bytes(folder / "x.bin", b"data")
        assert_one_line_naming(info.value, folder / "x.bin")
        assert names(folder) == []
    finally:
        folder.chmod(0o755)


def test_writing_over_a_folder_names_it(tmp_path):
    (tmp_path / "out.html").mkdir()
    with pytest.raises(DigitsError) as info:
        files.write_bytes(tmp_path / "out.html", b"<p>")
    assert_one_line_naming(info.value, tmp_path / "out.html")
    assert names(tmp_path) == ["out.html"]


# --------------------------------------------------------------------------- several files


def test_write_all_creates_folders_and_writes_every_file(tmp_path):
    files.write_all({tmp_path / "r" / "plots" / "a.png": b"a", tmp_path / "r" / "report.html": b"<p>"})
    assert names(tmp_path) == ["r", "r/plots", "r/plots/a.png", "r/report.html"]


def test_write_all_is_all_or_nothing(tmp_path):
    """A failure on the last file leaves the first unwritten and the folders it made removed."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "page.html").write_bytes(b"old page")
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(DigitsError) as info:
        files.write_all({
            tmp_path / "out" / "plots" / "a.png": b"a",
            tmp_path / "out" / "page.html": b"new page",
            tmp_path / "blocker" / "b.png": b"b",
        })
    assert_one_line_naming(info.value, tmp_path / "blocker" / "b.png")
    assert (tmp_path / "out" / "page.html").read_bytes() == b"old page"
    assert names(tmp_path) == ["blocker", "out", "out/page.html"]


def test_write_all_refuses_a_folder_target_before_writing_anything(tmp_path):
    (tmp_path / "compare.html").mkdir()
    with pytest.raises(DigitsError, match=r"compare\.html: cannot write: it is a folder"):
        files.write_all({tmp_path / "curves.png": b"c", tmp_path / "compare.html": b"<p>"})
    assert names(tmp_path) == ["compare.html"]


# --------------------------------------------------------------------------- folders


def test_a_folder_appears_whole_when_the_block_succeeds(tmp_path):
    final = tmp_path / "runs" / "mlp"
    with files.atomic_folder(final) as folder:
        assert folder.parent == final.parent and folder.name.startswith(".mlp.partial-")
        files.write_text(folder / "summary.txt", "layers")
        assert not final.exists()  # nothing visible under the final name while it is built
    assert names(tmp_path / "runs") == ["mlp", "mlp/summary.txt"]


def test_a_folder_replaces_an_empty_one_the_user_named(tmp_path):
    (tmp_path / "run").mkdir()
    with files.atomic_folder(tmp_path / "run") as folder:
        files.write_text(folder / "a.txt", "a")
    assert names(tmp_path) == ["run", "run/a.txt"]


@pytest.mark.parametrize("interruption", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_a_failed_folder_build_leaves_nothing(tmp_path, interruption):
    with pytest.raises(type(interruption)):
        with files.atomic_folder(tmp_path / "run") as folder:
            files.write_text(folder / "config.json", "{}")
            (folder / "plots").mkdir()
            raise interruption
    assert names(tmp_path) == []


def test_a_folder_that_cannot_be_placed_names_the_path_and_leaves_nothing(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    with pytest.raises(DigitsError) as info:
        with files.atomic_folder(tmp_path / "run") as folder:
            files.write_text(folder / "a.txt", "a")
    assert_one_line_naming(info.value, tmp_path / "run")
    assert names(tmp_path) == ["run", "run/keep.txt"]


def test_a_folder_under_a_regular_file_names_the_path(tmp_path):
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(DigitsError) as info:
        with files.atomic_folder(tmp_path / "blocker" / "run"):
            pass
    assert_one_line_naming(info.value, tmp_path / "blocker" / "run")
