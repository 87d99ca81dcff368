"""A one-node SLURM cluster with job accounting, for the tests that run the workflow under SLURM.

Debian's packages (`.ci/run` installs them): slurmctld, slurmd, slurm-client and slurmdbd (slurm-wlm 22.05),
munge, and mariadb-server for the accounting database. Every daemon runs as root in the foreground from a
scratch folder, on free ports of 127.0.0.1, with its own munge socket: nothing under /etc is read or written,
and two clusters (two test files on two pytest workers) do not meet.

The node is this machine as it is (its hostname, its CPUs, most of its memory) with no cgroups
(proctrack/linuxproc, task/none). It declares `Gres=gpu:2` with stand-in device files (/dev/null, /dev/zero),
so that jobs asking for `--gpus=1` (the profile's `gpu` resource) are scheduled; they get no GPU, and medsr
runs them on the CPU. Accounting goes through slurmdbd into MariaDB: without it `sacct` answers "accounting
storage is disabled", and the tests read every job's final state from `sacct`, as does the executor plugin
for a failed job's reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PROGRAMS = ("munged", "mungekey", "mariadbd", "mariadb-install-db", "mariadb", "slurmdbd", "slurmctld", "slurmd",
            "sbatch", "squeue", "sacct", "sacctmgr", "sinfo", "scancel", "scontrol", "srun")
STAND_IN_GPUS = ("/dev/null", "/dev/zero")
PACKAGES = "slurmctld slurmd slurm-client slurmdbd munge mariadb-server"


def unavailable() -> str | None:
    """Why this machine cannot run the cluster (a sentence for the skip), or None."""
    if os.geteuid() != 0:
        return "the one-node SLURM cluster runs its daemons as root; this user is not root"
    missing = [name for name in PROGRAMS if not _which(name)]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install {PACKAGES}; .ci/run installs them)"
    return None


def _which(name: str) -> str | None:
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


@dataclass
class Cluster:
    """Running daemons; `env` points the SLURM commands (sbatch, sacct, ...) at this cluster."""

    root: Path
    name: str
    cpus: int
    memory_mb: int
    gpus: int
    env: dict[str, str]
    run_dir: Path  # sockets and pid files (a short path: unix sockets allow 108 bytes)
    processes: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    db_port: int = 0
    db_password: str = ""

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
                               f"\n{self.logs()}")
        return result

    def logs(self) -> str:
        """The tail of each daemon's log, for failure messages."""
        tails = []
        for log in sorted((self.root / "log").glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-15:]
            tails.append(f"--- {log}\n" + "\n".join(lines))
        return "\n".join(tails)

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmdbd accounted (`sacct`), oldest first: id, name, state, exit code."""
        out = self.run("sacct", "-X", "--allusers", "--parsable2", "--noheader", "--starttime", "now-1days",
                       "--format=JobIDRaw,JobName%200,State,ExitCode,Partition,AllocTRES%200").stdout
        keys = ("id", "name", "state", "exit_code", "partition", "tres")
        return [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]

    def stop(self) -> None:
        """Cancel what still runs, stop the daemons newest first (SIGTERM, then SIGKILL after 20 s)."""
        if any(name == "slurmctld" and p.poll() is None for name, p in self.processes):
            self.run("scancel", "--user=root", check=False)
        for name, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def start(root: Path, gpus: int = 2, timeout: float = 90) -> Cluster:
    """Write the configuration under `root` and start munged, MariaDB, slurmdbd, slurmctld and slurmd; return
    once `sinfo` shows the node idle. On failure the daemons already started are stopped and the error
    carries their logs."""
    for folder in ("log", "state", "spool", "munge", "mysql"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))  # unix socket paths must stay under 108 bytes
    run_dir.chmod(0o755)  # munged: every client must reach its socket
    memory_mb = int(_memory_mb() * 0.8)
    path = f"{_srun_shim(root)}:{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
    cluster = Cluster(root=root, name=f"medsr{os.getpid()}", cpus=len(os.sched_getaffinity(0)),
                      memory_mb=memory_mb, gpus=gpus, run_dir=run_dir,
                      env=dict(os.environ, SLURM_CONF=str(root / "slurm.conf"), PATH=path))
    try:
        _start_munge(cluster, run_dir)
        _start_mariadb(cluster, run_dir)
        _write_slurm_conf(cluster, run_dir)
        _start(cluster, "slurmdbd", ["slurmdbd", "-D"])
        _wait(lambda: cluster.run("sacctmgr", "-i", "add", "cluster", cluster.name, check=False).returncode == 0,
              "slurmdbd to answer sacctmgr", cluster, timeout)
        _start(cluster, "slurmctld", ["slurmctld", "-D", "-i"])
        _start(cluster, "slurmd", ["slurmd", "-D", "-N", socket.gethostname()])
        _wait(lambda: cluster.run("sinfo", "-h", "-o", "%T", check=False).stdout.strip() == "idle",
              "the node to be idle in sinfo", cluster, timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _srun_shim(root: Path) -> Path:
    """A folder holding an `srun` that sets SLURM_CONF before it runs the real one. Inside a job, the Snakemake
    jobstep plugin (0.6.1) starts the rule with `srun` in an environment stripped of every SLURM_* variable,
    SLURM_CONF included, so srun finds no configuration unless it is in /etc/slurm (as on a real cluster, which
    this test cluster does not touch)."""
    shim = root / "bin"
    shim.mkdir(exist_ok=True)
    srun = shim / "srun"
    srun.write_text(f'#!/bin/sh\nSLURM_CONF={root / "slurm.conf"} exec {_which("srun")} "$@"\n')
    srun.chmod(0o755)
    return shim


def _start(cluster: Cluster, name: str, args: list[str]) -> subprocess.Popen:
    log = open(cluster.root / "log" / f"{name}.out.log", "w")
    process = subprocess.Popen(args, env=cluster.env, stdout=log, stderr=subprocess.STDOUT, cwd=cluster.root,
                               start_new_session=True)
    cluster.processes.append((name, process))
    return process


def _wait(ready, what: str, cluster: Cluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        dead = [name for name, p in cluster.processes if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            why = f"{', '.join(dead)} exited" if dead else f"not within {timeout:.0f} s"
            raise RuntimeError(f"waited for {what}: {why}\n{cluster.logs()}")
        time.sleep(0.5)


def _start_munge(cluster: Cluster, run_dir: Path) -> None:
    key = cluster.root / "munge/munge.key"
    subprocess.run(["mungekey", "--create", "--keyfile", str(key)], check=True, capture_output=True)
    key.chmod(0o600)
    (cluster.root / "munge").chmod(0o700)
    socket_path = run_dir / "munge.socket"
    _start(cluster, "munged", ["munged", "--foreground", "--force", f"--key-file={key}", f"--socket={socket_path}",
                               f"--pid-file={run_dir / 'munged.pid'}", f"--seed-file={cluster.root / 'munge/seed'}",
                               f"--log-file={cluster.root / 'log/munged.log'}"])
    _wait(socket_path.exists, "the munge socket", cluster, 30)


def _start_mariadb(cluster: Cluster, run_dir: Path) -> None:
    data = cluster.root / "mysql"
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root", "--skip-test-db",
                    "--auth-root-authentication-method=socket"], check=True, capture_output=True)
    cluster.db_port = _free_port()
    db_socket = run_dir / "mysqld.sock"
    _start(cluster, "mariadbd", ["mariadbd", "--no-defaults", f"--datadir={data}", "--user=root",
                                 f"--socket={db_socket}", f"--port={cluster.db_port}",
                                 "--bind-address=127.0.0.1", f"--pid-file={run_dir / 'mysqld.pid'}",
                                 f"--log-error={cluster.root / 'log/mariadb.log'}", "--skip-log-bin",
                                 "--innodb-buffer-pool-size=64M", "--innodb-lock-wait-timeout=900"])
    _wait(db_socket.exists, "the MariaDB socket", cluster, 60)
    cluster.db_password = os.urandom(12).hex()
    sql = (f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{cluster.db_password}'; "
           "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';")
    subprocess.run(["mariadb", "--no-defaults", f"--socket={db_socket}", "-u", "root", "-e", sql],
                   check=True, capture_output=True)


def _write_slurm_conf(cluster: Cluster, run_dir: Path) -> None:
    root, host = cluster.root, socket.gethostname()
    auth = f"AuthType=auth/munge\nAuthInfo=socket={run_dir / 'munge.socket'}\n"
    dbd_port = _free_port()
    dbd = root / "slurmdbd.conf"  # slurmdbd reads it next to $SLURM_CONF; it must be 0600 and owned by SlurmUser
    dbd.write_text(auth + f"""DbdHost={host}
DbdAddr=127.0.0.1
DbdPort={dbd_port}
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={cluster.db_port}
StorageUser=slurm
StoragePass={cluster.db_password}
StorageLoc=slurm_acct_db
LogFile={root / 'log/slurmdbd.log'}
PidFile={run_dir / 'slurmdbd.pid'}
""")
    dbd.chmod(0o600)
    # gres/gpu counts only GPUs with a device file: stand-in character devices, one per declared GPU
    (root / "gres.conf").write_text("".join(f"NodeName={host} Name=gpu Count=1 File={device}\n"
                                            for device in STAND_IN_GPUS[:cluster.gpus]))
    node = (f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cluster.cpus} RealMemory={cluster.memory_mb} "
            f"Gres=gpu:{cluster.gpus} State=UNKNOWN")
    (root / "slurm.conf").write_text(auth + f"""ClusterName={cluster.name}
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
CredType=cred/munge
StateSaveLocation={root / 'state'}
SlurmdSpoolDir={root / 'spool'}
SlurmctldPidFile={run_dir / 'slurmctld.pid'}
SlurmdPidFile={run_dir / 'slurmd.pid'}
SlurmctldLogFile={root / 'log/slurmctld.log'}
SlurmdLogFile={root / 'log/slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SlurmdParameters=config_overrides
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={dbd_port}
AccountingStoragePass={run_dir / 'munge.socket'}
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
MinJobAge=300
{node}
PartitionName=cpu Nodes={host} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={host} MaxTime=INFINITE State=UP
""")


def site_profile(cluster: Cluster, profile: Path, dest: Path, threads: int = 1) -> Path:
    """A second Snakemake profile with the changes a site makes to `profile` (workflow/profiles/slurm) to fit
    this node: every job's `cpus_per_task` and threads capped at `threads` (the node then runs
    `cpus // threads` jobs at once, like a local `--cores 2 --max-threads 1`), `mem_mb` at the node's memory
    per CPU, and the first status check after 1 s instead of the plugin's 40. Partitions, runtimes, the `gpu`
    resource and the status command stay the profile's. `snakemake --profile PROFILE --profile DEST` applies it on
    top (the later profile replaces a top-level key of the earlier)."""
    import yaml

    base = yaml.safe_load((profile / "config.yaml").read_text())

    def fit(resources: dict) -> dict:
        fitted = dict(resources)
        if "cpus_per_task" in fitted:
            fitted["cpus_per_task"] = min(fitted["cpus_per_task"], threads)
        if "mem_mb" in fitted:
            fitted["mem_mb"] = min(fitted["mem_mb"], cluster.memory_mb // cluster.cpus)
        return fitted

    overlay = {
        "default-resources": fit(base["default-resources"]),
        "set-resources": {rule: fit(resources) for rule, resources in base["set-resources"].items()},
        "max-threads": threads,  # caps the profile's set-threads
        "slurm-init-seconds-before-status-checks": 1,
    }
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False))
    return dest


def snakemake_on(cluster: Cluster, project: Path, site: Path, *args: str, check: bool = True,
                 background: bool = False) -> subprocess.CompletedProcess | subprocess.Popen:
    """`snakemake --profile workflow/profiles/slurm --profile SITE ARGS` in `project` (its own copy of the profile
    when it has one, else this checkout's), submitting to `cluster`; with `background`, the running process."""
    import sys

    profile = project / "workflow/profiles/slurm"
    if not profile.is_dir():
        profile = Path(__file__).resolve().parents[1] / "workflow/profiles/slurm"
    command = [sys.executable, "-m", "snakemake", "--profile", str(profile), "--profile", str(site), *args]
    env = dict(cluster.env, PATH=f"{Path(sys.executable).parent}{os.pathsep}{cluster.env['PATH']}",
               PYTHONDONTWRITEBYTECODE="1")
    if background:
        return subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result
