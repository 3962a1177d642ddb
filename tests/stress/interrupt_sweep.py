"""Interrupt a real ``dse-train -m study=pareto`` sweep at chosen moments; check each stop.

Not collected by pytest (it trains real networks for minutes). For each moment it starts a fresh
sweep in a new folder, waits until the sweep reaches that moment (watched through the Optuna and
results SQLite files, read-only), sends the signal, and reports how long the process took to exit
and the state of every trial. A good stop exits within 10 s and leaves no trial RUNNING: the trial
in flight is ``FAIL`` with user attribute ``interrupted``.

    python -m tests.stress.interrupt_sweep [--signal INT|TERM] [--out DIR]   # from the repo root
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import restore_sigint

BIN = Path(sys.executable).parent
ARGS = ["-m", "study=pareto", "trainer=smoke", "data.subset=500", "trainer.max_epochs=2",
        "hydra.sweeper.n_trials=4", "hydra.sweeper.heartbeat_interval=1"]


def _rows(db: Path, sql: str) -> list[tuple]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.05) as con:
            return con.execute(sql).fetchall()
    except sqlite3.Error:
        return []


def _trials(work: Path) -> list[tuple]:
    return _rows(work / "runs/pareto/optuna.db", "select number, state from trials order by number")


def _ran(work: Path) -> int:
    return len(_rows(work / "runs/pareto/results.db", "select run_id from runs"))


def _params(work: Path, number: int) -> int:
    return len(_rows(work / "runs/pareto/optuna.db",
                     "select p.param_name from trial_params p join trials t using(trial_id) "
                     f"where t.number = {number}"))


def _training(work: Path) -> int:
    """How many trials have started training (Lightning wrote their hparams.yaml)."""
    return len(list((work / "runs/pareto/multirun").glob("*/*/csv/seed0/hparams.yaml")))


MOMENTS: dict[str, Callable[[Path], bool]] = {
    # trial 0 asked (a RUNNING row), its point not yet sampled: between ask and suggest
    "ask of trial 0": lambda w: any(n == 0 for n, _ in _trials(w)) and _params(w, 0) == 0,
    # the first trained trial is in Lightning's fit (budget-rejected trials never train)
    "training, 1st trained trial": lambda w: _ran(w) == 0 and _training(w) == 1,
    # its row is stored: the job is returning and the sweeper is about to tell its result
    "tell, 1st trained trial": lambda w: _ran(w) == 1,
    # the next trial asked right after the first one was told
    "ask, next trial": lambda w: _ran(w) == 1 and len(_trials(w)) >= 2 and _trials(w)[-1][1]
    == "RUNNING" and _training(w) == 1,
    # the second trained trial is in fit
    "training, 2nd trained trial": lambda w: _ran(w) == 1 and _training(w) == 2,
}


def interrupt_at(moment: str, sig: signal.Signals, root: Path) -> dict:
    work = Path(tempfile.mkdtemp(prefix="interrupt-", dir=root))
    proc = subprocess.Popen([str(BIN / "dse-train"), *ARGS], cwd=work, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=restore_sigint)
    reached = MOMENTS[moment]
    deadline = time.monotonic() + 600
    while not reached(work):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            return {"moment": moment, "error": "never reached", "stderr": proc.stderr.read()[-500:]}
        time.sleep(0.01)
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    exit_s = time.monotonic() - t0
    trials = _trials(work)
    attrs = _rows(work / "runs/pareto/optuna.db",
                  "select t.number, a.value_json from trial_user_attributes a "
                  "join trials t using(trial_id) where a.key = 'interrupted'")
    return {"moment": moment, "exit_s": round(exit_s, 2), "returncode": proc.returncode,
            "trials": trials, "interrupted": attrs, "rows": _ran(work),
            "stderr_tail": err.strip().splitlines()[-1:] if err.strip() else []}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--signal", default="INT", choices=["INT", "TERM"])
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()))
    args = ap.parse_args()
    sig = signal.Signals[f"SIG{args.signal}"]
    args.out.mkdir(parents=True, exist_ok=True)
    bad = 0
    for moment in MOMENTS:
        r = interrupt_at(moment, sig, args.out)
        good = ("error" not in r and r["exit_s"] <= 10
                and not any(state == "RUNNING" for _, state in r["trials"]))
        bad += not good
        print(("ok  " if good else "BAD ") + str(r), flush=True)
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
