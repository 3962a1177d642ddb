"""docs/ARCHITECTURE.md's metric recipe, walked: a metric added to dse.metrics alone reaches the
analysis frame, the report's tables, the charts' panels and labels, and the sweeper's objectives."""

from __future__ import annotations

from types import MappingProxyType

import pandas as pd
import pytest

import dse.metrics
from dse.analysis import frames as F
from dse.analysis.loading import load
from dse.analysis.plots import plot_sweep
from dse.analysis.report import sweep_table
from dse.analysis.synthetic import base_config, record
from dse.errors import ConfigError
from dse.metrics import Metric
from hydra_plugins.dse_optuna_sweeper import _settings

TOP3 = Metric("val_top3", "maximize", "val top-3", "%", ".2f", key="val/top3", per_epoch=True, topk=3)


@pytest.fixture
def top3(monkeypatch: pytest.MonkeyPatch) -> Metric:
    """``val_top3`` registered the way the code reads the registry: ``dse.metrics.REGISTRY`` and
    the names derived from it, and the sweeper's copy of SWEEPABLE (imported by name)."""
    registry = MappingProxyType({**dse.metrics.REGISTRY, TOP3.name: TOP3})
    monkeypatch.setattr(dse.metrics, "REGISTRY", registry)
    monkeypatch.setattr(dse.metrics, "SWEEPABLE", tuple(registry))
    monkeypatch.setattr(_settings, "SWEEPABLE", tuple(registry))
    return TOP3


def _sweep() -> pd.DataFrame:
    rows = []
    for sr in (0.125, 0.25, 0.5):
        cfg = base_config("recipe")
        cfg["model"]["sr"] = sr
        rows += [{**record(cfg, s, f"model.sr={sr}", accuracy=0.8 + sr / 10), "val_top3": 0.9 + sr / 20}
                 for s in range(2)]
    return load(pd.DataFrame(rows))


def test_a_new_metric_is_a_column_a_table_a_panel_and_an_objective(top3: Metric) -> None:
    df = _sweep()
    assert df["val_top3"].tolist() == pytest.approx([0.90625] * 2 + [0.9125] * 2 + [0.925] * 2)
    assert F.accuracies() == ["val_top1", "test_top1", "val_top3", "val_top5", "test_top5"]
    frame = F.sr_frame(df)
    assert "val_top3" in frame.attrs["metrics"]
    assert frame["val_top3_mean"].tolist() == pytest.approx([0.90625, 0.9125, 0.925])
    table = sweep_table(frame)
    assert table["val top-3 %"].tolist() == ["90.62 ± 0.00", "91.25 ± 0.00", "92.50 ± 0.00"]
    fig = plot_sweep(frame, "recipe")
    panel = next(a for a in fig.axes if a.get_ylabel() == "top-3 accuracy (%)")
    assert panel.get_legend_handles_labels()[1] == ["val top-3 (mean ± std)"]
    assert [a.get_ylabel() for a in fig.axes if "top-" in a.get_ylabel()] == [
        "top-1 accuracy (%)", "top-3 accuracy (%)", "top-5 accuracy (%)"]
    (objective,) = _settings.parse_objectives([["val_top3", "maximize"]])
    assert (objective.metric, objective.direction) == ("val_top3", "maximize")


def test_without_the_metric_it_is_not_charted_or_accepted() -> None:
    df = _sweep()
    assert "val_top3" not in F.sr_frame(df).attrs["metrics"]  # an unknown column stays data
    with pytest.raises(ConfigError, match="val_top3"):
        _settings.parse_objectives([["val_top3", "maximize"]])
