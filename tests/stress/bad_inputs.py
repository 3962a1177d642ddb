"""Issue #24's bad inputs and faults, each run as a user would, and what each one did.

Not collected by pytest (about 50 commands, a few of which train a tiny network). Every case runs
in a fresh launch folder; its outcome is one of

- ``clean``: exit 2, one line on stderr, nothing written (the bad-input contract), or the outcome
  the case itself expects (``expect``: a full disk records its failed row and exits 1);
- ``wrote``: exit 2 and one line, but files appeared in the launch folder (or outside it);
- ``traceback``, ``multi-line``, ``accepted`` (exit 0), ``wrong exit``, ``ran code`` (a
  checkpoint's pickle ran), ``wrong place`` (an Optuna storage outside its study folder), ``no
  row`` (a failure the store never heard of), ``skipped`` (the case needs what this machine lacks:
  root for a tmpfs).

    python -m tests.stress.bad_inputs [--only NAME,...] [--verbose]

The tests (tests/test_bad_inputs.py) keep one fast case of each class; this driver keeps them all.
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
TINY = ["trainer=smoke", "data.subset=300", "trainer.max_epochs=1", "trainer.progress_bar=false"]
MARKER = "pwned.txt"  # what a malicious checkpoint's pickle would write


@dataclass
class Case:
    """One command line: ``setup`` prepares the launch folder (its files are not 'written')."""

    name: str
    prog: str
    args: list[str]
    setup: Callable[[Path], list[str]] | None = None  # extra args it adds
    env: dict[str, str] = field(default_factory=dict)
    expect: int = 2  # the exit code of a clean outcome
    check: Callable[[Path], str | None] | None = None  # after a clean exit: what else went wrong


def _foreign(d: Path) -> list[str]:
    (d / "notes.db").write_text("not a database\n")
    return ["store.url=notes.db"]


def _other_sqlite(d: Path) -> list[str]:
    with sqlite3.connect(d / "other.db") as db:
        db.execute("CREATE TABLE t (x)")
    return ["store.url=other.db"]


def _newer_schema(d: Path) -> list[str]:
    from dse.store import ResultsStore

    with ResultsStore(d / "new.db"):
        pass
    with sqlite3.connect(d / "new.db") as db:
        table = next(t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
                     if "meta" in t)
        cols = [c[1] for c in db.execute(f"PRAGMA table_info({table})")]
        db.execute(f"UPDATE {table} SET {cols[-1]} = '999'")
    return ["store.url=new.db"]


def _ckpt(path: Path) -> Path:
    """A tiny model checkpoint in dse-train's layout (docs/CONTRACTS.md), trained by nobody."""
    import torch
    from omegaconf import OmegaConf

    from dse.compose import compose
    from dse.model import build_model

    cfg = OmegaConf.to_container(compose(["trainer=smoke"]), resolve=True)
    model = build_model(cfg["model"])
    torch.save({"hyper_parameters": {"cfg": cfg},
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


class _Evil:
    """Unpickling this writes the marker: what a crafted checkpoint does when loaded as code."""

    def __init__(self, where: Path) -> None:
        self.where = where

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.where}",))


def _resume_folder(d: Path, overrides: list[str]) -> Path:
    from dse.compose import compose
    from dse.store import config_hash

    return d / "runs" / "default" / "resume" / config_hash(compose(overrides)) / "seed0"


def _evil_resume(d: Path) -> list[str]:
    folder = _resume_folder(d, TINY)
    folder.mkdir(parents=True)
    ckpt = folder / "epoch=9-step=999.ckpt"
    with zipfile.ZipFile(ckpt, "w") as z:  # torch's zip layout, a pickle that runs code
        z.writestr("archive/data.pkl", pickle.dumps({"state_dict": _Evil(d / MARKER)}, protocol=2))
        z.writestr("archive/version", "3\n")
    return []


def _linked_resume(d: Path) -> list[str]:
    folder = _resume_folder(d, TINY)
    folder.parent.mkdir(parents=True)
    target = d.parent / f"{d.name}-elsewhere"
    target.mkdir()
    (target / "epoch=0-step=1.ckpt").write_bytes(b"someone else's file")
    folder.symlink_to(target)
    return []


def _full_disk(d: Path) -> list[str]:
    runs = d / "runs"
    runs.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(runs)],
                         capture_output=True)
    if res.returncode:
        raise _Skip("cannot mount a tmpfs")
    return ["store.url=" + str(d.parent / f"{d.name}-store.db"), "data.subset=2000"]


def _good_ckpt(d: Path) -> list[str]:
    return [str(_ckpt(d / "good.ckpt")), "trainer.batch_size=abc"]


def _a_store(d: Path) -> list[str]:
    from dse.store import ResultsStore

    with ResultsStore(d / "runs" / "s" / "results.db"):
        pass
    return []


def _results_db(d: Path) -> list[str]:
    from dse.store import ResultsStore

    with ResultsStore(d / "results.db"):
        pass
    return [f"hydra.sweeper.storage=sqlite:///{d / 'results.db'}"]


class _Skip(Exception):
    pass


def _storage_in(name: str) -> Callable[[Path], str | None]:
    """The Optuna storage must be ``runs/<name>/optuna.db``, the study folder the results use."""
    return lambda d: None if (d / "runs" / name / "optuna.db").is_file() else "wrong place"


def _failed_row(d: Path) -> str | None:
    """A full run folder must still leave the run's failed row in the store elsewhere."""
    db = d.parent / f"{d.name}-store.db"
    if not db.is_file():
        return "no row"
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT status FROM runs").fetchall()
    return None if rows == [("failed",)] else "no row"


PARETO = ["study=pareto", "hydra.sweeper.n_trials=1", *TINY[1:]]
GRID = ["-m", *TINY]
CASES = [
    # 1. checkpoints never run code; a linked resume folder is not followed
    Case("ckpt-pickle", "dse-train", TINY, _evil_resume, {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"},
         expect=0),
    Case("resume-symlink", "dse-train", TINY, _linked_resume),
    # 2. a full disk under paths.runs: the failed row still reaches the store
    Case("full-disk", "dse-train", TINY, _full_disk, expect=1, check=_failed_row),
    # 3. a study name never moves the Optuna storage
    Case("name-escape", "dse-train", ["-m", *PARETO, "study.name=..%2F..%2Fprobe-escaped"],
         expect=0, check=_storage_in("..%2F..%2Fprobe-escaped")),
    Case("name-question", "dse-train", ["-m", *PARETO, "study.name=ques?tion"],
         expect=0, check=_storage_in("ques?tion")),
    Case("name-percent", "dse-train", ["-m", *PARETO, "study.name=per%41cent"],
         expect=0, check=_storage_in("per%41cent")),
    # 4. store.url refused before Hydra writes
    Case("url-garbage", "dse-train", [*TINY, "store.url=garbage"]),
    Case("url-bogus", "dse-train", [*TINY, "store.url=bogus://x"]),
    Case("url-foreign", "dse-train", TINY, _foreign),
    Case("url-other-sqlite", "dse-train", TINY, _other_sqlite),
    Case("url-newer", "dse-train", TINY, _newer_schema),
    Case("url-mysql", "dse-train", [*TINY, "store.url=mysql://u@127.0.0.1/db"]),
    Case("url-pg-down", "dse-train", [*TINY, "store.url=postgresql://u@127.0.0.1:9/db"]),
    Case("url-memory", "dse-train", [*TINY, "store.url=sqlite:///:memory:"]),
    # 5. a grid is validated whole before the first job
    Case("grid-sr", "dse-train", [*GRID, "model.sr=-1,0.25,0.5"]),
    Case("grid-lr", "dse-train", [*GRID, "model.sr=0.25,0.5", "trainer.lr=-1"]),
    Case("grid-plus", "dse-train", [*GRID, "model.sr=0.25,0.5", "+foo=1"]),
    Case("grid-url", "dse-train", [*GRID, "model.sr=0.25,0.5", "store.url=garbage"]),
    Case("grid-seed", "dse-train", [*GRID, "seed=-1"]),
    Case("grid-launcher", "dse-train", [*GRID, "model.sr=0.25", "hydra/launcher=dse_fused",
                                        "+hydra.launcher.foo=1"]),
    # 6. unchecked values
    Case("seed-neg", "dse-train", [*TINY, "seed=-1"]),
    Case("seed-big", "dse-train", [*TINY, "seed=99999999999"]),
    Case("classes-1", "dse-train", [*TINY, "data=synthetic", "data.num_classes=1"]),
    Case("in-channels", "dse-train", [*TINY, "model.in_channels=5"]),
    Case("num-classes", "dse-train", [*TINY, "model.num_classes=7"]),
    Case("logger-target", "dse-train", [*TINY, "logger._target_=no.such.Logger"]),
    Case("logger-kw", "dse-train", [*TINY, "+logger.bogus_kw=1"]),
    Case("huge-base-e", "dse-train", [*TINY, "model.base_e=1000000"]),
    Case("huge-n-fire", "dse-train", [*TINY, "model.n_fire=1000"]),
    Case("huge-image", "dse-train", [*TINY, "data=synthetic", "data.image_size=100000"]),
    # 7. tracebacks
    Case("name-300", "dse-train", [*TINY, "study.name=" + "n" * 300]),
    Case("compress-abc", "dse-compress", [], _good_ckpt),
    Case("export-abc", "dse-export", [], _good_ckpt),
    Case("bench-timeout-neg", "dse-bench", ["--only", "packing", "--k", "1", "--timeout", "-1"]),
    Case("bench-timeout-nan", "dse-bench", ["--only", "packing", "--k", "1", "--timeout", "nan"]),
    # 8. silently accepted
    Case("accel-gpu", "dse-train", [*TINY, "trainer.accelerator=gpu"]),
    Case("compile-2", "dse-train", [*TINY, "trainer.compile=2"]),
    Case("val-size", "dse-train", [*TINY, "data.val_size=100000"]),
    Case("synthetic-1", "dse-train", [*TINY, "data=synthetic", "data.synthetic_size=1"]),
    Case("bench-only-empty", "dse-bench", ["--only", ""]),
    Case("show-status-empty", "dse-store", ["show", "--status", ""], _a_store),
    Case("pruner-monitor", "dse-train", ["-m", *PARETO, "hydra.sweeper.pruner.monitor=bogus"]),
    Case("optuna-results-db", "dse-train", ["-m", *PARETO], _results_db),
    Case("runs-empty", "dse-train", [*TINY, "paths.runs="]),
]


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def judge(case: Case, res: subprocess.CompletedProcess, d: Path, before: set[str],
          outside: Path) -> str:
    err = res.stderr.strip().splitlines()
    if (d / MARKER).exists():
        return "ran code"
    if "Traceback" in res.stderr:
        return "traceback"
    if res.returncode != case.expect:
        return "accepted" if res.returncode == 0 else "wrong exit"
    if case.expect == 2 and len(err) != 1:
        return "multi-line"
    escaped = {p for p in files(outside) if not p.startswith(d.name)}
    if case.expect == 2 and (files(d) - before or escaped):
        return "wrote"
    if case.expect != 2 and escaped:
        return "wrote"
    return (case.check(d) if case.check else None) or "clean"


def run(case: Case, verbose: bool, timeout: float) -> tuple[str, str]:
    outside = Path(tempfile.mkdtemp(prefix="bad-inputs-"))
    d = outside / "launch"
    d.mkdir()
    try:
        try:
            extra = case.setup(d) if case.setup else []
        except _Skip as e:
            return "skipped", str(e)
        before, before_out = files(d), files(outside)
        try:
            res = subprocess.run([str(BIN / case.prog), *case.args, *extra], cwd=d,
                                 capture_output=True, text=True, timeout=timeout,
                                 env={**os.environ, "PYTHONWARNINGS": "ignore", **case.env})
        except subprocess.TimeoutExpired:
            return "timed out", f"still running after {timeout:.0f} s: accepted"
        outcome = judge(case, res, d, before | before_out, outside)
        if verbose:
            print(f"--- {case.name}: rc={res.returncode}\n{res.stderr[-1500:]}", file=sys.stderr)
        last = (res.stderr.strip().splitlines() or [""])[-1]
        return outcome, last[:90]
    finally:
        subprocess.run(["umount", str(d / "runs")], capture_output=True)
        shutil.rmtree(outside, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma-separated case names")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per case (default 900)")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    counts: Counter[str] = Counter()
    for case in CASES:
        if only and case.name not in only:
            continue
        outcome, last = run(case, args.verbose, args.timeout)
        counts[outcome] += 1
        print(f"{case.name:<20} {outcome:<11} {last}", flush=True)
    print("\n" + "  ".join(f"{k}: {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
