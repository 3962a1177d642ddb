"""Shared test helpers: compose configs, run the real console scripts, small shared data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n 2 on 2 cores: one thread per worker and per process it starts, or OpenMP threads
    # of two trainings spin against each other (3-10x slower than running them in turn)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run_cli(prog: str, *args: str, cwd: str | Path | None = None, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run an installed console script (dse-model, dse-train, ...) as a user would."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([str(BIN / prog), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


SMOKE = ("trainer=smoke", "data.subset=4000", "trainer.checkpoint=true")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The launch dir of one real ``dse-train`` smoke run (fire_small, 4,000 Fashion-MNIST images,
    3 epochs, final checkpoint, its store row): the suite's most expensive step, shared by the
    training, compression and store tests instead of each training its own network. Read-only:
    a test that writes copies what it needs."""
    workdir = tmp_path_factory.mktemp("smoke")
    res = run_cli("dse-train", *SMOKE, cwd=workdir, timeout=1800)
    assert res.returncode == 0, res.stderr[-2000:]
    return workdir


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh launch directory (runs/ lands here)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
