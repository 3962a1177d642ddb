"""One design point, the body of ``dse-train``'s task: skip what the store has, claim the rest, train
each seed, record. A training failure is a ``failed`` (``diverged``, ``pruned``) row, so one bad point
cannot abort a multirun; bad *input* is refused at the entry (:func:`check_job`)."""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig

from dse import TRAINING_SEMANTICS
from dse.latency import latency_columns
from dse.metrics import LATENCY, summarize
from dse.model import build_model
from dse.store import FINISHED, ResultsStore, RunRecord, claims, config_hash
from dse.store.fallback import Kept, append_or_keep
from dse.sweep.handoff import Handoff
from dse.train.checkpoints import discard
from dse.train.checks import Checked, Device, check_job, resume_dir, seeds
from dse.train.fused import Member, train_group
from dse.validate import STALE

log = logging.getLogger("dse.train")


def train_once(cfg: DictConfig, report: Any, seed: int, out_dir: Path, overrides: str = "",
               callbacks: tuple[Callback, ...] = (), run_id: str | None = None,
               device: Device | None = None, handoff: Any = None) -> dict[str, Any]:
    """Train one seed (a group of one); the complete store row, whatever happened. ``run_id``: the
    one its claim announced to waiting workers."""
    return train_group([Member(cfg, report, seed, out_dir, overrides, run_id, handoff)], callbacks, device)[0]


@dataclass
class Point:
    """One design point being run: what each of its seeds needs to be fetched or trained."""

    cfg: DictConfig
    report: Any
    out_dir: Path
    overrides: str
    given_callbacks: tuple[Callback, ...]
    device: Device | None = None

    @functools.cached_property
    def chash(self) -> str:
        return config_hash(self.cfg)

    @functools.cached_property
    def handoff(self) -> Handoff | None:
        """The Optuna trial this job runs (it is pruned), unless the caller brings its callbacks."""
        return None if self.given_callbacks else Handoff.from_env()

    def stored(self, store: ResultsStore, seed: int) -> dict[str, Any] | None:
        """The stored row that makes training this seed unnecessary, or None. One of an older
        training semantics counts too (saying so), unless ``study.rerun=stale``."""
        rerun = self.cfg.study.rerun
        if rerun is True or (row := store.get(self.chash, seed, statuses=FINISHED)) is None:
            return None
        semantics = row.get("training_semantics")
        stale = "" if semantics == TRAINING_SEMANTICS else \
            f", training semantics {semantics or 'unknown'}, now {TRAINING_SEMANTICS}"
        if stale and rerun == STALE:
            log.info("retrain: %s seed %d is in the store from older training%s", self.chash, seed, stale)
            return None
        log.info("skip: %s seed %d already in the store (%s%s)", self.chash, seed, row["status"], stale)
        return self.measured(store, row)

    def measured(self, store: ResultsStore, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` with the latency ``trainer.latency`` asks for and it lacks, measured and stored without
        retraining: it depends on the architecture and the machine, not the weights (nor the hash)."""
        if not self.cfg.trainer.latency or row["status"] != "ok" or \
                all(row.get(n) is not None for n in LATENCY):
            return row
        try:
            cols = latency_columns(build_model(self.cfg.model), self.cfg, "ok")
        except RuntimeError as e:  # the stored row stays good; the sweep goes on
            log.warning("%s seed %d: %s", self.chash, row["seed"], e)
            return row
        store.fill(row["run_id"], cols)
        log.info("measured: %s seed %d latency_ms=%.3g, stored without retraining", self.chash,
                 row["seed"], cols[LATENCY[0]])
        return {**row, **cols}

    def claim(self, store: ResultsStore, seed: int) -> dict[str, Any] | claims.Holder | claims.Claim:
        """This seed's stored row, the live holder of its claim, or our claim, entered (exit it)."""
        if (stored := self.stored(store, seed)) is not None:
            return stored
        got = claims.acquire(store, self.chash, seed)
        if isinstance(got, claims.Claim):
            with contextlib.ExitStack() as stack:
                stack.enter_context(got)
                if (stored := self.stored(store, seed)) is not None:  # stored between look and claim
                    return stored
                stack.pop_all()  # the caller's now
        return got

    def row(self, store: ResultsStore, seed: int, wait: bool) -> dict[str, Any] | claims.Holder:
        """This seed's row: stored already, trained here under a claim, or the stored row of
        the worker that held the claim. With ``wait=False`` a live holder is returned instead."""
        while True:
            got = self.claim(store, seed)
            if isinstance(got, claims.Claim):
                try:
                    return self.train(store, seed, got.run_id)
                finally:
                    got.__exit__(None, None, None)
            if not isinstance(got, claims.Holder):
                return got
            if not wait:
                log.info("later: %s seed %d is being trained by %s", self.chash, seed, got)
                return got
            if (theirs := claims.wait(store, got)) is not None:
                log.info("skip: %s seed %d trained meanwhile by %s (%s)", self.chash, seed, got,
                         theirs["status"])
                return theirs

    def train(self, store: ResultsStore, seed: int, run_id: str) -> dict[str, Any]:
        """Train (or resume) one seed and store its row. A process killed before that stores
        nothing: its claim goes stale and its checkpoints stay for the rerun."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        rec = train_once(self.cfg, self.report, seed, self.out_dir, self.overrides,
                         self.given_callbacks, run_id, self.device, self.handoff)
        return self.record(store, rec)

    def record(self, store: ResultsStore, rec: dict[str, Any]) -> dict[str, Any]:
        """Store a trained seed's row (or keep it in the run dir); once it is safe its resume folder
        goes whatever the status, or a long sweep's failed points would fill the disk."""
        kept = append_or_keep(store, RunRecord(**rec), self.out_dir)  # rejects a misspelt column
        if kept is not Kept.NOWHERE:  # stored or kept beside the run: the checkpoints may go
            discard(resume_dir(self.cfg, rec["seed"]))
        latency = f" latency_ms={rec['latency_ms']:.3g}" if rec.get("latency_ms") is not None else ""
        log.info("%s seed %d: %s val_top1=%s test_top1=%s%s (%.1fs)", self.chash, rec["seed"],
                 rec["status"], rec.get("val_top1"), rec.get("test_top1"), latency,
                 rec.get("train_seconds") or 0.0)
        return rec


def run_point(cfg: DictConfig, out_dir: str | Path, overrides: str = "",
              callbacks: tuple[Callback, ...] = (), checked: Checked | None = None) -> dict[str, Any]:
    """Train (or fetch from the store) every seed of one design point; ``checked``: the entry point's
    :func:`check_job`. A seed another worker trains is put off, then taken from the store."""
    report, device = checked or check_job(cfg)
    point = Point(cfg, report, Path(out_dir), overrides, callbacks, device)
    with ResultsStore.from_config(cfg) as store:
        rows = {seed: point.row(store, seed, wait=False) for seed in seeds(cfg)}
        for seed, row in rows.items():
            if isinstance(row, claims.Holder):
                rows[seed] = point.row(store, seed, wait=True)
    return summarize(list(rows.values()), point.report)
