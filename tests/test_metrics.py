"""The metrics registry: the names other modules rely on, and that it stays light to import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dse.compose import compose
from dse.errors import ConfigError
from dse.metrics import (
    ACCURACY,
    ANALYTIC,
    DIRECTIONS,
    LATENCY,
    LOGGED,
    REGISTRY,
    SWEEPABLE,
    analytic_values,
    to_mb,
    to_mib,
)
from dse.model import analyze, build_spec
from dse.store import RUN_COLUMNS


def test_names_the_task_returns_and_the_record_stores() -> None:
    known = ("val_top1", "val_top5", "val_loss", "test_top1", "test_top5", "test_loss",
             "size_mib", "size_mb", "size_bytes", "params", "macs", "epochs", "train_seconds",
             "images_per_s")
    assert tuple(SWEEPABLE) == known + LATENCY
    assert LATENCY == ("latency_ms", "latency_p90_ms", "latency_b64_ms", "latency_b64_p90_ms",
                       "torch_latency_ms", "torch_latency_p90_ms", "torch_latency_b64_ms",
                       "torch_latency_b64_p90_ms")
    assert set(LATENCY) <= set(RUN_COLUMNS) and not set(LATENCY) & set(ANALYTIC)
    assert (REGISTRY["latency_ms"].runtime, REGISTRY["latency_ms"].batch,
            REGISTRY["latency_ms"].quantile) == ("onnxruntime", 1, 0.5)
    assert set(ANALYTIC) == {"params", "macs", "size_bytes", "size_mib", "size_mb"}
    assert LOGGED == ("val_top1", "val_top5", "val_loss", "test_top1", "test_top5", "test_loss")
    assert ACCURACY == ("val_top1", "val_top5", "test_top1", "test_top5")
    assert set(LOGGED) <= set(RUN_COLUMNS)
    for name in LOGGED:  # dse.train.run.train_once reads each under this key
        assert REGISTRY[name].key == name.replace("_", "/", 1)
    assert [n for n, m in REGISTRY.items() if m.per_epoch] == ["val_top1", "val_top5", "val_loss"]
    assert all(m.direction in DIRECTIONS and m.label for m in REGISTRY.values())


def test_sweeper_knows_the_same_metrics() -> None:
    settings = pytest.importorskip("hydra_plugins.dse_optuna_sweeper._settings")
    assert [o.metric for o in settings.parse_objectives([[n, "minimize"] for n in SWEEPABLE])] \
        == list(SWEEPABLE)
    with pytest.raises(ConfigError, match="known metrics: val_top1, val_top5"):
        settings.parse_objectives([["nope", "minimize"]])
    constraints = settings.parse_constraints([f"{n} <= 1" for n in SWEEPABLE])
    assert {c.metric for c in constraints if c.analytic} == set(ANALYTIC)


def test_analytic_values_and_units() -> None:
    cfg = compose([])
    report = analyze(build_spec(cfg.model), cfg.data.image_size)
    assert analytic_values(report) == {
        "params": report.params, "macs": report.macs, "size_bytes": report.size_bytes_fp32,
        "size_mib": report.size_bytes_fp32 / 2**20, "size_mb": report.size_bytes_fp32 / 1e6}
    assert (to_mb(3_000_000), to_mib(3 * 2**20)) == (3.0, 3.0)
    assert REGISTRY["val_top1"].show(0.91234) == "91.23" and REGISTRY["val_top1"].show(None) == "-"
    assert REGISTRY["params"].show(1234567) == "1,234,567"


def test_import_is_light() -> None:
    code = ("import sys, dse.metrics; heavy = {'torch', 'pandas', 'numpy', 'omegaconf', 'dse.model'}"
            " & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
