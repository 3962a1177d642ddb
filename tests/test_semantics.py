"""Same hash, same numbers: what dse.TRAINING_SEMANTICS promises, and how older rows are skipped."""

from __future__ import annotations

import math
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

import dse
from dse.store import ResultsStore
from tests.conftest import run_cli

TINY = ("data=synthetic", "data.synthetic_size=256", "data.val_size=128", "trainer=smoke",
        "trainer.max_epochs=1",
        "model.base_e=16", "model.incr_e=16", "trainer.precision=32-true", "study.name=pin")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# TINY's numbers on the CPU in fp32 with one thread, under TRAINING_SEMANTICS = PINNED_SEMANTICS
PINNED_SEMANTICS = 1
PINNED = {"config_hash": "fa5dc3ae4e0943e8", "val_top1": 0.125, "test_top1": 0.08984375,
          "val_loss": 2.30212140083313, "test_loss": 2.303419828414917}


def _train(workdir: Path, *extra: str) -> str:
    res = run_cli("dse-train", *TINY, *extra, cwd=workdir, env=ONE_THREAD)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout + res.stderr


def _rows(workdir: Path) -> list[dict]:
    with ResultsStore(workdir / "runs/pin/results.db", create=False) as store:
        return store.frame().to_dict("records")


def _assert_pinned(row: dict) -> None:
    got = {k: row[k] for k in PINNED}
    same = got["config_hash"] == PINNED["config_hash"] and all(
        math.isclose(got[k], v, rel_tol=1e-5) for k, v in PINNED.items() if k != "config_hash")
    assert same and dse.TRAINING_SEMANTICS == PINNED_SEMANTICS, (
        f"a tiny run's numbers changed ({got} != {PINNED}): if training changed on purpose, bump "
        "dse.TRAINING_SEMANTICS (dse/__init__.py) and pin the new numbers and semantics here; "
        "else the change altered training by accident")


@pytest.mark.slow
def test_tiny_run_numbers_are_pinned_and_older_rows_count_as_done_unless_rerun_stale(
        workdir: Path) -> None:
    _train(workdir)
    [first] = _rows(workdir)
    assert first["training_semantics"] == dse.TRAINING_SEMANTICS
    _assert_pinned(first)
    with closing(sqlite3.connect(workdir / "runs/pin/results.db")) as con:  # as an older dse wrote
        con.execute("update runs set training_semantics = null")
        con.commit()
    out = _train(workdir)
    assert (f"seed 0 already in the store (ok, training semantics unknown, now "
            f"{dse.TRAINING_SEMANTICS})") in out
    assert len(_rows(workdir)) == 1
    out = _train(workdir, "study.rerun=stale")
    assert "seed 0 is in the store from older training, training semantics unknown" in out
    rows = _rows(workdir)
    assert len(rows) == 2 and rows[1]["training_semantics"] == dse.TRAINING_SEMANTICS
    _assert_pinned(rows[1])
    out = _train(workdir, "study.rerun=stale")
    assert "seed 0 already in the store (ok)" in out and len(_rows(workdir)) == 2
