"""dse.outputs on real filesystems: unwritable paths refused up front, full disks leave no half files."""

from __future__ import annotations

from pathlib import Path

import pytest

from dse.errors import ConfigError
from dse.outputs import check_writable, staged_dir, write_bytes
from tests.conftest import tree

BIG = b"x" * 200_000  # more than a 64k tmpfs holds


def _refused(path: Path | str, message: str, *, directory: bool = False) -> None:
    with pytest.raises(ConfigError) as exc:
        check_writable(path, "--out", directory=directory)
    assert str(exc.value) == f"--out: cannot write {path}: {message}"


def test_check_writable_refuses_without_writing(tmp_path: Path, tmpfs) -> None:
    ro = tmpfs("ro", ro=True)
    (tmp_path / "file.txt").write_text("a file\n")
    (tmp_path / "folder").mkdir()
    before = tree(tmp_path)
    for directory in (False, True):
        _refused("/proc/nope/x", "No such file or directory", directory=directory)
        _refused(tmp_path / "file.txt/x", "Not a directory", directory=directory)
        _refused(tmp_path / "file.txt/a/b", "Not a directory", directory=directory)
        _refused(ro / "a/b", "Read-only file system", directory=directory)
    _refused(tmp_path / "folder", "Is a directory")
    _refused(tmp_path / "file.txt", "Not a directory", directory=True)
    check_writable(tmp_path / "new/deeper/x.csv", "--out")
    check_writable(tmp_path / "new/deeper", "--out", directory=True)
    check_writable(tmp_path / "file.txt", "--out")  # replaced, not appended to
    check_writable(tmp_path / "folder", "--out", directory=True)
    assert tree(tmp_path) == before


def test_write_on_a_full_disk_keeps_the_old_file(tmpfs) -> None:
    disk = tmpfs("disk")
    (disk / "x.csv").write_text("old\n")
    with pytest.raises(ConfigError) as exc:
        write_bytes(disk / "sub/x.csv", BIG, "PATH")
    assert str(exc.value) == f"PATH: cannot write {disk / 'sub/x.csv'}: No space left on device"
    with pytest.raises(ConfigError, match="No space left on device"):
        write_bytes(disk / "x.csv", BIG, "PATH")
    assert tree(disk) == {"x.csv": b"old\n"}  # no temporary file, no new folder
    write_bytes(disk / "x.csv", b"new\n", "PATH")
    assert tree(disk) == {"x.csv": b"new\n"}


def test_staged_dir_is_all_or_nothing(tmp_path: Path, tmpfs) -> None:
    disk = tmpfs("disk")
    (disk / "report").mkdir()
    (disk / "report/report.md").write_text("old\n")
    for target in (disk / "report", disk / "a/new"):
        with pytest.raises(ConfigError) as exc, staged_dir(target, "--out") as stage:
            (stage / "chart.png").write_bytes(b"drawn")
            (stage / "report.md").write_bytes(BIG)
        assert str(exc.value) == f"--out: cannot write {target}: No space left on device"
    assert tree(disk) == {"report": None, "report/report.md": b"old\n"}
    home = tmp_path / "home"
    home.mkdir()
    with pytest.raises(KeyError), staged_dir(home / "new/out", "--out") as stage:
        (stage / "a.md").write_text("half\n")
        raise KeyError("a bug, not a full disk")
    assert tree(home) == {}
    (home / "out").mkdir()
    (home / "out/keep.txt").write_text("user's\n")
    (home / "out/a.md").write_text("old\n")
    for target in (home / "out", home / "new/out"):
        with staged_dir(target, "--out") as stage:
            (stage / "a.md").write_text("new\n")
    assert tree(home) == {"new": None, "new/out": None, "new/out/a.md": b"new\n", "out": None,
                          "out/a.md": b"new\n", "out/keep.txt": b"user's\n"}
