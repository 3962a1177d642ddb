"""A batch of jobs trained in fused groups (``hydra/launcher=dse_fused``), with ``run_point``'s
contract per (job, seed): skip, claim, group by :func:`~dse.train.fused.group_key`, record."""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dse.metrics import summarize
from dse.store import ResultsStore, claims
from dse.sweep.handoff import Handoff
from dse.train.checkpoints import discard
from dse.train.checks import device_settings, resume_dir, seeds
from dse.train.fused import Member, fusable, group_id, group_key, train_group
from dse.train.run import Point
from dse.validate import model_report

log = logging.getLogger("dse.train")


@dataclass
class Job:
    """One job of the batch as its launcher prepared it (its config validated)."""

    cfg: DictConfig
    out_dir: Path
    overrides: str = ""
    handoff: Handoff | None = None  # the job's Optuna trial, read from its env_set


@dataclass
class _Seed:
    job: int
    seed: int
    claim: claims.Claim


def plan(points: list[Point], todo: list[_Seed], max_members: int) -> list[list[_Seed]]:
    """The groups to train, in batch order: compatible seeds together, at most ``max_members``
    each; a seed whose job cannot be fused is a group of one."""
    keys = {j: None if fusable(points[j].cfg) else group_key(points[j].cfg)
            for j in dict.fromkeys(s.job for s in todo)}  # once per job, not per seed
    by_key: dict[Any, list[_Seed]] = defaultdict(list)
    for s in todo:
        by_key[keys[s.job] or ("alone", s.job, s.seed)].append(s)
    return [seeds[i:i + max_members] for seeds in by_key.values() for i in range(0, len(seeds), max_members)]


def _members(points: list[Point], jobs: list[Job], group: list[_Seed]) -> list[Member]:
    members = [Member(points[s.job].cfg, points[s.job].report, s.seed, points[s.job].out_dir,
                      points[s.job].overrides, s.claim.holder.run_id, jobs[s.job].handoff)
               for s in group]
    for m in members:
        m.out_dir.mkdir(parents=True, exist_ok=True)
    if len(members) == 1 and (why := fusable(members[0].cfg)):
        log.info("%s seed %d trains alone: %s", points[group[0].job].chash, members[0].seed, why)
    else:
        log.info("fused group of %d: %s", len(members),
                 ", ".join(f"{m.out_dir.name}/seed{m.seed}" for m in members))
    return members


def run_jobs(jobs: list[Job], max_members: int) -> list[dict[str, Any]]:
    """Every job's summary (:func:`dse.metrics.summarize`), in job order."""
    points = [Point(j.cfg, model_report(j.cfg), j.out_dir, j.overrides, (), device_settings(j.cfg.trainer))
              for j in jobs]
    rows: dict[tuple[int, int], Any] = {}
    todo: list[_Seed] = []
    held: dict[tuple[int, int], claims.Holder] = {}
    with contextlib.ExitStack() as stack:
        stores: dict[str, ResultsStore] = {}

        def store_of(p: Point) -> ResultsStore:
            if (url := ResultsStore.config_url(p.cfg)) not in stores:
                stores[url] = stack.enter_context(ResultsStore(url))
            return stores[url]

        try:  # stored rows into rows, our claims into todo, others' live claims into held
            for j, p in enumerate(points):
                for seed in seeds(p.cfg):
                    got = p.claim(store_of(p), seed)
                    if isinstance(got, claims.Claim):
                        todo.append(_Seed(j, seed, got))
                    elif isinstance(got, claims.Holder):
                        held[j, seed] = got
                    else:
                        rows[j, seed] = got
            for group in plan(points, todo, max_members):
                members = _members(points, jobs, group)
                for s, rec in zip(group, train_group(members, device=points[group[0].job].device),
                                  strict=True):
                    rows[s.job, s.seed] = points[s.job].record(store_of(points[s.job]), rec)
                    s.claim.__exit__(None, None, None)
                if (gid := group_id(members)) is not None:  # its rows are safe: its resume goes
                    discard(resume_dir(members[0].cfg, 0, gid))
        finally:
            for s in todo:
                if (s.job, s.seed) not in rows:
                    s.claim.__exit__(None, None, None)
        for (j, seed), _holder in held.items():
            rows[j, seed] = points[j].row(store_of(points[j]), seed, wait=True)
    return [summarize([rows[j, s] for s in seeds(p.cfg)], p.report) for j, p in enumerate(points)]
