"""Writing outputs: refuse an unwritable path before the work (bad input, exit 2), then write all
or nothing: under a temporary name in the destination's folder, renamed into place."""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

from dse.errors import ConfigError


def cannot_write(field: str, path: str | Path, exc: OSError) -> ConfigError:
    """The one-line error for an output that could not be written: ``cannot write PATH: why``."""
    return ConfigError(field, f"cannot write {path}: {exc.strerror or exc}")


def check_writable(path: str | Path, field: str, *, directory: bool = False) -> None:
    """Raise :func:`cannot_write` unless ``path`` (a file, or a folder) can be created or replaced,
    by a probe folder in the nearest existing one: permission bits cannot tell (root, ``/proc``)."""
    path = Path(path)
    if path.exists() and path.is_dir() != directory:
        code = errno.ENOTDIR if directory else errno.EISDIR
        raise cannot_write(field, path, OSError(code, os.strerror(code)))
    folder = path if directory else path.parent
    probe = next((p for p in (folder, *folder.parents) if p.exists()), Path(".")) / f".dse-probe-{_tag()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as e:
        raise cannot_write(field, path, e) from None


def _tag() -> str:
    return uuid.uuid4().hex[:12]


@contextmanager
def _undone_on_failure(target: Path, field: str, folder: Path) -> Iterator[None]:
    """Make ``folder`` and its missing parents, removed again if the block fails."""
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
    """A temporary name beside ``path`` to write to; it becomes ``path`` only if the block succeeds."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{_tag()}.tmp")
    with _undone_on_failure(path, field, path.parent):
        try:
            yield tmp
            os.replace(tmp, path)
        finally:
            with suppress(OSError):  # on a read-only mount even this fails
                tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes, field: str) -> None:
    """``Path.write_bytes`` through :func:`atomic_path`."""
    with atomic_path(path, field) as tmp:
        tmp.write_bytes(data)


@contextmanager
def staged_dir(folder: str | Path, field: str) -> Iterator[Path]:
    """An empty folder whose files land in ``folder`` only if the block succeeds."""
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


def write_files(folder: str | Path, files: Mapping[str, bytes | str], field: str) -> None:
    """``files`` (name -> bytes, or text written as UTF-8) in ``folder``: all of them or none."""
    with staged_dir(folder, field) as stage:
        for name, data in files.items():
            (stage / name).write_bytes(data.encode() if isinstance(data, str) else data)
