"""One design point: validate, skip what the store has, claim the rest, train each seed, record, return.

This is the body of ``dse-train``'s Hydra task. It never raises for a training failure inside a
sweep: the failure becomes a ``failed`` (or ``diverged``/``pruned``) row and a returned status, so
one bad point cannot abort a multirun. Bad *input* is different: it raises
:class:`~dse.errors.ConfigError` before anything is trained or written.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf

from dse import TRAINING_SEMANTICS
from dse.store import FINISHED, ResultsStore, RunRecord, claims, config_hash
from dse.store.fallback import Kept, append_or_keep
from dse.train.checkpoints import check_folder, discard, resume_dir
from dse.train.fused import Member, device_settings, train_group
from dse.train.loggers import check_logger
from dse.train.summary import summarize
from dse.validate import STALE, model_report, validate

log = logging.getLogger("dse.train")


def train_once(cfg: DictConfig, report: Any, seed: int, out_dir: Path, overrides: str = "",
               callbacks: tuple[Callback, ...] = (), run_id: str | None = None) -> dict[str, Any]:
    """Train one seed (a group of one); returns the complete store row, whatever happened.

    ``run_id``: the id the row must have (the one its claim announced to waiting workers).
    """
    return train_group([Member(cfg, report, seed, out_dir, overrides, run_id)], callbacks)[0]


def check_job(cfg: DictConfig) -> Any:
    """:func:`dse.validate.validate` and what it cannot check without torch: the GPU asked for,
    the logger's class and arguments and each seed's resume folder. dse-train's preflight runs it
    on every job before Hydra writes; each job runs it again before it trains. Returns the
    model's analytic report."""
    validate(cfg)
    device_settings(cfg.trainer)
    check_logger(OmegaConf.select(cfg, "logger"))
    for seed in range(cfg.seed, cfg.seed + cfg.study.seeds):
        check_folder(cfg, seed)
    return model_report(cfg)


def check_stores(cfgs: list[DictConfig]) -> None:
    """Open (creating if new) each store these jobs append to: a URL that is garbage, a foreign
    file, a newer schema, a missing driver or an unreachable server is refused before training."""
    seen = set()
    for cfg in cfgs:
        key = (OmegaConf.select(cfg, "store.url"), str(cfg.paths.runs), str(cfg.study.name))
        if key not in seen:
            seen.add(key)
            ResultsStore.from_config(cfg).close()


@dataclass
class Point:
    """One design point being run: what each of its seeds needs to be fetched or trained."""

    cfg: DictConfig
    report: Any
    out_dir: Path
    overrides: str
    given_callbacks: tuple[Callback, ...]

    @functools.cached_property
    def chash(self) -> str:
        return config_hash(self.cfg)

    @functools.cached_property
    def callbacks(self) -> tuple[Callback, ...]:
        """The caller's callbacks, else the Optuna pruner of the trial this job runs (if any)."""
        if self.given_callbacks:
            return self.given_callbacks
        from dse.sweep.pruning import pruning_callback_from_env

        cb = pruning_callback_from_env()
        return (cb,) if cb is not None else ()

    def stored(self, store: ResultsStore, seed: int) -> dict[str, Any] | None:
        """The stored row that makes training this seed unnecessary, or None.

        A row of an older or unknown training semantics still counts (a week of sweeps is not
        dropped by an upgrade), saying so, unless ``study.rerun=stale`` retrains it.
        """
        rerun = self.cfg.study.rerun
        if rerun is True:
            return None
        row = store.get(self.chash, seed, statuses=FINISHED)
        if row is None:
            return None
        semantics = row.get("training_semantics")
        stale = "" if semantics == TRAINING_SEMANTICS else \
            f", training semantics {semantics or 'unknown'}, now {TRAINING_SEMANTICS}"
        if stale and rerun == STALE:
            log.info("retrain: %s seed %d is in the store from older training%s",
                     self.chash, seed, stale)
            return None
        log.info("skip: %s seed %d already in the store (%s%s)", self.chash, seed,
                 row["status"], stale)
        return row

    def row(self, store: ResultsStore, seed: int, wait: bool) -> dict[str, Any] | claims.Holder:
        """This seed's row: stored already, trained here under a claim, or the stored row of
        the worker that held the claim. With ``wait=False`` a live holder is returned instead."""
        while True:
            if (stored := self.stored(store, seed)) is not None:
                return stored
            got = claims.acquire(store, self.chash, seed)
            if isinstance(got, claims.Claim):
                with got:  # stored by another worker between our look and our claim?
                    return self.stored(store, seed) or self.train(store, seed, got.run_id)
            if not wait:
                log.info("later: %s seed %d is being trained by %s", self.chash, seed, got)
                return got
            if (theirs := claims.wait(store, got)) is not None:
                log.info("skip: %s seed %d trained meanwhile by %s (%s)", self.chash, seed, got,
                         theirs["status"])
                return theirs

    def train(self, store: ResultsStore, seed: int, run_id: str) -> dict[str, Any]:
        """Train (or resume) one seed and store its row; then its resume checkpoints go.

        A process killed before this stores nothing, so its claim goes stale and its checkpoints
        stay for the rerun. Once the row is safe (stored, or kept in the run dir) the resume
        folder is removed whatever the status: a failed or diverged point's checkpoints would
        only fill the disk of a long sweep.
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        rec = train_once(self.cfg, self.report, seed, self.out_dir, self.overrides, self.callbacks,
                         run_id)
        return self.record(store, rec)

    def record(self, store: ResultsStore, rec: dict[str, Any]) -> dict[str, Any]:
        """Store a trained seed's row (or keep it in the run dir); then its resume folder goes."""
        kept = append_or_keep(store, RunRecord(**rec), self.out_dir)  # rejects a misspelt column
        if kept is not Kept.NOWHERE:  # stored or kept beside the run: the checkpoints may go
            discard(resume_dir(self.cfg, rec["seed"]))
        log.info("%s seed %d: %s val_top1=%s test_top1=%s (%.1fs)", self.chash, rec["seed"],
                 rec["status"], rec.get("val_top1"), rec.get("test_top1"),
                 rec.get("train_seconds") or 0.0)
        return rec


def run_point(cfg: DictConfig, out_dir: str | Path, overrides: str = "",
              callbacks: tuple[Callback, ...] = ()) -> dict[str, Any]:
    """Train (or fetch from the store) every seed of one design point; append new rows.

    A seed that another worker is training is put off until the others are done, then taken from
    the store once that worker stored it: concurrent sweeps train each (point, seed) once.
    """
    point = Point(cfg, check_job(cfg), Path(out_dir), overrides, callbacks)
    with ResultsStore.from_config(cfg) as store:
        rows = {seed: point.row(store, seed, wait=False)
                for seed in range(cfg.seed, cfg.seed + cfg.study.seeds)}
        for seed, row in rows.items():
            if isinstance(row, claims.Holder):
                rows[seed] = point.row(store, seed, wait=True)
    return summarize(list(rows.values()), point.report)
