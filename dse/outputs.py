"""Writing outputs: refuse an unwritable path before the work, then write all or nothing.

Every dse tool that writes files keeps two promises. An output path that cannot be written (below a
regular file, on a read-only mount, under ``/proc``) is bad input: one line naming the option, exit
code 2, before anything is computed or written. And a write that fails anyway (a full disk) leaves
neither a truncated file nor half a folder: what was there before stays as it was. Files are written
under a temporary name in the destination's own folder and renamed into place, because a rename
within one filesystem is atomic and needs no free space.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from dse.errors import ConfigError


def cannot_write(field: str, path: str | Path, exc: OSError) -> ConfigError:
    """The one-line error for an output that could not be written: ``cannot write PATH: why``."""
    return ConfigError(field, f"cannot write {path}: {exc.strerror or exc}")


def _nearest_existing(path: Path) -> Path:
    return next((p for p in (path, *path.parents) if p.exists()), Path("."))


def check_writable(path: str | Path, field: str, *, directory: bool = False) -> None:
    """Raise :func:`cannot_write` unless ``path`` (a file, or a folder with ``directory``) can be
    created or replaced; leaves nothing behind.

    Permission bits cannot answer this (root ignores them, a read-only mount or ``/proc`` does not),
    so the nearest existing folder is asked the real question: a probe folder is made and removed.
    """
    path = Path(path)
    if path.exists() and path.is_dir() != directory:
        code = errno.ENOTDIR if directory else errno.EISDIR
        raise cannot_write(field, path, OSError(code, os.strerror(code)))
    probe = _nearest_existing(path if directory else path.parent) / f".dse-probe-{_tag()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as e:
        raise cannot_write(field, path, e) from None


def _tag() -> str:
    return uuid.uuid4().hex[:12]


@contextmanager
def _undone_on_failure(target: Path, field: str, folder: Path) -> Iterator[None]:
    """Make ``folder`` and its missing parents; if the block fails, remove those again, and report
    an OSError as :func:`cannot_write` for ``target``."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        yield
    except BaseException as e:
        for p in missing:  # deepest first; only folders still empty go
            with suppress(OSError):
                p.rmdir()
        if isinstance(e, OSError):
            raise cannot_write(field, target, e) from e
        raise


@contextmanager
def atomic_path(path: str | Path, field: str) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to; it becomes ``path`` only if the block succeeds.

    On failure the temporary file is removed (quietly: on a read-only mount even that fails) and
    an earlier ``path`` is left untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{_tag()}.tmp")
    with _undone_on_failure(path, field, path.parent):
        try:
            yield tmp
            os.replace(tmp, path)
        finally:
            with suppress(OSError):
                tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes, field: str) -> None:
    """``Path.write_bytes`` through :func:`atomic_path`."""
    with atomic_path(path, field) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str, field: str) -> None:
    """``Path.write_text`` (UTF-8) through :func:`atomic_path`."""
    write_bytes(path, text.encode("utf-8"), field)


@contextmanager
def staged_dir(folder: str | Path, field: str) -> Iterator[Path]:
    """An empty folder to write a set of files into; they land in ``folder`` only if the block
    succeeds, otherwise ``folder`` keeps exactly what it had (or is not created).

    The staging folder sits inside ``folder`` when that exists (its files are then renamed in one
    by one, replacing same-named ones; other files stay), else beside it (and is renamed to it).
    """
    folder = Path(folder)
    home = folder if folder.is_dir() else folder.parent
    tmp = home / f".{folder.name}.{_tag()}.tmp"
    with _undone_on_failure(folder, field, home):
        try:
            tmp.mkdir()
            yield tmp
            if home == folder:
                for file in sorted(tmp.iterdir()):
                    os.replace(file, folder / file.name)
            else:
                tmp.rename(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
