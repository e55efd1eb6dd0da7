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

It leaves the machine as it found it, the Debian packages aside: when it installed them they stay
installed, with what their installation created (the munge user, /etc/munge and its key, /var/lib/munge,
/var/log/munge, /etc/slurm/plugstack.conf: dpkg's, not the harness's). Everything the harness itself creates outside its `root`
folder is recorded before it is created and removed by `stop` (so a machine that already had munge keeps
its own): /etc/slurm/slurm.conf and gres.conf, /etc/slurm if it was not there, /etc/munge and the munge
key if they were not there, /run/munge, /var/lib/munge and /var/log/munge if they were not there, and in
those that were, the entries its munged added (socket, socket lock, pid file, seed, log); owner and mode
of an existing /etc/munge, key or munge folder it changed are put back; and its lock file
semcore-slurm-test.lock in tempfile.gettempdir(). Its jobs are cancelled and waited for before slurmd
stops (else their detached slurmstepd linger, retrying to report); any slurmstepd still left is killed.
`stop` runs on leaving the `with` block (an exception
or Ctrl-C included), at interpreter exit (atexit) if it was not called, and on SIGTERM (turned into
KeyboardInterrupt while the cluster runs).
State, spool, pid and log files and the placeholder devices are in `root` (pytest's tmp_path in the test;
a temporary folder removed on exit when run by hand). Only SIGKILL leaves things behind.

By hand:  python tests/slurm_cluster.py   (starts the cluster, waits for Enter, stops it)
"""
from __future__ import annotations

import atexit
import fcntl
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = Path("/etc/slurm/gres.conf")
GPUS, GPU_TYPE = 2, "testgpu"
MARKER = "# written by semcore tests/slurm_cluster.py; removed when its cluster stops"
PACKAGES = ["munge", "slurmctld", "slurmd", "slurm-client"]
DAEMONS = ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol"]
LOCK = Path(tempfile.gettempdir()) / "semcore-slurm-test.lock"
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_DIRS = [Path("/run/munge"), Path("/var/lib/munge"), Path("/var/log/munge")]


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


def _zombie(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True  # gone


def _descendants(pids: set[int]) -> list[int]:
    """All processes below `pids`, from /proc's parent ids."""
    children: dict[int, list[int]] = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat_file.parent.name))
    found, todo = [], list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _restore_mode(path: Path, st: os.stat_result) -> None:
    now = path.stat()
    if (now.st_uid, now.st_gid) != (st.st_uid, st.st_gid):
        os.chown(path, st.st_uid, st.st_gid)
    if stat.S_IMODE(now.st_mode) != stat.S_IMODE(st.st_mode):
        path.chmod(stat.S_IMODE(st.st_mode))


def _remove_lock(lock) -> None:
    try:
        if os.stat(LOCK).st_ino == os.fstat(lock.fileno()).st_ino:
            LOCK.unlink()
    except FileNotFoundError:
        pass


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
        # What this cluster created or changed outside `root`, recorded before it did: stop() undoes it.
        self._created: list[Path] = []                       # removed, newest first (folders: whole)
        self._created_if_empty: list[Path] = []              # folders removed only if empty (/etc/slurm)
        self._modes: dict[Path, os.stat_result] = {}          # existing paths whose owner/mode it changed
        self._entries: dict[Path, set[str]] = {}              # existing munge folders: entries before munged
        self._old_sigterm = None
        self._stepds_before: set[str] | None = None  # slurmstepd pids before our slurmd (none expected)

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

    def _acquire_lock(self) -> None:
        """One test cluster per machine: ports 6817-6818 and /etc/slurm/slurm.conf are global. The lock
        file is removed by its holder on stop, so take it only if the name still points at the file locked."""
        while True:
            lock = open(LOCK, "a")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                raise Unavailable(f"another SLURM test cluster holds {LOCK} on this machine") from None
            try:
                current = os.stat(LOCK).st_ino == os.fstat(lock.fileno()).st_ino
            except FileNotFoundError:
                current = False
            if current:
                self._lock = lock
                return
            lock.close()  # its holder removed it between our open and flock: lock the new one

    def _catch_exit(self) -> None:
        """stop() at interpreter exit, and SIGTERM as an interruption (so with-blocks and fixtures end)."""
        atexit.register(self.stop)
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            def interrupt(signum, frame):
                raise KeyboardInterrupt(f"signal {signum}")
            self._old_sigterm = signal.signal(signal.SIGTERM, interrupt)

    def start(self, timeout: float = 90) -> "Cluster":
        self._catch_exit()
        self._acquire_lock()
        for conf in (CONF, GRES_CONF):
            if conf.exists() and MARKER not in conf.read_text(errors="replace"):
                raise Unavailable(f"{conf} exists and was not written by this test: not replacing a real "
                                  "cluster's configuration")
        running = [n for n in ("slurmctld", "slurmd") if _pids_of(n)]
        if running or _port_in_use(6817) or _port_in_use(6818):
            what = ", ".join(running) or "ports 6817/6818 in use"
            raise Unavailable(f"SLURM already running on this machine ({what}): not starting a second one")
        self._stepds_before = set(_pids_of("slurmstepd"))
        for sub in ("log", "run", "state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        if not CONF.parent.exists():
            self._created_if_empty.append(CONF.parent)
            CONF.parent.mkdir(parents=True)
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
        key = MUNGE_KEY
        for path in (key.parent, key, *MUNGE_DIRS):  # before anything is created or changed
            if path.exists():
                self._modes[path] = path.stat()
        if not key.parent.exists():
            self._created.append(key.parent)
            key.parent.mkdir(mode=0o700, parents=True)
        if not key.exists():
            self._created.append(key)
            key.write_bytes(os.urandom(1024))
        for path in (key.parent, key):
            os.chown(path, user.pw_uid, user.pw_gid)
        key.chmod(0o400)
        for d in MUNGE_DIRS:
            if d.exists():
                self._entries[d] = {p.name for p in d.iterdir()}
            else:
                self._created.append(d)
                d.mkdir(parents=True)
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

    def leftovers(self) -> list[str]:
        """What this cluster created outside `root` and is still there (empty after stop)."""
        left = [str(p) for p in self._created + self._created_if_empty if os.path.lexists(p)]
        left += [f"{d}/{name}" for d, before in self._entries.items() if d.exists()
                 for name in sorted({p.name for p in d.iterdir()} - before)]
        left += [str(c) for c in (CONF, GRES_CONF)
                 if self._wrote_conf and c.exists() and MARKER in c.read_text(errors="replace")]
        left += [f"slurmstepd pid {pid}" for pid in self._stray_stepds()]
        return left + ([str(LOCK)] if self._lock is not None else [])

    def stop(self) -> None:
        """Undo start, each step even if one before failed; idempotent. Failures are logged and kept in
        self.cleanup_errors (leftovers() says what remains)."""
        self.cleanup_errors: list[str] = []

        def step(what, fn, *args):
            try:
                fn(*args)
            except Exception as e:  # go on: the other steps still clean up
                self.cleanup_errors.append(f"{what}: {e!r}")
                self.log(f"[slurm] clean-up: {what} failed: {e!r}")

        step("scancel", self._cancel_jobs)
        for name in ("slurmd", "slurmctld", "munged"):  # reverse order of start
            step(f"stop {name}", self._end, name)
        step("end job steps", self._end_stepds)
        for conf in (CONF, GRES_CONF):
            if self._wrote_conf and conf.exists() and MARKER in conf.read_text(errors="replace"):
                step(f"remove {conf}", conf.unlink)
        for d, before in self._entries.items():  # existing munge folders: what our munged added
            if d.exists():
                for p in d.iterdir():
                    if p.name not in before:
                        step(f"remove {p}", _remove, p)
        self._entries = {}
        for path in reversed(self._created):  # newest first: the key before /etc/munge
            step(f"remove {path}", _remove, path)
        self._created = []
        for path in reversed(self._created_if_empty):
            if path.is_dir() and not any(path.iterdir()):
                step(f"remove {path}", path.rmdir)
        self._created_if_empty = []
        for path, st in self._modes.items():  # owner and mode of what existed, as found
            if path.exists():
                step(f"restore {path}", _restore_mode, path, st)
        self._modes = {}
        if self._lock is not None:  # remove it while holding it (see _acquire_lock), then release
            step(f"remove {LOCK}", _remove_lock, self._lock)
            self._lock.close()
            self._lock = None
        if self._old_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None
        atexit.unregister(self.stop)

    def _cancel_jobs(self, timeout: float = 30) -> None:
        """Cancel every job and wait until SLURM has ended them: a slurmd stopped while its job steps
        end leaves their slurmstepd behind, retrying to report to the gone slurmctld."""
        if not (self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None):
            return
        _run(["scancel", "--full", "--user", "root"], timeout=10)  # nothing of ours keeps running
        ended = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
                 "DEADLINE", "OUT_OF_MEMORY"}
        deadline, active = time.monotonic() + timeout, set()
        while time.monotonic() < deadline:
            active = set(_run(["squeue", "-h", "-o", "%T"], timeout=10).stdout.split()) - ended
            if not active:
                return
            time.sleep(0.5)
        self.log(f"[slurm] jobs not ended {timeout:.0f} s after scancel: {sorted(active)}")

    def _stray_stepds(self) -> list[str]:
        """slurmstepd processes our slurmd started (they detach from it) that are still running."""
        if self._stepds_before is None or "slurmd" not in self.procs:
            return []
        return sorted((p for p in set(_pids_of("slurmstepd")) - self._stepds_before if not _zombie(p)), key=int)

    def _end_stepds(self) -> None:
        """Last resort after slurmd has stopped: SIGKILL what is left of our job steps, their tasks first."""
        stray = self._stray_stepds()
        if not stray:
            return
        tasks = _descendants({int(p) for p in stray})
        self.log(f"[slurm] killing leftover slurmstepd {', '.join(stray)} and their {len(tasks)} processes")
        for pid in [*tasks, *map(int, stray)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while self._stray_stepds() and time.monotonic() < deadline:
            time.sleep(0.2)

    def _end(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

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
    with tempfile.TemporaryDirectory(prefix="slurm-") as root, Cluster(Path(root)) as cluster:
        print(f"slurm.conf: {CONF}; slurmctld log: {cluster.ctld_log}")
        input("Cluster running (try `sinfo`, `sbatch --wrap hostname`). Enter stops it. ")
