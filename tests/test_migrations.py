"""Stores written by earlier dse releases keep working: read as they are, upgraded by a writer once.

The stores in tests/fixtures/releases/ were written by each release that changed the schema (its own
dse-train, tests/fixtures/releases/make.py); their ``.json`` holds the rows as that release stored
them.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

import dse
from dse.analysis.cli import main as report_main
from dse.store import ResultsStore, RunRecord
from dse.store.cli import main as store_main
from dse.store.migrate import chain
from dse.store.record import COLUMN_TYPES, RUN_COLUMNS
from dse.store.schema import MIGRATIONS, SCHEMA_VERSION, VERSION_TABLE

RELEASES = Path(__file__).parent / "fixtures" / "releases"
# r0001_d2d673e.db: revision 1's store, written by d2d673e (not its .pareto.*.db study files)
FIXTURES = sorted(p.stem for p in RELEASES.glob("r[0-9][0-9][0-9][0-9]_*.db") if "." not in p.stem)


def fixture_copy(name: str, where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(RELEASES / f"{name}.db", where / "results.db"))


def expected(name: str) -> dict[str, list[dict]]:
    return json.loads((RELEASES / f"{name}.json").read_text())


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dump(path: Path) -> list[str]:
    """The database as SQL statements: equal for equal content, whatever the page layout."""
    with closing(sqlite3.connect(path)) as con:
        return list(con.iterdump())


def assert_rows_equal(df: pd.DataFrame, rows: list[dict]) -> None:
    """The frame holds exactly these rows (by run_id), every stored value equal, the rest NA."""
    assert sorted(df["run_id"]) == sorted(r["run_id"] for r in rows)
    got = df.set_index("run_id")
    for row in rows:
        for col, want in row.items():
            if col == "run_id":
                continue
            have = got.at[row["run_id"], col]
            if want is None:
                assert pd.isna(have), (col, have)
            elif isinstance(want, float):
                assert math.isclose(float(have), want, rel_tol=0, abs_tol=0), (col, have, want)
            else:
                assert type(want)(have) == want, (col, have, want)
        for col in set(RUN_COLUMNS) - set(row):
            assert pd.isna(got.at[row["run_id"], col]) or got.at[row["run_id"], col] == "", col


def test_fixtures_cover_every_revision_before_this_one() -> None:
    assert [int(n[1:5]) for n in FIXTURES] == list(range(1, len(FIXTURES) + 1))
    assert len(FIXTURES) >= SCHEMA_VERSION - 1


def test_revision_files_form_one_chain_ending_at_schema_version() -> None:
    revs = chain()
    assert [r.revision for r in revs] == [f"{i:04d}" for i in range(1, SCHEMA_VERSION + 1)]
    assert [r.down_revision for r in revs] == [None, *(r.revision for r in revs[:-1])]
    for rev in revs:
        assert Path(rev.path).name.startswith(rev.revision + "_"), rev.path
        assert isinstance(rev.module.ADDITIVE, bool) and rev.module.ADDS


def test_every_record_field_has_a_migration(tmp_path: Path) -> None:
    """The guard: a RunRecord field is a column only through a revision file."""
    ResultsStore(tmp_path / "r.db").close()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'r.db'}")
    built = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("runs")}
    engine.dispose()
    lacking = [c for c in RUN_COLUMNS if c not in built]
    nxt, folder = f"{SCHEMA_VERSION + 1:04d}", MIGRATIONS.relative_to(MIGRATIONS.parents[3])
    assert not lacking, (
        f"RunRecord field(s) {', '.join(lacking)} have no migration: add {folder}/{nxt}_"
        f"{lacking[0]}.py (revision = '{nxt}', down_revision = '{SCHEMA_VERSION:04d}', "
        f"ADDS = {{'runs': {tuple(lacking)}}}) and its row in docs/CONTRACTS.md")
    assert set(built) == set(RUN_COLUMNS), f"columns no RunRecord field has: {set(built) - set(RUN_COLUMNS)}"
    for col, kind in built.items():
        assert kind.python_type is COLUMN_TYPES[col][0], (col, kind, COLUMN_TYPES[col])


@pytest.mark.parametrize("name", FIXTURES)
def test_release_store_is_read_as_it_is_then_upgraded_by_one_append(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, want = fixture_copy(name, tmp_path / "old"), expected(name)
    before = digest(path)
    with ResultsStore(path, create=False) as reader:
        assert reader.revision == int(name[1:5])
        assert_rows_equal(reader.frame(), want["runs"])
    store_main(["show", str(path)])
    store_main(["export", str(tmp_path / "runs.csv"), str(path)])
    assert f"{path}: {len(want['runs'])} runs" in capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "runs.csv")) == len(want["runs"])
    assert digest(path) == before and sorted(p.name for p in path.parent.iterdir()) == ["results.db"]

    with ResultsStore(path) as writer:
        assert writer.upgraded == [r.revision for r in chain()][int(name[1:5]):]
        writer.append(RunRecord(study="old", config_hash="0" * 16, seed=7, log_uri="x",
                                latency_ms=1.5, training_semantics=dse.TRAINING_SEMANTICS))
        df = writer.frame()
    assert len(df) == len(want["runs"]) + 1
    assert_rows_equal(df[df["seed"] != 7], want["runs"])
    assert df.loc[df["seed"] == 7, "latency_ms"].item() == 1.5
    with closing(sqlite3.connect(path)) as con:
        assert con.execute(f"select version_num from {VERSION_TABLE}").fetchall() == [
            (f"{SCHEMA_VERSION:04d}",)]
        meta = dict(con.execute("select key, value from dse_meta"))
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    report_main([str(path), "--out", str(tmp_path / "report")])
    n, report = len(want["runs"]), (tmp_path / "report" / "report.md").read_text()
    if int(name[1:5]) < 7:  # stored before runs.training_semantics
        assert (f"**Mixed training semantics** (runs per semantics: unknown: {n}, "
                f"{dse.TRAINING_SEMANTICS}: 1; this dse trains {dse.TRAINING_SEMANTICS})") in report
    else:
        assert "Mixed training semantics" not in report


def test_reader_on_a_read_only_mount_never_writes(tmpfs, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    name = FIXTURES[0]
    src = fixture_copy(name, tmp_path / "src")
    ro = tmpfs("ro", size="1m")
    shutil.copy(src, ro / "results.db")
    subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
    store_main(["show", str(ro)])
    assert "1 runs" in capsys.readouterr().out
    report_main([str(ro), "--out", str(tmp_path / "report")])
    assert digest(ro / "results.db") == digest(src)
    assert sorted(p.name for p in ro.iterdir()) == ["results.db"]


def test_upgrade_command_backs_up_the_file_and_says_where(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = fixture_copy(FIXTURES[0], tmp_path)
    before = dump(path)
    store_main(["upgrade", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    backup = Path(out[0].split(" to ")[-1])
    assert out[0].startswith(f"backed up {path} to ") and dump(backup) == before
    assert backup.parent == tmp_path and backup.name.startswith("results.db.backup-")
    assert out[1] == (f"upgraded {path} from schema 1 to {SCHEMA_VERSION} (changes "
                      f"{', '.join(r.revision for r in chain()[1:])})")
    store_main(["upgrade", str(path)])
    assert capsys.readouterr().out == f"{path} is at this dse's schema ({SCHEMA_VERSION}) already\n"
    assert len(list(tmp_path.glob("results.db.backup-*"))) == 1


def test_a_store_from_a_newer_dse_is_refused_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "results.db"
    ResultsStore(path).close()
    with closing(sqlite3.connect(path)) as con:
        con.execute(f"update {VERSION_TABLE} set version_num = '{SCHEMA_VERSION + 1:04d}'")
        con.commit()
    for argv in (["show", str(path)], ["upgrade", str(path)]):
        with pytest.raises(SystemExit) as exc:
            store_main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1
        assert f"schema version {SCHEMA_VERSION + 1}, newer than this dse's {SCHEMA_VERSION}" in err
        assert err.endswith("upgrade dse\n")


# ----------------------------------------------------------------------------- PostgreSQL
def _old_schema_on(url: str, name: str) -> int:
    """The release's own tables (reflected from its file) and rows, created on PostgreSQL."""
    src = sa.create_engine(f"sqlite:///file:{RELEASES / (name + '.db')}?mode=ro&immutable=1&uri=true")
    meta = sa.MetaData()
    meta.reflect(src)
    dst = sa.create_engine(url)
    meta.create_all(dst)
    rows = expected(name)
    with dst.begin() as conn:
        for table, values in rows.items():
            if values:
                conn.execute(meta.tables[table].insert(), [
                    {k: bool(v) if str(meta.tables[table].c[k].type) == "BOOLEAN" else v
                     for k, v in row.items()} for row in values])
    src.dispose()
    dst.dispose()
    return len(rows["runs"])


_OPEN = """
import json, sys
from dse.store import ResultsStore
print("ready", flush=True)
sys.stdin.readline()  # all four start together, once every one has imported dse
store = ResultsStore(sys.argv[1])
print(json.dumps(store.upgraded))
"""


def _four_open(url: str) -> list[list[str]]:
    """What four processes, released at once, each upgraded while opening ``url`` to write."""
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN, url], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    assert [p.stdout.readline() for p in procs] == ["ready\n"] * 4
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    return sorted(json.loads(out) for out, _ in results)


def test_four_workers_upgrade_an_old_sqlite_store_once(tmp_path: Path) -> None:
    name = FIXTURES[0]
    path = fixture_copy(name, tmp_path)
    assert _four_open(str(path)) == [[], [], [], [r.revision for r in chain()[1:]]]
    with ResultsStore(path, create=False) as store:
        assert store.revision == SCHEMA_VERSION
        assert_rows_equal(store.frame(), expected(name)["runs"])


def test_four_workers_upgrade_an_old_postgres_store_once(pg_database: str) -> None:
    name = FIXTURES[0]
    n = _old_schema_on(pg_database, name)
    with ResultsStore(pg_database, create=False) as reader:  # reads it as it is, writes nothing
        assert_rows_equal(reader.frame(), expected(name)["runs"])
    assert VERSION_TABLE not in sa.inspect(sa.create_engine(pg_database)).get_table_names()
    assert _four_open(pg_database) == [[], [], [], [r.revision for r in chain()[1:]]]
    with ResultsStore(pg_database) as store:
        assert store.upgraded == [] and store.count() == n
        assert_rows_equal(store.frame(), expected(name)["runs"])
        store.append(RunRecord(study="old", config_hash="1" * 16))
        assert store.count() == n + 1


@pytest.mark.parametrize("name", FIXTURES)
def test_release_rows_on_postgres_are_read_then_upgraded(name: str, pg_database: str) -> None:
    n = _old_schema_on(pg_database, name)
    with ResultsStore(pg_database, create=False) as reader:
        assert reader.revision == int(name[1:5])
        assert_rows_equal(reader.frame(), expected(name)["runs"])
    with ResultsStore(pg_database) as writer:
        assert writer.upgraded == [r.revision for r in chain()][int(name[1:5]):]
        writer.append(RunRecord(study="old", config_hash="2" * 16, seed=3))
        df = writer.frame()
    assert len(df) == n + 1
    assert_rows_equal(df[df["seed"] != 3], expected(name)["runs"])
