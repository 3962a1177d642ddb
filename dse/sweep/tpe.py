"""Optuna's TPE, shown a dse study the way its rules expect (the shipped ``tpe``, docs/OPTUNA.md).

Two of a dse study's trials are stored in a form Optuna's TPE misreads: a point rejected before
training (over a size budget) is a FAIL, which TPE skips, so it never learns where the budget ends
and can draw over-budget points until ``max_rejections`` stops the study; and a MOASHA-pruned trial
carries its curve for the dashboard, which TPE ranks under ``study.direction``, refused with several
objectives. TPE reads the trials in one private place, ``_sample``, so that is where the study is
shown differently; the storage keeps what it holds (tests/test_tpe.py fails if Optuna renames it).
"""

from __future__ import annotations

import copy
from collections.abc import Container
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from dse.sweep.trials import kind

if TYPE_CHECKING:  # pragma: no cover - typing only
    from optuna.trial import FrozenTrial


class _SamplerView:
    """The study, where a rejected point is a pruned trial (with its constraint values: infeasible,
    which TPE ranks with the worst, as Optuna does any infeasible trial) and, with several
    objectives, a pruned trial shows no curve (so it goes with the worst, as in any multi-objective
    Optuna study)."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        asked = None if states is None else [*(s for s in TrialState if s in states), TrialState.FAIL]
        several = len(self._study.directions) > 1
        out = []
        for t in self._study._get_trials(deepcopy=deepcopy, states=asked, use_cache=use_cache):
            if kind(t) == "rejected":
                t = copy.copy(t)  # the storage's (cached) trial stays as stored
                t.state, t.intermediate_values = TrialState.PRUNED, {}
            elif t.state == TrialState.PRUNED and several and t.intermediate_values:
                t = copy.copy(t)
                t.intermediate_values = {}
            if states is None or t.state in states:
                out.append(t)
        return out


class TPESampler(optuna.samplers.TPESampler):
    """Optuna's TPE with the same settings, sampling from :class:`_SamplerView`."""

    def _sample(self, study: optuna.Study, trial: FrozenTrial, space: dict[str, Any]) -> dict[str, Any]:
        return super()._sample(_SamplerView(study), trial, space)
