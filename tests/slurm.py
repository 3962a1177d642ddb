"""A real one-node Slurm for the tests: munged, slurmctld and slurmd on localhost, owned by the test
session (foreground processes, stopped afterwards), configured by a slurm.conf in a temp dir.

No accounting (no slurmdbd and database to run), so the real ``sacct`` only says "Slurm accounting
storage is disabled". submitit polls ``sacct`` for the state of the jobs it waits on; it warns at every
failed poll and, worse, never learns that a job died without writing its result (scancel, OOM), so
the launcher would wait for ever. :data:`SACCT` stands in, first on the cluster's ``PATH``: the same
``JobID|State|NodeList`` answer from the controller's memory of recent jobs (``squeue -t all``,
MinJobAge seconds), which is what submitit reads. A real cluster has accounting and needs none of it.

Everything the cluster writes (config, munge key and socket, state, spool, logs) lives in that temp
dir; the machine's /etc/slurm and /etc/munge are not touched and no system daemon is needed.
Tools find the cluster through ``SLURM_CONF`` in the environment (:attr:`SlurmCluster.env`), for
the daemons and for sbatch/squeue/scancel/sinfo, and so for submitit, which calls sbatch.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")
TOOLS = ("sbatch", "squeue", "scancel", "sinfo", "mungekey")

SLURM_CONF = """\
ClusterName=dsetest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: also how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket={munge_socket},cred_expire=10
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool
SlurmctldPidFile={base}/slurmctld.pid
SlurmdPidFile={base}/slurmd.pid
SlurmctldLogFile={base}/slurmctld.log
SlurmdLogFile={base}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
KillWait=5
MinJobAge=600
SchedulerParameters=sched_interval=1
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""

# submitit calls: sacct -o JobID,State,NodeList --parsable2 -j ID [-j ID ...]
SACCT = """\
#!/bin/bash
# sacct for a cluster without accounting (tests/slurm.py): the states submitit polls, from squeue
ids=()
while [ $# -gt 0 ]; do case "$1" in -j) ids+=("$2"); shift 2;; *) shift;; esac; done
echo "JobID|State|NodeList"
[ ${#ids[@]} -gt 0 ] || exit 0
exec squeue -h -t all -j "$(IFS=,; echo "${ids[*]}")" -o "%i|%T|%N" 2>/dev/null
"""


@dataclass
class SlurmCluster:
    """A running one-node cluster: ``env`` for every Slurm client, ``base`` its temp dir."""

    base: Path
    conf: Path
    cpus: int
    mem_mb: int
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """For every Slurm client: this cluster's config, and :data:`SACCT` first on the path."""
        return {"SLURM_CONF": str(self.conf),
                "PATH": f"{self.base / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}"}

    def run(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster (check=False, text output)."""
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **self.env})

    def job_ids(self) -> set[str]:
        """Every job the controller still knows (finished ones for MinJobAge seconds), as
        ``JOBID`` or ``JOBID_TASK`` for array tasks: what ``sacct`` would say on a cluster with
        accounting."""
        res = self.run("squeue", "-h", "-t", "all", "-o", "%i")
        return set(res.stdout.split())

    def wait_idle(self, timeout: float = 300) -> None:
        """Until no job of this cluster is pending or running."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            res = self.run("squeue", "-h", "-t", "PD,R,CG", "-o", "%i")
            if res.returncode == 0 and not res.stdout.strip():
                return
            time.sleep(1)
        raise TimeoutError(f"jobs still queued or running after {timeout:.0f} s")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.base.glob("*.log")))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def why_not() -> str | None:
    """The one-line reason this machine cannot run the test cluster, or None when it can."""
    if os.geteuid() != 0:
        return "a one-node Slurm for the tests needs root (slurmd runs jobs as their user)"
    missing = [p for p in DAEMONS if not os.access(p, os.X_OK)]
    missing += [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return (f"Slurm/munge not installed ({', '.join(missing)} missing); "
                "apt-get install slurm-wlm munge")
    return None


def _mem_mb() -> int:
    with open("/proc/meminfo") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return max(1024, kb // 1024 - 512)  # what slurmd -C sees, less a margin


def start(timeout: float = 60) -> SlurmCluster:
    """Start munged, slurmctld and slurmd; return once ``sinfo`` shows the node idle."""
    base = Path(tempfile.mkdtemp(prefix="dse-slurm-"))  # 0700, root's: munged checks that
    for sub in ("state", "spool", "munge", "bin"):
        (base / sub).mkdir()
    (base / "munge").chmod(0o700)
    cluster = SlurmCluster(base=base, conf=base / "slurm.conf", cpus=os.cpu_count() or 1,
                           mem_mb=_mem_mb())
    (base / "bin" / "sacct").write_text(SACCT)
    (base / "bin" / "sacct").chmod(0o755)
    key, sock = base / "munge" / "munge.key", base / "munge" / "munge.socket"
    cluster.conf.write_text(SLURM_CONF.format(
        base=base, munge_socket=sock, ctld_port=_free_port(), slurmd_port=_free_port(),
        cpus=cluster.cpus, mem_mb=cluster.mem_mb))
    env = {**os.environ, **cluster.env}
    try:
        # a key of our own (not /etc/munge's, which may be missing): only this cluster uses it
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True,
                       capture_output=True, timeout=30)
        key.chmod(0o600)
        with open(base / "daemons.out", "ab") as out:  # the children keep their own copies
            cluster.procs.append(subprocess.Popen(
                ["/usr/sbin/munged", "--foreground", "--force", f"--socket={sock}",
                 f"--key-file={key}", f"--pid-file={base / 'munge' / 'munged.pid'}",
                 f"--seed-file={base / 'munge' / 'munged.seed'}",
                 f"--log-file={base / 'munged.log'}"], stdout=out, stderr=out, env=env))
            _wait(lambda: sock.exists(), timeout, "munged's socket", cluster)
            cluster.procs.append(subprocess.Popen(
                ["/usr/sbin/slurmctld", "-D", "-c", "-f", str(cluster.conf)],
                stdout=out, stderr=out, env=env))
            cluster.procs.append(subprocess.Popen(
                ["/usr/sbin/slurmd", "-D", "-N", "localhost", "-f", str(cluster.conf)],
                stdout=out, stderr=out, env=env))

        def idle() -> bool:
            res = cluster.run("sinfo", "-h", "-N", "-o", "%T", timeout=10)
            return res.returncode == 0 and res.stdout.strip() == "idle"

        _wait(idle, timeout, "the node to be idle in sinfo", cluster)
    except BaseException:
        stop(cluster, keep=True)
        raise
    return cluster


def _wait(ok, timeout: float, what: str, cluster: SlurmCluster) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for p in cluster.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args[0]} exited with {p.returncode} waiting for {what}:\n"
                                   + (cluster.base / "daemons.out").read_text()[-2000:]
                                   + cluster.logs())
        if ok():
            return
        time.sleep(0.5)
    raise TimeoutError(f"no {what} after {timeout:.0f} s:\n{cluster.logs()}")


def stop(cluster: SlurmCluster, keep: bool = False) -> None:
    """Cancel what is left, stop the daemons (slurmd, slurmctld, munged: reverse start order),
    then end what they started and left behind: a ``slurmstepd`` runs in a session of its own
    and outlives slurmd, so it is found by the cluster's ``SLURM_CONF`` in its environment."""
    if any(p.poll() is None for p in cluster.procs[1:]):
        cluster.run("scancel", "--full", "-u", "root", timeout=30)
        with contextlib.suppress(TimeoutError):
            cluster.wait_idle(timeout=30)
    for p in reversed(cluster.procs):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
    _end(started_by(cluster))
    if not keep:
        shutil.rmtree(cluster.base, ignore_errors=True)


def started_by(cluster: SlurmCluster) -> list[int]:
    """PIDs of live processes whose environment names this cluster's slurm.conf (its daemons'
    children: step daemons and the jobs' own processes), this process excepted."""
    mark = f"SLURM_CONF={cluster.conf}".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        pid = int(environ.parent.name)
        with contextlib.suppress(OSError):
            if pid != os.getpid() and mark in environ.read_bytes().split(b"\0"):
                pids.append(pid)
    return pids


def _end(pids: list[int], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL what is still there after ``timeout`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        end = time.monotonic() + timeout
        while (pids := [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)]) \
                and time.monotonic() < end:
            time.sleep(0.2)
        if not pids:
            return


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return False


def session_cluster() -> Iterator[SlurmCluster]:
    """Body of the session fixture: skip with one line where impossible, else start and stop."""
    import pytest

    reason = why_not()
    if reason:
        pytest.skip(reason)
    cluster = start()
    try:
        yield cluster
    finally:
        stop(cluster)
