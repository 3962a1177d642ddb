"""``dse-report`` bad input, through the installed console script: one line on stderr, exit 2.

The cases run as parallel subprocesses (each pays Python's start-up and pandas' import once).
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from dse.analysis.synthetic import demo_records, write_store
from tests.conftest import assert_one_line, run_cli, tree


def _command() -> list[str]:
    exe = Path(sys.executable).with_name("dse-report")
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("dse-report")
    return [found] if found else [sys.executable, "-m", "dse.analysis.cli"]


def test_bad_inputs_exit_2_with_one_line(tmp_path: Path) -> None:
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    write_store(tmp_path / "empty" / "results.db", [])
    write_store(tmp_path / "demo" / "results.db", demo_records(seeds=1, pct3x3=False,
                                                               bypass=False, presets=False))
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE things (x INTEGER)")
    con.commit()
    con.close()
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    missing_url = f"sqlite:///{tmp_path / 'missing' / 'results.db'}"
    cases = {
        "no store": ([str(empty_dir)], "no results.db in"),
        "no such path": ([str(tmp_path / "nope")], "no such file or folder"),
        "empty store": ([str(tmp_path / "empty")], "holds no runs"),
        "unknown study": ([str(tmp_path / "demo"), "--study", "zzz"], "unknown study 'zzz'"),
        "foreign sqlite": ([str(other)], "neither a dse store"),
        "not sqlite": ([str(text)], "not an SQLite store"),
        "missing url": ([missing_url], "no store at"),
        "bad format": ([str(tmp_path / "demo"), "--format", "gif"], "unknown format gif"),
        "no argument": ([], "required"),
    }
    procs = {name: subprocess.Popen([*_command(), *args], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, cwd=tmp_path)
             for name, (args, _) in cases.items()}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, (name, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dse-report: error: "), (name, err)
        assert cases[name][1] in lines[0], (name, lines[0])
        assert out == "", (name, out)
    assert not (tmp_path / "missing").exists()  # a wrong URL never creates a database
    assert not (tmp_path / "empty" / "report").exists()  # nothing written on bad input
    assert not (tmp_path / "demo" / "report").exists()


def test_unwritable_or_full_out_is_one_line_and_keeps_the_old_report(tmp_path: Path,
                                                                     tmpfs) -> None:
    ro, full = tmpfs("ro", ro=True), tmpfs("full", size="256k")  # room for one chart, not five
    write_store(tmp_path / "demo" / "results.db", demo_records(seeds=1))
    (tmp_path / "file.txt").write_text("a file\n")
    (full / "report.md").write_text("the previous report\n")
    cases = {  # --out -> why it cannot be written
        "/proc/nope": "No such file or directory", "file.txt/report": "Not a directory",
        "file.txt": "Not a directory", f"{ro}/report": "Read-only file system",
        str(full): "No space left on device",
    }
    before = tree(tmp_path)
    for out, why in cases.items():
        res = run_cli("dse-report", "demo", "--out", out, cwd=tmp_path)
        assert_one_line(res, f"dse-report: error: --out: cannot write {out}: {why}")
    assert tree(tmp_path) == before  # no chart beside the old report.md, no staging folder
