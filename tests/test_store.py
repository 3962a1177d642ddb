"""Results store: round-trips, run identity, concurrent writers, foreign files, dse-store."""

from __future__ import annotations

import importlib.util
import multiprocessing as mp
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import fields
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import DictConfig, OmegaConf

from dse.analysis.cli import main as report_main
from dse.analysis.loading import load
from dse.config import Config
from dse.errors import ConfigError
from dse.store import (
    RUN_COLUMNS,
    SCHEMA_VERSION,
    ResultsStore,
    RunRecord,
    claims,
    config_hash,
    provenance,
    utcnow_iso,
)
from dse.store.cli import main
from dse.store.record import COLUMN_TYPES
from dse.store.schema import CLAIMS_TABLE
from tests.conftest import assert_one_line, run_cli, tree

HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None


def full_record(i: int = 0, **kw) -> RunRecord:
    """A record with every column set to a non-default value, so nothing round-trips by accident."""
    values = dict(
        run_id=f"{i:08x}" + "0" * 24, study="s1", config_hash=f"{i:016x}", seed=i, status="ok",
        error="none really", model="fire_small", data="fashion_mnist", trainer="smoke", base_e=128,
        incr_e=64, freq=2, n_fire=8, sr=0.25, pct3x3=0.75, dropout=0.5, bypass="simple",
        batch_norm=True, stem_channels=64, stem_kernel=3, stem_stride=1,
        pool_after="conv1,fire3,fire5", params=123_456_789_012, size_bytes=4 * 123_456_789_012,
        macs=3_000_000_000, image_size=28, num_classes=10, subset=4000, max_epochs=3,
        val_top1=0.91, val_top5=0.99, val_loss=0.25, test_top1=0.9, test_top5=0.98, test_loss=0.3,
        epochs=3, train_seconds=12.5, images_per_s=4321.0, resumed_from_epoch=2, latency_ms=0.18,
        latency_p90_ms=0.21, latency_b64_ms=11.2, latency_b64_p90_ms=12.9, torch_latency_ms=4.0,
        torch_latency_p90_ms=4.6, torch_latency_b64_ms=110.3, torch_latency_b64_p90_ms=121.7,
        latency_threads=1, trial=7, slurm_job="41_2", device="cpu",
        torch_version="2.x", dse_version="0.1.0", git_commit="abc", started_at=utcnow_iso(),
        finished_at=utcnow_iso(), log_uri="/runs/s1/single/t/csv/seed0", overrides="model.sr=0.25",
        config='{"a": 1}', training_semantics=1, precision="bf16-mixed", channels_last=True)
    values.update(kw)
    assert set(values) == set(RUN_COLUMNS)
    return RunRecord(**values)


def test_record_columns_match_contract() -> None:
    contract = (Path(__file__).parents[1] / "docs" / "CONTRACTS.md").read_text()
    table = contract.split("table `runs`")[1].split("## ")[0]
    for col in RUN_COLUMNS:
        assert re.search(rf"\b{col}\b", table), col
    assert RUN_COLUMNS[0] == "run_id" and len(RUN_COLUMNS) == len(fields(RunRecord)) == 62


def test_contract_table_lists_the_record_in_order() -> None:
    """docs/CONTRACTS.md's run-record table is prose written by hand: this keeps it the record's."""
    contract = (Path(__file__).parents[1] / "docs" / "CONTRACTS.md").read_text()
    table = contract.split("table `runs`")[1].split("## ")[0]
    documented: list[tuple[str, str]] = []
    for line in table.splitlines()[3:]:
        if line.startswith("|"):
            names, kind = (cell.strip() for cell in line.strip("|").split("|")[:2])
            documented += [(name.strip(), kind) for name in names.split(",")]
    want = [(col, kind.__name__ + ("/null" if optional else ""))
            for col, (kind, optional) in COLUMN_TYPES.items()]
    assert [c for c, _ in documented] == list(RUN_COLUMNS)
    assert documented == want


def test_the_store_imports_nothing_above_it() -> None:
    """Data flows record -> store -> charts: no config checks, Hydra, torch, training or export."""
    code = ("import sys, dse.store.cli, dse.store.claims, dse.store.fallback, dse.store.migrate; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('hydra', 'torch', 'lightning') "
            "or m.startswith(('dse.validate', 'dse.train', 'dse.export', 'dse.sweep', 'dse.compress'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_append_frame_get_round_trip(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "deep" / "er" / "results.db")
    rec = full_record(1)
    sparse = RunRecord(study="s2", config_hash="h", seed=0, status="failed", error="boom")
    store.append(rec)
    store.append(sparse.to_dict())
    df = store.frame()
    assert list(df.columns) == list(RUN_COLUMNS) and len(df) == 2
    row = df[df.run_id == rec.run_id].iloc[0]
    for col, want in rec.to_dict().items():
        assert row[col] == want, col
    assert df.dtypes["batch_norm"] == "bool" and df.dtypes["subset"] == "Int64"
    nulls = df[df.run_id == sparse.run_id].iloc[0]
    assert pd.isna(nulls["val_top1"]) and pd.isna(nulls["subset"]) and pd.isna(nulls["trial"])
    assert store.get(rec.config_hash, rec.seed) == rec.to_dict()  # native types, exact
    assert store.get("h", 0, statuses=None) == sparse.to_dict()
    assert store.studies() == ["s1", "s2"]
    assert store.count() == 2 and store.count(study="s1") == 1
    assert store.count(status=["ok", "failed"]) == 2 and store.count(status="diverged") == 0
    assert store.frame(study="s2", status="failed").run_id.tolist() == [sparse.run_id]
    with pytest.raises(TypeError):
        store.append({"not_a_column": 1})
    store.close()
    assert ResultsStore(f"sqlite:///{tmp_path}/deep/er/results.db").count() == 2  # reopen


def test_get_statuses_and_latest(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.db")
    store.append(full_record(1, config_hash="p", seed=0, status="failed"))
    assert store.get("p", 0) is None
    assert store.get("p", 0, statuses=None) and store.get("p", 0, statuses=["failed"])
    late = "2030-01-01T00:00:00.000+00:00"
    store.append(full_record(2, config_hash="p", seed=0, finished_at=late, val_top1=0.5))
    store.append(full_record(3, config_hash="p", seed=0, finished_at=late.replace("2030", "2031"),
                             status="diverged", val_top1=None))
    assert store.get("p", 0) and store.get("p", 1) is None and store.get("q", 0) is None
    assert store.get("p", 0)["run_id"].startswith(f"{3:08x}")  # the latest wins
    assert store.get("p", 0, statuses=("ok",))["val_top1"] == 0.5


def test_other_tables(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.db")
    assert store.frame(table="compressions").empty and store.count(table="compressions") == 0
    store.append({"run_id": "a", "bits": 8, "ratio": 0.1}, table="compressions")
    store.append(pd.DataFrame({"run_id": ["a", "b"], "bits": [4, 2], "ratio": [0.05, 0.02]}),
                 table="compressions")
    assert store.frame(table="compressions").bits.tolist() == [8, 4, 2]
    t = store.ensure_table("notes", {"run_id": str, "score": float | None})
    assert not t.c.run_id.nullable and t.c.score.nullable
    store.append({"run_id": "a", "score": None}, table="notes")
    assert store.count(table="notes") == 1
    with pytest.raises(ValueError):
        store.append({"key": "x", "value": "y"}, table="dse_meta")
    with pytest.raises(ValueError):
        store.frame(table="compressions", study="s")  # it has no study column


def test_ensure_table_adds_the_columns_an_older_table_lacks(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.db")
    store.ensure_table("notes", {"run_id": str})
    store.append({"run_id": "old"}, table="notes")
    t = store.ensure_table("notes", {"run_id": str, "score": float | None, "bits": int})
    assert t.c.score.nullable
    store.append({"run_id": "new", "score": 0.5, "bits": 8}, table="notes")
    rows = store.frame(table="notes")
    assert rows.run_id.tolist() == ["old", "new"] and rows.score.isna().tolist() == [True, False]
    assert store.ensure_table("notes", {"run_id": str}) is not None  # extra columns stay, no error


@pytest.fixture(scope="module")
def base_cfg() -> DictConfig:
    """The typed schema with its defaults: what compose() returns, minus Hydra's plugin scan."""
    return OmegaConf.structured(Config)


def _with(cfg: DictConfig, key: str, value: object) -> DictConfig:
    out = cfg.copy()
    OmegaConf.update(out, key, value, force_add=True)
    return out


def test_config_hash_stability_and_sensitivity(base_cfg: DictConfig) -> None:
    h = config_hash(base_cfg)
    assert len(h) == 16 and int(h, 16) >= 0
    assert config_hash(OmegaConf.to_container(base_cfg, resolve=True)) == h  # plain dict
    same = {"data.root": "/elsewhere", "seed": 3, "study.name": "other", "store.url": "sqlite://",
            "paths.runs": "/tmp/r", "model.name": "renamed", "data.num_workers": 7,
            "data.download": False, "data.device_resident": False, "trainer.name": "x",
            "trainer.accelerator": "gpu", "trainer.devices": 2, "trainer.progress_bar": "false",
            "trainer.checkpoint": True, "trainer.log_every_n_steps": 1, "trainer.test": False}
    for key, value in same.items():
        assert config_hash(_with(base_cfg, key, value)) == h, key
    changed = {"model.sr": 0.25, "model.bypass": "simple", "data.subset": 100, "trainer.lr": 0.01,
               "model.stem.channels": 32, "model.pool_after": ["conv1"], "data.name": "cifar10"}
    for key, value in changed.items():
        assert config_hash(_with(base_cfg, key, value)) != h, key
    # overrides as users type them: 0.50 is 0.5
    typed = OmegaConf.merge(base_cfg, OmegaConf.from_dotlist(["model.sr=0.50", "seed=9"]))
    assert config_hash(typed) == config_hash(_with(base_cfg, "model.sr", 0.5)) != h
    # one network, one hash: the model counts through its spec's inputs, pools as a set in layer order
    pools = _with(base_cfg, "model.pool_after", ["fire8", "conv1", "fire4"])
    assert config_hash(pools) == config_hash(_with(base_cfg, "model.extra", 1)) == h
    plain = {"model": {"sr": 0.5, "x": 1}, "data": {}, "trainer": {"warmup_epochs": 0}}
    written = {"trainer": {"warmup_epochs": 0.0}, "model": {"x": 1.0, "sr": 0.1 * 5}, "data": {}}
    assert config_hash(plain) == config_hash(written)


def test_record_from_config_and_provenance(tmp_path: Path, base_cfg: DictConfig) -> None:
    cfg = base_cfg.copy()
    for key, value in {"model.sr": 0.25, "data.subset": 100, "seed": 4, "study.name": "st",
                       "paths.runs": str(tmp_path)}.items():
        OmegaConf.update(cfg, key, value)
    rec = RunRecord.from_config(cfg, status="pruned")
    assert (rec.sr, rec.subset, rec.seed, rec.study, rec.status) == (0.25, 100, 4, "st", "pruned")
    assert rec.config_hash == config_hash(cfg) and rec.pool_after == "conv1,fire4,fire8"
    assert rec.stem_channels == 96 and rec.num_classes == 10 and rec.batch_norm is False
    prov = provenance()
    assert set(prov) == {"torch_version", "dse_version", "git_commit"} and prov["git_commit"]
    assert rec.torch_version == prov["torch_version"] and rec.dse_version == prov["dse_version"]
    store = ResultsStore.from_config(cfg)
    assert store.path == tmp_path / "st" / "results.db"
    assert ResultsStore.default_url(tmp_path, "st") == f"sqlite:///{tmp_path}/st/results.db"
    store.append(rec)
    assert store.get(rec.config_hash, 4, statuses=None)["config"] == rec.config
    with pytest.raises(ConfigError):
        ResultsStore.default_url(tmp_path, "../up")


def _writer(path: str, worker: int, barrier) -> None:
    store = ResultsStore(path)
    barrier.wait()
    for i in range(25):
        store.append(RunRecord(study=f"w{worker}", config_hash=f"{worker}-{i}", seed=i))


def test_concurrent_appends_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "c" / "results.db")
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_writer, args=(path, w, barrier)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 4
    df = ResultsStore(path).frame()
    assert len(df) == 100 and df.run_id.is_unique
    assert df.groupby("study").size().to_dict() == {f"w{w}": 25 for w in range(4)}


def _snapshot(path: Path) -> tuple[bytes, int, list[str]]:
    return path.read_bytes(), path.stat().st_mtime_ns, sorted(p.name for p in path.parent.iterdir())


def _assert_refused(path: Path, match: str) -> None:
    before = _snapshot(path)
    for create in (True, False):
        with pytest.raises(ConfigError, match=match) as err:
            ResultsStore(path, create=create)
        assert err.value.field == "store.url"
    assert _snapshot(path) == before


def test_refuses_non_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    path.write_text("my thesis, do not overwrite\n")
    _assert_refused(path, "not an SQLite database")


def test_refuses_foreign_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    with sqlite3.connect(path) as con:
        con.execute("create table other (x int)")
    con.close()
    _assert_refused(path, "not a dse results store")
    with sqlite3.connect(path) as con:
        tables = [r[0] for r in con.execute("select name from sqlite_master")]
    con.close()
    assert tables == ["other"]


def test_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    ResultsStore(path).close()
    with sqlite3.connect(path) as con:
        con.execute("update dse_meta set value=? where key='schema_version'",
                    (str(SCHEMA_VERSION + 1),))
    con.close()
    _assert_refused(path, "newer")


def test_empty_file_is_initialised_and_create_false_creates_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(ConfigError, match="empty"):
        ResultsStore(empty, create=False)
    assert empty.stat().st_size == 0
    ResultsStore(empty).append(RunRecord())
    assert ResultsStore(empty, create=False).count() == 1
    with pytest.raises(ConfigError, match="no results store"):
        ResultsStore(tmp_path / "nope" / "r.db", create=False)
    assert not (tmp_path / "nope").exists()
    assert ResultsStore("sqlite://").count() == 0  # in-memory works too


def _cli(*commands: list[str], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Run ``dse-store ARGS`` (or ``python -c CODE``) in parallel: each one imports pandas."""
    procs = [subprocess.Popen([sys.executable, *(c if c[:1] == ["-c"] else
                                                 ["-m", "dse.store.cli", *c])],
                              cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in commands]
    outs = [p.communicate(timeout=60) for p in procs]
    return [subprocess.CompletedProcess(p.args, p.returncode, *o)
            for p, o in zip(procs, outs, strict=True)]


def test_cli_show_and_export(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "runs" / "s1" / "results.db")
    for i in range(3):
        store.append(full_record(i, val_top1=0.5 + i / 10))
    store.append(full_record(9, study="s2", val_top1=None, subset=None, trial=None, error=None))
    cmds = [["show", "-n", "2"], ["export", "out/all.csv"]]  # the real entry point, STORE found
    if HAS_PYARROW:
        cmds.append(["export", "all.parquet", str(store.path)])
    results = _cli(*cmds, cwd=tmp_path)
    for r in results:
        assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "4 runs, latest 2" in results[0].stdout and "70.0" in results[0].stdout
    assert "wrote 4 runs" in results[1].stdout
    frame = store.frame()
    text = ["run_id", "status", "config_hash", "started_at", "pool_after", "error"]
    back = pd.read_csv(tmp_path / "out" / "all.csv", dtype=dict.fromkeys(text, str))
    assert list(back.columns) == list(RUN_COLUMNS) and len(back) == 4
    for col in text:
        assert back[col].fillna("").astype(str).tolist() == \
            frame[col].fillna("").astype(str).tolist(), col
    for col in ("seed", "params", "macs", "sr", "val_top1", "subset", "trial", "batch_norm"):
        pd.testing.assert_series_equal(back[col].astype("float64"), frame[col].astype("float64"))
    if HAS_PYARROW:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "all.parquet"), frame,
                                      check_dtype=False)


def test_cli_filters_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    store = ResultsStore(tmp_path / "runs" / "s1" / "results.db")
    store.append(full_record(1, status="failed"))
    store.append(full_record(2, study="s2"))
    monkeypatch.chdir(tmp_path)
    main(["show", "runs/s1", "--study", "s2", "--status", "ok,diverged"])
    out = capsys.readouterr().out
    assert "1 runs" in out and f"{2:08x}" in out and f"{1:08x}" not in out
    main(["show", "--status", "pruned", "--study", "s1"])
    assert "no runs" in capsys.readouterr().out
    main(["export", "s1.csv", "--study", "s1"])
    assert len(pd.read_csv(tmp_path / "s1.csv")) == 1



def test_cli_show_lines_up_with_the_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """#27: ``show`` names a run as the logs do (config hash, seed), so two seeds of one point are
    two rows; the settings the rows differ in are columns (a cifar10 row among Fashion-MNIST ones,
    an Optuna trial number, blank for a run outside Optuna), the rest one line above the table."""
    point = "b53a90ddc2377414"
    with ResultsStore(tmp_path / "results.db") as store:
        for seed in (0, 1):
            store.append(full_record(seed, config_hash=point, seed=seed, trial=None, resumed_from_epoch=None))
        store.append(full_record(2, config_hash="0c1f8e2a9d3b4c5e", trial=3, data="cifar10", image_size=32,
                                 sr=0.5, stem_channels=96, status="failed", val_top1=None, test_top1=None,
                                 latency_ms=None, resumed_from_epoch=None, epochs=0, train_seconds=1.5))
    monkeypatch.setenv("COLUMNS", "110")
    main(["show", str(tmp_path)])
    assert capsys.readouterr().out.splitlines() == [
        f"{tmp_path / 'results.db'}: 3 runs, latest 3",
        "every row: model fire_small, subset 4000, trainer smoke, base_e 128, incr_e 64, freq 2, n_fire 8, "
        "pct3x3 0.75,",
        "  dropout 0.5, bypass simple, batch_norm True, stem_kernel 3, stem_stride 1, num_classes 10, "
        "max_epochs 3,",
        "  pool_after conv1,fire3,fire5",
        "differ too (dse-store export has them): sr, stem_channels, image_size",
        "     config_hash seed trial          data study status       params       MiB  val%  test% "
        " lat_ms ep    s",
        "b53a90ddc2377414    0       fashion_mnist    s1     ok 123456789012 470950.28  91.0   90.0 "
        "   0.18  3 12.5",
        "b53a90ddc2377414    1       fashion_mnist    s1     ok 123456789012 470950.28  91.0   90.0 "
        "   0.18  3 12.5",
        "0c1f8e2a9d3b4c5e    2     3       cifar10    s1 failed 123456789012 470950.28     -      - "
        "      -  0  1.5"]
    monkeypatch.setenv("COLUMNS", "160")  # wider: the knobs that differ fit
    main(["show", str(tmp_path), "-n", "2"])
    assert capsys.readouterr().out.splitlines()[-3:] == [
        "     config_hash seed trial          data   sr stem_channels image_size study status       params "
        "      MiB  val%  test%  lat_ms ep    s",
        "b53a90ddc2377414    1       fashion_mnist 0.25            64         28    s1     ok 123456789012 "
        "470950.28  91.0   90.0    0.18  3 12.5",
        "0c1f8e2a9d3b4c5e    2     3       cifar10 0.50            96         32    s1 failed 123456789012 "
        "470950.28     -      -       -  0  1.5"]


def test_cli_show_says_where_moasha_pruned_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """#28: a MOASHA-pruned row's status cell names its rung and its front among the trials compared
    there (read back from the error column dse.sweep.moasha writes); any other row's is its status."""
    from dse.store.record import PRUNED_AT

    with ResultsStore(tmp_path / "results.db") as store:
        store.append(full_record(1, trial=1, resumed_from_epoch=None))
        moasha = PRUNED_AT.format(rung=2, rank=3, of=6, top=3)
        store.append(full_record(2, trial=2, status="pruned", error=moasha, epochs=2, test_top1=None,
                                 latency_ms=None, resumed_from_epoch=None))
        store.append(full_record(3, trial=3, status="pruned", error="Trial was pruned at epoch 0.", epochs=1,
                                 test_top1=None, latency_ms=None, resumed_from_epoch=None))
    monkeypatch.setenv("COLUMNS", "110")
    main(["show", str(tmp_path)])
    assert capsys.readouterr().out.splitlines()[-4:] == [
        "     config_hash seed trial study                status       "
        "params       MiB  val%  test%  lat_ms ep    s",
        "0000000000000001    1     1    s1                    ok 123456"
        "789012 470950.28  91.0   90.0    0.18  3 12.5",
        "0000000000000002    2     2    s1 pruned @2 (front 3/6) 123456"
        "789012 470950.28  91.0      -       -  2 12.5",
        "0000000000000003    3     3    s1                pruned 123456"
        "789012 470950.28  91.0      -       -  1 12.5"]


def test_cli_bad_input_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    for name in "ab":  # closed, so the WAL is folded into the file before sizes are taken
        with ResultsStore(tmp_path / "runs" / name / "results.db") as store:
            store.append(RunRecord(study=name))
    (tmp_path / "runs" / "nostore").mkdir()
    (tmp_path / "junk.db").write_text("not sqlite")
    (tmp_path / "empty.db").touch()

    def files() -> list[tuple[Path, int]]:  # WAL side files come and go with connections
        return sorted((p.relative_to(tmp_path), p.stat().st_size)
                      for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith(
                          ("-wal", "-shm")))

    before = files()
    no_arrow = ("import sys, runpy; sys.modules['pyarrow'] = None; sys.argv[1:] = "
                "['export', 'x.parquet', 'runs/a']; runpy.run_module('dse.store.cli', "
                "run_name='__main__')")
    cases = {  # argv -> what the one line must say
        ("show", "missing.db"): "no results store at missing.db",
        ("show", "runs/nostore"): "no results store at runs/nostore/results.db",
        ("show",): "several studies under runs/ (a, b)",
        ("show", "runs/a", "--study", "zz"): "no study 'zz'",
        ("export", "x.xlsx", "runs/a"): "unknown export format '.xlsx'",
        ("export", "x.csv", "junk.db"): "not an SQLite database",
        ("export", "x.csv", "empty.db"): "empty, not a dse results store",
        ("show", "runs", "-n", "x"): "invalid int value",
        ("show", "runs/a", "--status", "ok,bogus"):
            "--status: unknown status 'bogus' (statuses: ok, failed, diverged, pruned)",
        (): "required",
    }
    for r in _cli(["missing.db"], ["-c", no_arrow], cwd=tmp_path):  # the real entry point
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and r.stdout == "" and len(lines) == 1, r.stderr
    assert "invalid choice" in lines[0] or "pip install pyarrow" in lines[0]
    monkeypatch.chdir(tmp_path)
    for argv, want in cases.items():
        with pytest.raises(SystemExit) as exc:
            main(list(argv))
        out, err = capsys.readouterr()
        assert exc.value.code == 2 and out == "", argv
        assert err.startswith("dse-store: error: ") and err.count("\n") == 1, err
        assert want in err, (want, err)
    assert files() == before  # nothing written, not even an empty database


def test_cli_export_to_unwritable_or_full_paths_is_one_line(tmp_path: Path, tmpfs) -> None:
    ro, full = tmpfs("ro", ro=True), tmpfs("full")
    with ResultsStore(tmp_path / "runs" / "s1" / "results.db") as store:
        store.append([full_record(i, config="x" * 1000) for i in range(80)])  # ~100 kB of CSV
    (tmp_path / "file.txt").write_text("a file\n")
    (full / "all.csv").write_text("old\n")
    cases = {  # PATH -> why it cannot be written
        "/proc/nope/x.csv": "No such file or directory", "file.txt/x.csv": "Not a directory",
        f"{ro}/x.csv": "Read-only file system", f"{full}/all.csv": "No space left on device",
    }
    before = tree(tmp_path)
    for path, why in cases.items():
        res = run_cli("dse-store", "export", path, "runs/s1", cwd=tmp_path)
        assert_one_line(res, f"dse-store: error: PATH: cannot write {path}: {why}")
    assert tree(tmp_path) == before  # the old export intact, no temporary file left


def test_store_url_is_a_url_or_a_store_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for bad in ("garbage", "runs/typo", "notes.txt"):
        with pytest.raises(ConfigError, match="neither a SQLAlchemy URL .* nor a store path") as e:
            ResultsStore(bad)
        assert e.value.field == "store.url"
    assert list(tmp_path.iterdir()) == []
    for good in ("a.db", "b.sqlite", "c.SQLITE3"):
        ResultsStore(good).close()
    (tmp_path / "folder").mkdir()
    ResultsStore("folder").append(RunRecord())  # a folder means its results.db
    (tmp_path / "folder" / "results.db").rename(tmp_path / "mystore")
    assert ResultsStore("mystore", create=False).count() == 1  # an existing file, whatever its name
    before = sorted(tmp_path.rglob("*.db"))
    res = run_cli("dse-train", "store.url=garbage", "trainer=smoke", "data.subset=500",
                  "trainer.max_epochs=1", cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.splitlines() == [
        "dse-train: error: store.url: 'garbage' is neither a SQLAlchemy URL (dialect://...) nor a "
        "store path (an existing folder or file, or a new file ending in .db, .sqlite or .sqlite3)"]
    assert not (tmp_path / "garbage").exists() and sorted(tmp_path.rglob("*.db")) == before


def test_paths_with_hash_or_question_mark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    for i, name in enumerate(("st#x", "a?b", "100%")):
        with ResultsStore(f"{name}/results.db") as store:
            store.append(full_record(i))
        main(["show", name])
        assert f"{tmp_path / name / 'results.db'}: 1 runs" in capsys.readouterr().out
        assert ResultsStore(name, create=False).count() == 1
        assert load(name).run_id.tolist() == [full_record(i).run_id]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["100%", "a?b", "st#x"]  # no ./st, ./a


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Callable[[Path], Path]]:
    """Makes a read-only view of a folder: a read-only bind mount as root (root ignores mode bits,
    not a read-only mount), mode 555 otherwise; undone after the test."""
    undo: list[Callable[[], object]] = []

    def make(folder: Path) -> Path:
        if os.geteuid() != 0:
            folder.chmod(0o555)
            undo.append(lambda: folder.chmod(0o755))
            return folder
        view = folder.with_name(folder.name + "-ro")
        view.mkdir()
        for cmd in (["mount", "--bind", str(folder), str(view)],
                    ["mount", "-o", "remount,ro,bind", str(view)]):
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                pytest.skip(f"read-only bind mounts are not permitted here: {done.stderr.strip()}")
            if cmd[1] == "--bind":
                undo.append(lambda: subprocess.run(["umount", str(view)], check=True))
        assert not os.access(view, os.W_OK)
        return view

    yield make
    for step in reversed(undo):
        step()


def test_store_on_a_read_only_folder_is_read(tmp_path: Path, read_only: Callable[[Path], Path],
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with ResultsStore(tmp_path / "study" / "results.db") as store:
        store.append(full_record(1))
    view = read_only(tmp_path / "study")
    monkeypatch.chdir(tmp_path)
    main(["show", str(view)])
    assert "1 runs" in capsys.readouterr().out
    main(["export", "out.csv", str(view)])
    assert pd.read_csv(tmp_path / "out.csv", dtype=str).run_id.tolist() == [full_record(1).run_id]
    report_main([str(view), "--out", str(tmp_path / "report")])
    assert "wrote" in capsys.readouterr().out and (tmp_path / "report" / "report.md").is_file()
    with pytest.raises(ConfigError, match="is read-only .*: results cannot be written there"):
        ResultsStore(view)  # a run must not train for hours and then fail to store
    assert sorted(p.name for p in view.iterdir()) == ["results.db"]


def test_foreign_databases_are_refused_in_one_line_leaving_no_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    scripts = {"foreign.db": ["create table x (a)"],
               "no_run_id.db": ["create table dse_meta (key, value)",
                                "insert into dse_meta values ('schema_version', '1')",
                                "create table runs (x)"]}
    for name, statements in scripts.items():
        with closing(sqlite3.connect(tmp_path / name)) as con:
            con.execute("pragma journal_mode=wal")
            for sql in statements:
                con.execute(sql)
            con.commit()
    before = sorted(p.name for p in tmp_path.iterdir())
    monkeypatch.chdir(tmp_path)
    no_run_id = "no_run_id.db has a runs table without dse's columns (run_id, study, config_hash, seed, ...)"
    cases = {(main, "show", "foreign.db"): "is a database but not a dse results store (tables: x)",
             (main, "show", "no_run_id.db"): no_run_id,
             (main, "export", "x.csv", "no_run_id.db"): no_run_id,
             (report_main, "foreign.db"): "holds neither a dse store",
             (report_main, "no_run_id.db"): no_run_id}
    for (fn, *argv), want in cases.items():
        with pytest.raises(SystemExit) as exc:
            fn(argv)
        out, err = capsys.readouterr()
        assert exc.value.code == 2 and out == "" and err.count("\n") == 1, (argv, err)
        assert want in err, (want, err)
    with pytest.raises(ConfigError, match="without dse's columns"):
        ResultsStore(tmp_path / "no_run_id.db")  # a writer too, before it adds tables
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no -wal/-shm, no x.csv


@pytest.mark.skipif(not HAS_PYARROW, reason="pyarrow is not installed (pip install -e .)")
def test_parquet_export_round_trip_keeps_dtypes_and_values(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = ResultsStore(tmp_path / "r.db")
    store.append([full_record(1), RunRecord(study="s2", status="failed", error="boom")])
    main(["export", str(tmp_path / "all.parquet"), str(store.path)])
    assert "wrote 2 runs" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "all.parquet"), store.frame())


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "r.db") if request.param == "sqlite" else \
        request.getfixturevalue("pg_database")


def _plant(store: ResultsStore, seed: int, host: str, pid: int, expires_in: float) -> None:
    """A claim row as another worker's process would have inserted it."""
    with store.engine.begin() as conn:
        conn.execute(CLAIMS_TABLE.insert().values(
            config_hash="h", seed=seed, run_id=f"theirs{seed}", token=f"t{seed}", host=host,
            pid=pid, claimed_at=utcnow_iso(), expires_at=time.time() + expires_in))


def test_claims_one_holder_heartbeat_release_and_stale_takeover(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(claims, "HEARTBEAT_S", 0.05)
    monkeypatch.setattr(claims, "POLL_S", 0.05)
    store = ResultsStore(store_url)
    mine = claims.acquire(store, "h", 0)
    assert isinstance(mine, claims.Claim)
    live = claims.acquire(store, "h", 0)  # held by this very process: alive
    assert isinstance(live, claims.Holder) and live.run_id == mine.run_id
    assert (live.host, live.pid) == (claims.HOST, os.getpid()) and not live.stale()
    with mine:
        deadline = time.monotonic() + 60
        while claims.holder(store, "h", 0).expires_at == live.expires_at:  # until it beats
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.05)
    assert claims.holder(store, "h", 0) is None  # released

    dead = subprocess.Popen(["true"])
    dead.wait()
    _plant(store, 1, claims.HOST, dead.pid, 3600)  # this host, dead process: stale at once
    _plant(store, 2, "elsewhere", 1, 3600)  # another host: live until it expires
    _plant(store, 3, "elsewhere", 1, -1)
    got = {seed: claims.acquire(store, "h", seed) for seed in (1, 2, 3)}
    assert isinstance(got[1], claims.Claim) and isinstance(got[3], claims.Claim)
    assert isinstance(got[2], claims.Holder) and got[2].run_id == "theirs2"
    assert claims.holder(store, "h", 1).pid == os.getpid()

    held = claims.acquire(store, "p", 0)
    waiter = claims.acquire(store, "p", 0)
    assert isinstance(held, claims.Claim) and isinstance(waiter, claims.Holder)

    def finish() -> None:
        with held:
            time.sleep(0.3)
            store.append(RunRecord(run_id=held.run_id, config_hash="p", seed=0))

    worker = threading.Thread(target=finish)
    worker.start()
    row = claims.wait(store, waiter)  # returns once the holder stored its row and let go
    worker.join()
    assert row is not None and row["run_id"] == held.run_id and row["config_hash"] == "p"
    store.close()


def _racing_writer(url: str, worker: int, barrier, n: int) -> None:
    barrier.wait()  # every worker is a first writer: the schema is created while they race
    store = ResultsStore(url)
    for i in range(n):
        store.append(RunRecord(study="race", config_hash=f"{worker}-{i}", seed=i, status="ok",
                               params=1000 + i, size_bytes=4000 + 4 * i, val_top1=0.5))


def test_postgres_store_under_four_racing_writers(pg_database: str, tmp_path: Path) -> None:
    """The README's plain postgresql:// URL (psycopg 3): 4 processes x 50 appends, tables created
    once while the first writers race, then dse-store and dse-report read the store by URL."""
    ctx = mp.get_context("spawn")  # no forked SQLAlchemy engines or psycopg connections
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_racing_writer, args=(pg_database, w, barrier, 50))
             for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0] * 4
    store = ResultsStore(pg_database, create=False)
    df = store.frame()
    assert len(df) == 200 and df.run_id.is_unique and df.config_hash.is_unique
    import sqlalchemy as sa

    with store.engine.connect() as conn:
        meta = conn.execute(sa.text("select key, value from dse_meta")).all()
    assert sorted(meta) == sorted(set(meta)) and [k for k, _ in meta].count("schema_version") == 1
    store.close()
    shown = run_cli("dse-store", "show", pg_database, "-n", "0")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("race") == 200
    report = run_cli("dse-report", pg_database, "--out", str(tmp_path / "rep"))
    assert report.returncode == 0, report.stderr
    assert "(200 runs;" in report.stdout and (tmp_path / "rep" / "report.md").is_file()
