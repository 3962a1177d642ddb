"""Shared test helpers: compose configs, run the real console scripts, small shared data."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n 2 on 2 cores: one thread per worker and per process it starts, or OpenMP threads
    # of two trainings spin against each other (3-10x slower than running them in turn)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# the tests of these session fixtures first (one Slurm cluster, the smoke run trained once), then
# the rest of the ``slow`` ones: under ``--dist worksteal`` the second worker takes the short tests
# from the end of the queue, so the two end together instead of one waiting on a long last test
FIRST = ("slurm_cluster", "smoke_run")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        return next((i for i, name in enumerate(FIRST) if name in item.fixturenames),
                    len(FIRST) + (item.get_closest_marker("slow") is None))

    items.sort(key=rank)


def restore_sigint() -> None:
    """``preexec_fn`` for a child that must receive SIGINT as from a terminal: a shell starts
    background jobs of a script with SIGINT ignored and Python keeps an inherited ignore, so under
    such a runner the child would drop the test's SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(prog: str, *args: str, cwd: str | Path | None = None, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run an installed console script (dse-model, dse-train, ...) as a user would."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([str(BIN / prog), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


# Tests that compare runs bit for bit pin fp32: on a CPU with bf16 in hardware, trainer.precision=auto
# trains bf16-mixed, whose rounding (and oneDNN's kernel choice) differs from the pinned numbers.
FP32 = ("trainer.precision=32-true", "trainer.channels_last=false")
SMOKE = ("trainer=smoke", "data.subset=4000", "trainer.checkpoint=true")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The launch dir of one real ``dse-train`` smoke run (fire_small, 4,000 Fashion-MNIST images,
    3 epochs, final checkpoint, its store row): the suite's most expensive step, shared by the
    training, compression and store tests instead of each training its own network. Read-only:
    a test that writes copies what it needs. Under pytest-xdist the workers share one run through
    a file lock in the session's temporary root."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    workdir, done = root / "smoke-run", root / "smoke-run.done"
    with FileLock(root / "smoke-run.lock"):
        if not done.exists():
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir()
            res = run_cli("dse-train", *SMOKE, cwd=workdir, timeout=1800)
            assert res.returncode == 0, res.stderr[-2000:]
            done.touch()
    return workdir


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh launch directory (runs/ lands here)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def assert_one_line(res: subprocess.CompletedProcess, line: str) -> None:
    """dse's bad-input contract: exit code 2 and exactly ``line`` on stderr, nothing on stdout."""
    assert (res.returncode, res.stderr.strip().splitlines(), res.stdout) == (2, [line], ""), (
        res.returncode, res.stdout[-1000:], res.stderr[-2000:])


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its content (None for folders): 'nothing written' checks."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``tmpfs(name, size="64k", ro=False)`` mounts a real tiny filesystem at ``tmp_path/name``:
    a full disk after ``size`` bytes, or a read-only one. Unmounted after the test."""
    mounted: list[Path] = []

    def mount(name: str, size: str = "64k", ro: bool = False) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("a real full or read-only disk needs root to mount a tmpfs")
        where = tmp_path / name
        where.mkdir()
        options = f"size={size}" + (",ro" if ro else "")
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            where.rmdir()
            why = (res.stderr.strip() or "mount failed").splitlines()[0]
            pytest.skip(f"cannot mount a tmpfs here: {why}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", str(where)], check=True)


def config_dict(overrides: list[str]) -> dict:
    """The resolved config dse-train would see for ``overrides``, as a plain dict."""
    from omegaconf import OmegaConf

    from dse.compose import compose

    return OmegaConf.to_container(compose(overrides), resolve=True)


def save_checkpoint(path: Path, cfg: dict, model=None) -> Path:
    """A checkpoint in dse-train's layout (docs/CONTRACTS.md) without training."""
    import torch

    from dse.model import build_model

    model = model or build_model(cfg["model"])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"hyper_parameters": {"cfg": cfg},
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


def cli_fails(capsys: pytest.CaptureFixture, main: Callable[[list[str]], None], prog: str,
              argv: list[str], needle: str) -> None:
    """``main(argv)`` refuses its input the dse way: one line naming ``needle``, exit 2."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"{prog}: error:") and needle in err, err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def has_psycopg() -> bool:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------- PostgreSQL
def _pg_bindir() -> Path | None:
    for cand in [shutil.which("pg_ctl"), *sorted(map(str, Path("/usr/lib/postgresql").glob(
            "*/bin/pg_ctl")), reverse=True)]:
        if cand and (Path(cand).parent / "initdb").exists():
            return Path(cand).resolve().parent
    return None


@pytest.fixture(scope="session")
def postgres() -> Iterator[dict]:
    """A throw-away PostgreSQL cluster on 127.0.0.1, one per test process (xdist worker)."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; "
                    "apt-get install postgresql")
    if not has_psycopg():
        pytest.skip("psycopg (3) is not installed; pip install 'dse[postgres]'")
    as_user: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="dse-pg-"))  # not pytest's root-only tmp dir
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root without runuser to drop privileges for postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        as_user = [runuser, "-u", "postgres", "--"]
    data, sock, port = base / "data", base / "sock", free_port()

    def pg(*cmd: str, timeout: float = 120) -> None:
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=timeout)

    try:
        pg(str(bindir / "initdb"), "-D", str(data), "-U", "dse", "-A", "trust", "--no-sync",
           "-E", "UTF8")
        pg("mkdir", "-p", str(sock))
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w",
           "-o", f"-h 127.0.0.1 -p {port} -k {sock} -F", "start")
    except subprocess.CalledProcessError as e:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {e.stderr.decode()[-2000:]}")
    try:
        yield {"host": "127.0.0.1", "port": port, "user": "dse"}
    finally:
        try:
            pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_database(postgres: dict) -> Iterator[str]:
    import psycopg

    name = f"dse_test_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    conn = psycopg.connect(dbname="postgres", autocommit=True, **postgres)
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield (f"postgresql://{postgres['user']}@{postgres['host']}:"
               f"{postgres['port']}/{name}")
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


# ----------------------------------------------------------------------------- Slurm
@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator:
    """A real one-node Slurm (munged, slurmctld, slurmd on localhost; tests/slurm.py), one per test
    process, stopped after the session. Skips with one line where not root or not installed."""
    from tests.slurm import session_cluster

    yield from session_cluster()
