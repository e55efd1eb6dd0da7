"""A real single-node SLURM cluster on this machine, for tests (see test_slurm.py).

Installs Debian's munge + slurmctld + slurmd + slurm-client when `sbatch` is missing (root and apt-get
needed), writes /etc/slurm/slurm.conf for one node `localhost` with this machine's CPUs and memory, and
runs munged, slurmctld and slurmd in the foreground as child processes, ended by PID on exit. State,
spool, pid and log files live in a temporary folder. The node has GPUS GPUs of GRES type GPU_TYPE backed
by placeholder character devices (the major/minor of /dev/null) in that folder, declared in
/etc/slurm/gres.conf: SLURM schedules them (--gpus, CUDA_VISIBLE_DEVICES) though there is no hardware. Without accounting (no slurmdbd) `sacct` cannot
answer, so jobs stay visible to `squeue`/`scontrol` for MinJobAge = 600 s and the executor plugin must
use `slurm-status-command: squeue`.

It never touches a SLURM it did not set up: a slurm.conf without this module's marker line, or slurm
daemons already running, make `start` refuse (the test then skips, saying why).

By hand:  python tests/slurm_cluster.py   (starts the cluster, waits for Enter, stops it)
"""
from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = Path("/etc/slurm/gres.conf")
GPUS, GPU_TYPE = 2, "testgpu"
MARKER = "# written by semcore tests/slurm_cluster.py; removed when its cluster stops"
PACKAGES = ["munge", "slurmctld", "slurmd", "slurm-client"]
DAEMONS = ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol"]
LOCK = Path(tempfile.gettempdir()) / "semcore-slurm-test.lock"


class Unavailable(Exception):
    """SLURM cannot be installed or started here; the message says why."""


def _run(cmd: list[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def ensure_installed(log=print) -> None:
    """Install the Debian packages if a SLURM command is missing; raise Unavailable if that cannot be."""
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise Unavailable(f"{', '.join(missing)} not installed and not root, so apt-get cannot install them")
    if shutil.which("apt-get") is None:
        raise Unavailable(f"{', '.join(missing)} not installed and no apt-get to install {' '.join(PACKAGES)}")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    started = time.monotonic()
    for cmd in (["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]):
        try:
            result = _run(cmd, timeout=600, env=env)
        except subprocess.TimeoutExpired:
            raise Unavailable(f"`{' '.join(cmd)}` did not finish in 600 s") from None
        if result.returncode != 0:
            raise Unavailable(f"`{' '.join(cmd)}` failed ({result.returncode}): {result.stderr.strip()[-800:]}")
    still = [d for d in DAEMONS if shutil.which(d) is None]
    if still:
        raise Unavailable(f"installed {' '.join(PACKAGES)} but {', '.join(still)} still missing")
    log(f"[slurm] installed {' '.join(PACKAGES)} with apt-get in {time.monotonic() - started:.0f} s")


def _meminfo_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise Unavailable("no MemTotal in /proc/meminfo")


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _pids_of(name: str) -> list[str]:
    result = _run(["pgrep", "-x", name])
    return result.stdout.split()


class Cluster:
    """`with Cluster(workdir) as c:` — a running one-node cluster; c.ctld_log is slurmctld's log."""

    def __init__(self, root: Path, log=print):
        self.root = Path(root)
        self.log = log
        self.procs: dict[str, subprocess.Popen] = {}
        self.ctld_log = self.root / "log" / "slurmctld.log"
        self.slurmd_log = self.root / "log" / "slurmd.log"
        self.cpus = os.cpu_count() or 1
        # slurmd drains a node whose RealMemory exceeds what it measures: leave a margin.
        self.real_memory = int(_meminfo_mib() * 0.95)
        self._lock = None
        self._wrote_conf = False

    # -- set-up ---------------------------------------------------------------------------------------

    def conf_text(self) -> str:
        r = self.root
        return "\n".join([
            MARKER,
            "ClusterName=semcoretest",
            f"SlurmctldHost={socket.gethostname().split('.')[0]}(127.0.0.1)",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            "MpiDefault=none",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "ReturnToService=2",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "DefMemPerCPU=1000",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MinJobAge=600",              # finished jobs stay in squeue/scontrol: the plugin's squeue status
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            f"SlurmctldLogFile={self.ctld_log}",
            f"SlurmdLogFile={self.slurmd_log}",
            f"SlurmctldPidFile={r}/run/slurmctld.pid",
            f"SlurmdPidFile={r}/run/slurmd.pid",
            f"StateSaveLocation={r}/state",
            f"SlurmdSpoolDir={r}/spool",
            "GresTypes=gpu",
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.real_memory} "
            f"Gres=gpu:{GPU_TYPE}:{GPUS} State=UNKNOWN",
            "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
            "",
        ])

    def gres_text(self) -> str:
        return "\n".join([MARKER, "AutoDetect=off",
                          f"NodeName=localhost Name=gpu Type={GPU_TYPE} File={self.root}/dev/nvidia[0-{GPUS - 1}]", ""])

    def _make_gpu_devices(self) -> None:
        """Placeholder GPUs: character devices 1:3 (as /dev/null); slurmd rejects plain files."""
        (self.root / "dev").mkdir(parents=True, exist_ok=True)
        for i in range(GPUS):
            device = self.root / "dev" / f"nvidia{i}"
            if not device.exists():
                os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))

    def start(self, timeout: float = 90) -> "Cluster":
        self._lock = open(LOCK, "w")
        try:  # one test cluster per machine: ports 6817-6818 and /etc/slurm/slurm.conf are global
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Unavailable(f"another SLURM test cluster holds {LOCK} on this machine") from None
        for conf in (CONF, GRES_CONF):
            if conf.exists() and MARKER not in conf.read_text(errors="replace"):
                raise Unavailable(f"{conf} exists and was not written by this test: not replacing a real "
                                  "cluster's configuration")
        running = [n for n in ("slurmctld", "slurmd") if _pids_of(n)]
        if running or _port_in_use(6817) or _port_in_use(6818):
            what = ", ".join(running) or "ports 6817/6818 in use"
            raise Unavailable(f"SLURM already running on this machine ({what}): not starting a second one")
        for sub in ("log", "run", "state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        CONF.parent.mkdir(parents=True, exist_ok=True)
        self._make_gpu_devices()
        self._wrote_conf = True
        CONF.write_text(self.conf_text())
        GRES_CONF.write_text(self.gres_text())
        started = time.monotonic()
        self._start_munge()
        self._spawn("slurmctld", ["slurmctld", "-D", "-i"])
        self._spawn("slurmd", ["slurmd", "-D", "-N", "localhost"])
        self._wait_idle(timeout)
        self.log(f"[slurm] cluster up in {time.monotonic() - started:.1f} s: node localhost, {self.cpus} CPUs, "
                 f"{GPUS} placeholder GPUs ({GPU_TYPE}), "
                 f"RealMemory={self.real_memory} MiB; daemons "
                 + ", ".join(f"{n} pid {p.pid}" for n, p in self.procs.items()))
        return self

    def _spawn(self, name: str, cmd: list[str], **kw) -> None:
        out = open(self.root / "log" / f"{name}.stdout", "w")
        self.procs[name] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True, **kw)
        out.close()

    def _munge_works(self) -> bool:
        try:
            cred = _run(["munge", "-n"], timeout=10)
            return cred.returncode == 0 and _run(["unmunge"], input=cred.stdout, timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def _start_munge(self) -> None:
        if self._munge_works():
            self.log("[slurm] using the munged already running")
            return
        user = pwd.getpwnam("munge")
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        for path in (key, Path("/etc/munge")):
            os.chown(path, user.pw_uid, user.pw_gid)
        key.chmod(0o400)
        for d in ("/run/munge", "/var/lib/munge", "/var/log/munge"):
            Path(d).mkdir(parents=True, exist_ok=True)
            os.chown(d, user.pw_uid, user.pw_gid)
        self._spawn("munged", ["munged", "-F"], user=user.pw_uid, group=user.pw_gid)
        deadline = time.monotonic() + 15
        while not self._munge_works():
            if self.procs["munged"].poll() is not None or time.monotonic() > deadline:
                raise Unavailable("munged did not start: "
                                  + (self.root / "log" / "munged.stdout").read_text()[-800:])
            time.sleep(0.2)

    def _wait_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise Unavailable(f"{name} exited with {proc.returncode}: " + self.tail(name))
            result = _run(["sinfo", "-h", "-N", "-o", "%T"], timeout=10)
            state = result.stdout.strip()
            if state == "idle":
                return
            time.sleep(0.5)
        raise Unavailable(f"node not idle after {timeout:.0f} s (sinfo: {state!r}); " + self.tail("slurmctld"))

    def tail(self, name: str, chars: int = 1500) -> str:
        texts = []
        for path in (self.root / "log" / f"{name}.stdout", self.root / "log" / f"{name}.log"):
            if path.exists():
                texts.append(path.read_text(errors="replace")[-chars:])
        return "\n".join(texts)

    # -- tear-down ------------------------------------------------------------------------------------

    def stop(self) -> None:
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            _run(["scancel", "--full", "--user", "root"], timeout=10)  # nothing of ours keeps running
        for name in ("slurmd", "slurmctld", "munged"):  # reverse order of start
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for conf in (CONF, GRES_CONF):
            if self._wrote_conf and conf.exists() and MARKER in conf.read_text(errors="replace"):
                conf.unlink()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> "Cluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    ensure_installed()
    with Cluster(Path(tempfile.mkdtemp(prefix="slurm-"))) as cluster:
        print(f"slurm.conf: {CONF}; slurmctld log: {cluster.ctld_log}")
        input("Cluster running (try `sinfo`, `sbatch --wrap hostname`). Enter stops it. ")
