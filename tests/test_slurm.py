"""The cluster path through a real Slurm: dse-train's jobs as Slurm jobs (hydra-submitit-launcher),
Optuna sweeper workers as a Slurm job array, and a worker cancelled with scancel, all on one
PostgreSQL (the results store and the Optuna storage).

The cluster is tests/slurm.py's one-node Slurm (root and Debian's slurm-wlm + munge; skipped
elsewhere); the database is conftest's throw-away PostgreSQL. Trainings are 1 epoch on 200 images:
these tests check the plumbing, not accuracy. Every test here is selected by ``-k slurm``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
TINY = ("trainer=smoke", "data.subset=200", "trainer.max_epochs=1", "trainer.test=false",
        "model.base_e=16", "model.incr_e=16")
# the Optuna study: studies/pareto.yaml narrowed to networks 2 CPU cores train in seconds
OPTUNA_TINY = ("study=pareto", "data.subset=200", "trainer=smoke", "trainer.max_epochs=1",
               "trainer.test=false", "trainer.batch_size=100", "trainer.eval_batch_size=200",
               "model.stem.channels=8", "model.n_fire=4", "model.base_e=choice(8,16)",
               "model.incr_e=choice(0,8)", "model.pool_after=[conv1,fire3]")
SMALL_JOB = ("hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
             "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=15")


def job_env(cluster) -> dict[str, str]:
    """What sbatch passes on to the jobs (--export=ALL): this checkout first on the path, one
    thread per job, the cluster's slurm.conf."""
    return {**cluster.env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def store_rows(url: str) -> list[dict]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(
                "SELECT run_id, status, trial, slurm_job FROM runs ORDER BY started_at"))]
    finally:
        engine.dispose()


def worker_script(path: Path, runs: Path, url: str, *args: str) -> Path:
    """A batch script running one dse_optuna sweeper worker (basic launcher: its trials train in
    the array task itself) on the PostgreSQL storage and store."""
    cmd = [str(BIN / "dse-train"), "-m", *OPTUNA_TINY, f"paths.runs={runs}",
           f"hydra.sweeper.storage={url}", f"store.url={url}", *args]
    path.write_text("#!/bin/bash\nset -e\ncd " + str(path.parent) + "\nexec "
                    + " ".join(f"'{a}'" for a in cmd) + "\n")
    path.chmod(0o755)
    return path


def sbatch(cluster, *args: str, env: dict[str, str], timeout: float = 600) -> str:
    """Submit a batch job (1 CPU, 1 GB); its id. With --wait: once it ended, exit status checked."""
    res = subprocess.run(["sbatch", "--parsable", "--cpus-per-task=1", "--mem=1G", *args],
                         capture_output=True, text=True, timeout=timeout, env={**os.environ, **env})
    assert res.returncode == 0, res.stdout + res.stderr + cluster.logs()
    return res.stdout.strip().split(";")[0]


def load_study(url: str, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=url)


def claims(url: str) -> int:
    """How many (config hash, seed) a worker has claimed to train now: its training started."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM claims")).scalar_one()
    except sa.exc.ProgrammingError:  # no claims table yet
        return 0
    finally:
        engine.dispose()


def test_slurm_grid_jobs_append_to_postgres_with_their_job_ids(slurm_cluster, pg_database,
                                                                  tmp_path):
    res = run_cli("dse-train", "-m", "hydra/launcher=slurm", "study.name=slurmgrid", *TINY,
                  "model.sr=0.25,0.5,0.75", *SMALL_JOB, f"store.url={pg_database}",
                  f"paths.runs={tmp_path / 'runs'}", cwd=tmp_path, env=job_env(slurm_cluster))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:] + slurm_cluster.logs()
    assert "sacct" not in res.stderr, res.stderr[-3000:]  # tests/slurm.py's stand-in answered
    rows = store_rows(pg_database)
    assert [r["status"] for r in rows] == ["ok"] * 3, rows
    jobs = {r["slurm_job"] for r in rows}
    assert len(jobs) == 3 and None not in jobs, rows
    # real Slurm jobs: the controller knows them (no accounting here, so squeue, not sacct) and
    # submitit kept one folder per job (submitit_folder: .../.submitit/%j)
    assert jobs <= slurm_cluster.job_ids(), (jobs, slurm_cluster.job_ids())
    folders = {p.name for p in (tmp_path / "runs").glob("slurmgrid/multirun/*/.submitit/*_*")}
    assert jobs <= folders, (jobs, folders)


def test_slurm_array_of_two_optuna_workers_on_one_postgres(slurm_cluster, pg_database, tmp_path):
    script = worker_script(tmp_path / "worker.sh", tmp_path / "runs", pg_database,
                           "study.name=slurmopt", "hydra.sweeper.n_trials=4")
    array = sbatch(slurm_cluster, "--array=0-1", "--wait", f"--output={tmp_path}/%A_%a.out",
                   str(script), env=job_env(slurm_cluster))
    logs = "".join(p.read_text() for p in sorted(tmp_path.glob("*.out")))
    study = load_study(pg_database, "slurmopt")
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers)), numbers
    complete = sorted(t.number for t in study.trials if t.state.name == "COMPLETE")
    assert len(complete) == 4, logs[-5000:]
    assert all("discarded" in t.user_attrs for t in study.trials if t.number not in complete)
    rows = store_rows(pg_database)
    assert sorted(r["trial"] for r in rows) == complete, rows  # no trial trained twice
    assert len({r["run_id"] for r in rows}) == len(rows)
    assert {r["slurm_job"] for r in rows} <= {f"{array}_0", f"{array}_1"}, rows


def test_slurm_scancel_mid_run_fails_the_trial_and_a_rerun_refills_it(slurm_cluster, pg_database,
                                                                        tmp_path):
    import optuna

    # trials of a few seconds, so the cancel below lands in training however fast the start-up;
    # no divergence stop (a tiny net may sit at chance for two epochs: not what this test is about)
    beat = ("study.name=slurmcancel", "hydra.sweeper.n_trials=2", "data.subset=1000",
            "trainer.max_epochs=3", "trainer.chance_epochs=100",
            "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3")
    script = worker_script(tmp_path / "worker.sh", tmp_path / "runs", pg_database, *beat)
    env = job_env(slurm_cluster)
    job = sbatch(slurm_cluster, f"--output={tmp_path}/first.out", str(script), env=env)
    end = time.monotonic() + 300
    running = None
    while running is None and time.monotonic() < end:  # until the worker trains its first trial
        try:
            study = load_study(pg_database, "slurmcancel")
            running = next((t for t in study.trials if t.state.name == "RUNNING"), None)
        except Exception:  # no study yet (tables not created, study not stored)
            pass
        time.sleep(0.5)
    assert running is not None, (tmp_path / "first.out").read_text()[-3000:]
    while not claims(pg_database) and time.monotonic() < end:  # mid-training, not mid-ask
        time.sleep(0.2)
    assert slurm_cluster.run("scancel", job).returncode == 0
    slurm_cluster.wait_idle(120)
    study = load_study(pg_database, "slurmcancel")
    cancelled = study.trials[running.number]
    assert cancelled.state.name in ("FAIL", "RUNNING"), cancelled  # told FAIL on SIGTERM, or stale
    # the rerun, a Slurm job again: the heartbeat's grace period fails a stale leftover, and the
    # budget the cancelled trial held is trained afresh
    sbatch(slurm_cluster, "--wait", f"--output={tmp_path}/rerun.out", str(script), env=env)
    study = load_study(pg_database, "slurmcancel")
    states = {t.number: t.state.name for t in study.trials}
    assert states[running.number] == "FAIL", (states, (tmp_path / "rerun.out").read_text()[-3000:])
    complete = sorted(n for n, s in states.items() if s == "COMPLETE")
    assert len(complete) == 2 and running.number not in complete, states
    ok = [r["trial"] for r in store_rows(pg_database) if r["status"] == "ok"]
    assert sorted(ok) == complete, ok
    assert optuna.trial.TrialState.RUNNING not in {t.state for t in study.trials}


def test_slurm_requeued_job_continues_from_its_checkpoint(slurm_cluster, tmp_path):
    """``scontrol requeue`` (what preemption does) stops a training job mid-run; the job, run again
    by Slurm, resumes from its newest resume checkpoint instead of epoch 0."""
    import sqlalchemy as sa

    runs = tmp_path / "runs"
    # three epochs slow enough to requeue during the second; no divergence stop (a tiny net may
    # sit at chance for two epochs, which is not what this test is about)
    cmd = [str(BIN / "dse-train"), "study.name=requeue", "trainer=smoke", "data.subset=400",
           "trainer.max_epochs=3", "trainer.test=false", "trainer.batch_size=8",
           "trainer.chance_epochs=100",
           "model.base_e=16", "model.incr_e=16", f"paths.runs={runs}"]
    script = tmp_path / "train.sh"
    script.write_text("#!/bin/bash\ncd " + str(tmp_path) + "\nexec "
                      + " ".join(f"'{a}'" for a in cmd) + "\n")
    script.chmod(0o755)
    job = sbatch(slurm_cluster, "--requeue", f"--output={tmp_path}/%j.out", "--open-mode=append",
                 str(script), env=job_env(slurm_cluster))
    resume = runs / "requeue" / "resume"
    end = time.monotonic() + 300
    while not list(resume.glob("*/seed0/*.ckpt")) and time.monotonic() < end:
        time.sleep(0.5)
    log = tmp_path / f"{job}.out"
    assert list(resume.glob("*/seed0/*.ckpt")), log.read_text()[-3000:] + slurm_cluster.logs()
    assert slurm_cluster.run("scontrol", "requeue", job).returncode == 0
    # Slurm holds the requeued job back for AuthInfo's cred_expire (10 s in tests/slurm.py's conf)
    store = runs / "requeue" / "results.db"
    end = time.monotonic() + 400
    rows: list = []
    while not rows and time.monotonic() < end:
        time.sleep(1)
        if store.is_file():
            engine = sa.create_engine(f"sqlite:///{store}")
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT status, epochs, resumed_from_epoch, slurm_job "
                                            "FROM runs")).all()
            engine.dispose()
    assert len(rows) == 1, log.read_text()[-4000:] + slurm_cluster.logs()
    status, epochs, resumed, slurm_job = rows[0]
    assert (status, epochs, slurm_job) == ("ok", 3, job), rows
    assert resumed is not None and 1 <= resumed < 3, (rows, log.read_text()[-3000:])
    assert not list(resume.glob("*/seed0/*.ckpt"))  # removed once the row is stored
