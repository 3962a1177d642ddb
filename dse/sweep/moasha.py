"""Multi-objective asynchronous successive halving (MOASHA; Schmucker et al., 2021) over an Optuna study
(``hydra.sweeper.pruner.name=moasha``, docs/OPTUNA.md). Written here because Optuna prunes one objective
only and Syne Tune's MOASHA drives its own backend, not an Optuna storage. The job stores each rung's
objective vector as the trial's user attribute ``rung_<epochs>``, so every worker decides alike from
the shared storage and the pruner holds no state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import optuna

from dse.metrics import REGISTRY

if TYPE_CHECKING:  # pragma: no cover - typing only
    from optuna.trial import FrozenTrial

RUNG_ATTR = "rung_{}"
DECISION_ATTR = "moasha"
PEERS = ("all", "cheaper")  # whom a trial is ranked against at a rung (MOASHAPruner's ``peers``)


def rungs(min_resource: int, reduction_factor: int, max_resource: int) -> list[int]:
    """The epochs at which a trial is judged: below ``max_resource`` (the last epoch is the end)."""
    out, r = [], min_resource
    while r < max_resource:
        out.append(r)
        r *= reduction_factor
    return out


def vector(names: Sequence[str], logged: Mapping[str, Any], analytic: Mapping[str, float]
           ) -> list[float] | None:
    """A trial's objectives at an epoch: per-epoch ones as logged, analytic ones exact, latency by its
    proxy, MACs; None while a logged one is missing."""
    out = []
    for name in names:
        metric = REGISTRY[name]
        if metric.per_epoch:
            if metric.key not in logged:
                return None
            out.append(float(logged[metric.key]))
        else:
            out.append(float(analytic["macs" if metric.latency else name]))
    return out


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is no worse than ``b`` everywhere and better somewhere (all objectives minimised)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def fronts(points: Sequence[Sequence[float]]) -> list[list[int]]:
    """Indices of ``points`` by non-dominated front, best first (all minimised). O(n^2) per front:
    a rung holds tens of trials, and Optuna's own sort is private."""
    left, out = list(range(len(points))), []
    while left:
        front = [i for i in left if not any(dominates(points[j], points[i]) for j in left if j != i)]
        out.append(front)
        left = [i for i in left if i not in front]
    return out


def crowding(points: Sequence[Sequence[float]], front: list[int]) -> dict[int, float]:
    """NSGA-II's crowding distance of each member of one front: the extremes are infinite."""
    dist = dict.fromkeys(front, 0.0)
    for m in range(len(points[front[0]])):
        order = sorted(front, key=lambda i: points[i][m])
        span = points[order[-1]][m] - points[order[0]][m]
        dist[order[0]] = dist[order[-1]] = float("inf")
        for lo, i, hi in zip(order, order[1:], order[2:], strict=False):
            dist[i] += (points[hi][m] - points[lo][m]) / span if span else 0.0
    return dist


def promoted(me: int, points: Sequence[Sequence[float]], reduction_factor: int) -> tuple[bool, int, int]:
    """(goes on, its front rank (1 = non-dominated), trials compared): ``points[me]`` goes on if it is
    among the top ``len(points) // reduction_factor`` (at least the best one, as Optuna's ASHA lets
    the first trials at a rung through only when they lead), ordered by front, then crowding distance
    (larger first), then index (the judged trial is index 0: a tie goes its way)."""
    key: dict[int, tuple[int, float, int]] = {}
    for rank, front in enumerate(fronts(points), 1):
        for i, d in crowding(points, front).items():
            key[i] = (rank, -d, i)
    order = sorted(key, key=key.__getitem__)
    return order.index(me) < max(1, len(points) // reduction_factor), key[me][0], len(points)


def cheaper_peers(vectors: Sequence[Sequence[float]], exact: Sequence[int]) -> list[list[float]]:
    """``vectors[0]`` and the vectors no worse than it in every exact objective (indices ``exact``),
    each cut to its learned objectives: ``peers="cheaper"`` ranks a trial by what it learned against
    the trials at most as costly, the ones that could keep it off the final front (a smaller
    model's accuracy, not a larger one's, is what it must beat)."""
    me = vectors[0]
    kept = [v for v in vectors if v is me or all(v[i] <= me[i] for i in exact)]
    return [[x for i, x in enumerate(v) if i not in exact] for v in kept]


class MOASHAPruner(optuna.pruners.BasePruner):
    """Prune a trial at a rung where it is not in the top ``1/reduction_factor`` of its peers (ranked by
    front, then crowding distance): every trial at the rung, or with ``peers="cheaper"`` those no
    worse in any exact (analytic) objective, ranked by the learned ones. One without a ``rung_<epochs>``
    vector there is never pruned. The sweeper checks the settings (dse.sweep.pruners.AT_LEAST, its
    _moasha) before any storage exists."""

    def __init__(self, min_resource: int = 1, reduction_factor: int = 3,
                 max_resource: int | str = 10**9, peers: str = "all") -> None:
        if peers not in PEERS:
            raise ValueError(f"peers must be one of {', '.join(PEERS)} (got {peers!r})")
        top = 10**9 if max_resource == "auto" else int(max_resource)  # the sweeper sets max_epochs
        self.min_resource, self.reduction_factor, self.max_resource = min_resource, reduction_factor, top
        self.peers = peers
        self.why: str | None = None  # the last pruning decision, as the run's error column says it

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Whether ``trial`` stops at its last reported epoch (only ever at a rung). The decision is
        recorded as the trial's ``moasha`` attribute and said in :attr:`why` for the run's error column;
        Optuna's ``prune`` has no trial handle, so it is written through ``study._storage``, as Optuna's
        own pruners read. A decision already recorded at or past this rung stands: a later seed of the
        point goes on or stops where the first did (docs/OPTUNA.md)."""
        self.why = None
        epochs = (trial.last_step or 0) + 1
        attr = RUNG_ATTR.format(epochs)
        done = trial.user_attrs.get(DECISION_ATTR)
        if done and done["rung"] >= epochs:
            decision = done if done["rung"] == epochs else None
        elif attr not in trial.user_attrs or epochs not in rungs(self.min_resource, self.reduction_factor,
                                                                 self.max_resource):
            decision = None
        else:
            signs = [-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0 for d in study.directions]
            others = [t for t in study.get_trials(deepcopy=False)
                      if attr in t.user_attrs and t.number != trial.number]
            vectors = [[s * v for s, v in zip(signs, t.user_attrs[attr], strict=True)]
                       for t in [trial, *others]]
            if self.peers == "cheaper":
                exact = [i for i, name in enumerate(study.metric_names or []) if not REGISTRY[name].per_epoch]
                vectors = cheaper_peers(vectors, exact)
            go_on, rank, n = promoted(0, vectors, self.reduction_factor)
            decision = {"rung": epochs, "rank": rank, "of": n, "top": max(1, n // self.reduction_factor),
                        "pruned": not go_on}
            study._storage.set_trial_user_attr(trial._trial_id, DECISION_ATTR, decision)
        if not (decision and decision["pruned"]):
            return False
        from dse.store.record import PRUNED_AT  # the store, which the sweeper's process does without

        self.why = PRUNED_AT.format(**decision)
        return True
