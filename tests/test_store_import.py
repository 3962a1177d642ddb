"""``dse-store import`` cannot break a store: every kept row is checked before any is written."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from dse.store import ResultsStore, RunRecord
from dse.store.cli import main
from dse.store.fallback import FALLBACK_NAME, Kept, append_or_keep
from dse.store.schema import native_row

GOOD = native_row(RunRecord(run_id="good1", study="s", config_hash="ab" * 8, seed=1))


def _line(**change: object) -> str:
    return json.dumps({**GOOD, **change})


# case -> (the bad line after a good one, or bytes for the whole file; what the error line says)
CASES: dict[str, tuple[str | bytes, str]] = {
    "infinite seed": ('{"run_id": "a", "study": "s", "config_hash": "x", "seed": Infinity, '
                      '"status": "ok"}', "seed must be an integer in int64, not inf"),
    "unknown status": (_line(status="hacked"), "status 'hacked' is not one of ok,"),
    "only a run_id": ('{"run_id": "min1"}', "study missing"),
    "empty config hash": (_line(config_hash=""), "config_hash must be 1 to 64 characters"),
    "50 MB string": (_line(error="x" * 50_000_000),
                     "error must be text of at most 262,144 characters, not a str of"),
    "null run_id": (_line(run_id=None), "run_id must not be null"),
    "text seed": (_line(seed="abc"), "seed must be an integer in int64, not 'abc'"),
    "huge seed": (_line(seed=10**30), "seed must be an integer in int64, not 10000000"),
    "nested config": (_line(config={"a": 1}), "config must be text of at most"),
    "unknown column": (_line(color="red"), "color not a runs column"),
    "not an object": ("[1, 2]", "row a JSON object, not list"),
    "not JSON": ("{oops", "not JSON: "),
    "NaN where a number is required": (_line(sr=float("nan")), "sr must be a finite number"),
    "bool as int": (_line(seed=True), "seed must be an integer in int64, not True"),
    "binary file": (bytes(range(256)) * 4, "is not a kept-rows file (not UTF-8 text)"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_row_is_refused_in_one_line_and_nothing_is_written(
        case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad, needle = CASES[case]
    needle = needle if isinstance(bad, bytes) else f"line 2 is not a kept dse row ({needle}"
    kept = tmp_path / "unstored_rows.jsonl"
    if isinstance(bad, bytes):
        kept.write_bytes(bad)
    else:
        kept.write_text(json.dumps(GOOD) + "\n" + bad + "\n")
    store = tmp_path / "results.db"
    ResultsStore(store).close()
    before = hashlib.sha256(store.read_bytes()).hexdigest()
    with pytest.raises(SystemExit) as exc:
        main(["import", str(kept), str(store)])
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and out == "" and err.count("\n") == 1, err[:300]
    assert err.startswith("dse-store: error: FILE: ") and needle in err, err[:300]
    assert len(err) < 400
    assert hashlib.sha256(store.read_bytes()).hexdigest() == before
    with ResultsStore(store, create=False) as s:
        assert s.count() == 0


def test_good_rows_import_with_their_values(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    kept = tmp_path / "unstored_rows.jsonl"
    kept.write_text(json.dumps(GOOD) + "\n" + _line(run_id="good2", sr=1, val_loss=float("nan"))
                    + "\n")
    main(["import", str(kept), str(tmp_path / "r.db")])
    assert "imported 2 of 2 rows" in capsys.readouterr().out
    with ResultsStore(tmp_path / "r.db", create=False) as s:
        df = s.frame().set_index("run_id")
    assert df.at["good2", "sr"] == 1.0 and df.at["good1", "seed"] == 1
    assert df["val_loss"].isna().all()


def test_append_or_keep_says_where_the_row_went(tmp_path: Path) -> None:
    """The store, the run's folder, or nowhere: only then are the run's checkpoints all there is."""
    db, run = tmp_path / "s" / "r.db", tmp_path / "run"
    with ResultsStore(db) as store:
        assert append_or_keep(store, RunRecord(**GOOD), run) is Kept.STORE
        assert store.count() == 1 and not run.exists()
        shutil.rmtree(db.parent)  # the store vanishes, as a lost mount would
        row = RunRecord(**{**GOOD, "run_id": "good2"})
        assert append_or_keep(store, row, run) is Kept.FILE
        assert [json.loads(line)["run_id"] for line in (run / FALLBACK_NAME).read_text().splitlines()] \
            == ["good2"]
        (tmp_path / "a_file").write_text("")
        assert append_or_keep(store, row, tmp_path / "a_file" / "run") is Kept.NOWHERE
