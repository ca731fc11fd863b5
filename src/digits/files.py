"""Writing files and folders: whole or not at all, with the permissions any tool would give them.

Every file Digits writes (a run, a report, a dataset cache, a saved picture)
goes through this module, so three things hold everywhere:

- **Nothing half-written is ever visible.**  A file is written to a hidden
  temporary name in its own folder, flushed to disk, then renamed over the
  target (``os.replace`` is atomic within a folder).  A folder is built
  under a hidden sibling name and renamed into place whole.  A crash, a
  Ctrl-C or a full disk leaves the old file (or nothing) and no temporary.
- **One permission policy: the umask's.**  Files are created 0666 and
  folders 0777, less the umask, as ``cp``, ``mkdir`` and every editor do.
  (``tempfile.mkstemp`` and ``mkdtemp`` would make them 0600 and 0700,
  which is why they are not used here: a run or a report is meant to be
  shared with whoever the user's umask shares files with.)
- **One error.**  A write that fails raises :class:`DigitsError`
  ``"PATH: cannot write: REASON"`` naming the file the user asked for, not
  the temporary.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from digits.errors import DigitsError


def cannot_write(path: str | os.PathLike, error: OSError) -> DigitsError:
    """The one error for a failed write, naming the path the user gave."""
    return DigitsError(f"{path}: cannot write: {error.strerror or error}")


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to stream into; it replaces `path` only when the block ends without error.

    For writers that produce data piece by piece (gzip, a download, Pillow).
    Any OSError in the block or in finishing the file becomes
    :func:`cannot_write`; other exceptions pass through unchanged (a caller
    can reject what it streamed by raising).  Either way the temporary file
    is removed and `path` keeps its old contents.
    """
    path = Path(path)
    tmp = None
    try:
        out, tmp = _open_temp(path)
        with out:
            yield out
            _flush(out)
        os.replace(tmp, path)
    except OSError as e:
        raise cannot_write(path, e) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)  # gone already after the rename


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace `path` with `data`, atomically; its folder must exist."""
    with atomic_file(path) as out:
        out.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Replace `path` with `text` in UTF-8, atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, doc: Any) -> None:
    """Replace `path` with `doc` as indented JSON; NumPy scalars become numbers, other odd values strings."""
    write_text(path, json.dumps(doc, indent=2, default=_jsonable) + "\n")


def write_all(files: Mapping[Path, bytes]) -> None:
    """Write several files, all or none: every temporary first, then the renames.

    For outputs that only make sense together (a report page and the figures
    it links to).  Missing folders are created, and removed again if the
    writes fail.  A target that is a folder is refused before anything is
    written, since its rename would be the one to fail after others succeeded.
    """
    for path in files:
        if Path(path).is_dir():
            raise DigitsError(f"{path}: cannot write: it is a folder")
    created: list[Path] = []
    temps: dict[Path, Path] = {}
    current = None
    done = False
    try:
        for path, data in files.items():
            current = path = Path(path)
            created += _make_folders(path.parent)
            out, temps[path] = _open_temp(path)
            with out:
                out.write(data)
                _flush(out)
        for path, tmp in temps.items():
            current = path
            os.replace(tmp, path)
        done = True
    except OSError as e:
        raise cannot_write(current, e) from None
    finally:
        if not done:
            for tmp in temps.values():
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
            for folder in reversed(created):
                with contextlib.suppress(OSError):
                    folder.rmdir()


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """A hidden folder beside `path` to fill; renamed to `path` whole when the block succeeds.

    The hidden name is ``.NAME.partial-RANDOM``.  `path` may already be an
    empty folder (it is replaced); missing parent folders are created.  If
    the block raises anything, KeyboardInterrupt included, the hidden folder
    and everything in it are removed, `path` is left as it was, and the
    exception passes through unchanged (what the block wrote, it reports
    itself: through this module, as :func:`cannot_write`).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.partial-{secrets.token_hex(6)}")
        tmp.mkdir()  # 0777 less the umask
    except OSError as e:
        raise cannot_write(path, e) from None
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        if path.is_dir():  # an empty folder the user named; POSIX renames over it, Windows does not
            path.rmdir()
        os.replace(tmp, path)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise cannot_write(path, e) from None


def _open_temp(path: Path) -> tuple[BinaryIO, Path]:
    """A new hidden file beside `path`, created 0666 less the umask (``mkstemp`` makes 0600).

    Beside it, so the rename stays within one file system and is atomic;
    a random name opened exclusively, so concurrent writers never share one.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    return os.fdopen(fd, "wb"), tmp


def _flush(out: BinaryIO) -> None:
    """Data on disk before the rename, so a power cut cannot leave an empty file under the new name."""
    out.flush()
    os.fsync(out.fileno())


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and any missing parents; the ones created, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        folder.mkdir()
    return missing[::-1]


def _jsonable(value):
    try:
        return value.item()  # numpy scalars
    except AttributeError:
        return str(value)
