"""From a tiny real sweep on CPU to the report: the charts are drawn from what training stored."""

from __future__ import annotations

import pytest

from dse import analysis
from tests.conftest import run_cli


@pytest.mark.slow
def test_tiny_real_sweep_to_report(workdir) -> None:
    res = run_cli("dse-train", "-m", "study=demo", "data.subset=200", "trainer.max_epochs=1",
                  "model.base_e=16", "model.incr_e=16", "model.sr=0.25,1.0", cwd=workdir)
    assert res.returncode == 0, res.stderr[-2000:]
    log = res.stdout + res.stderr  # the command line's SR list replaces the study's
    assert "sweep: 2 points" in log and "[2/2] ok model.sr=1.0" in log, log[-3000:]
    assert "setup plugin" not in log  # Alembic's import-time chatter, as the store first migrates
    res = run_cli("dse-report", "runs/demo", cwd=workdir)
    assert res.returncode == 0, res.stderr[-2000:]
    out = workdir / "runs/demo/report"
    assert (out / "micro_sr.png").stat().st_size > 10_000 and (out / "pareto.png").is_file()
    assert not (out / "micro_pct3x3.png").exists()  # no pct3x3 sweep in this store
    report = (out / "report.md").read_text()
    assert "micro_pct3x3" in report and "dse-train -m" in report
    df = analysis.load(workdir / "runs/demo")
    assert len(df) == 4 and sorted(df.seed) == [0, 0, 1, 1]  # the demo's 2 seeds a point
    frame = analysis.sr_frame(df).set_index("sr")
    assert sorted(frame.index) == [0.25, 1.0] and set(frame.val_top1_n) == {2}
    stored = df.groupby("sr").val_top1
    assert (frame.val_top1_mean - stored.mean()).abs().max() < 1e-9
    assert (frame.val_top1_std - stored.std(ddof=1)).abs().max() < 1e-9  # the error bars
