"""A real Slurm cluster on one machine: munged, one slurmctld and two slurmd daemons (nodes n1 and n2).

It is the cluster the integration tests submit the templates to, and the one `tools/local_slurm.sh`
starts for anyone who wants to try a template before queueing on a real cluster. Everything lives in
one state directory: the munge key and socket, slurm.conf, the controller's state, each node's spool
directory, the daemons' logs and a `daemons.json` with their PIDs. Nothing is written to /etc.

The two nodes are two `slurmd -N <node>` daemons on 127.0.0.1, each with its own port and 2 CPUs, in
one partition `debug`. Tasks are bound to cores (task/affinity), so a job step that does not pass
`--cpus-per-task` on to srun runs on one CPU, as on a real cluster. Requeue is allowed, finished jobs
stay visible to `scontrol show job` for an hour, and a requeued job becomes eligible after
`cred_expire` seconds (AuthInfo=cred_expire; Slurm's default is 120 s, which is also the wait of a
requeued job on a real cluster).

Needs root (the daemons run as root and so do the jobs) and the Debian/Ubuntu packages slurmctld,
slurmd, slurm-client and munge; `ensure_installed(install=True)` installs them with apt-get.

Usage: python tools/local_slurm.py up|down|status|env [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "sinfo", "squeue", "scancel")
APT_PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
DEFAULT_DIR = Path(tempfile.gettempdir()) / "perception-lab-slurm"


class ClusterUnavailable(RuntimeError):
    """The cluster cannot run on this machine; the message says why."""


def missing_commands() -> list[str]:
    return [c for c in COMMANDS if shutil.which(c) is None and not Path("/usr/sbin", c).exists()]


def ensure_installed(install: bool) -> None:
    """Raise ClusterUnavailable unless the Slurm and munge commands are there (installing them if asked)."""
    if os.geteuid() != 0:
        raise ClusterUnavailable("the local Slurm cluster runs its daemons and jobs as root; this user is not root")
    missing = missing_commands()
    if not missing:
        return
    if not install:
        raise ClusterUnavailable(f"{', '.join(missing)} not installed (apt-get install {' '.join(APT_PACKAGES)})")
    if shutil.which("apt-get") is None:
        raise ClusterUnavailable(f"{', '.join(missing)} not installed and there is no apt-get to install them")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", *APT_PACKAGES]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ClusterUnavailable(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    if missing_commands():
        raise ClusterUnavailable(f"apt-get installed {' '.join(APT_PACKAGES)} but {', '.join(missing_commands())} is missing")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4096


@dataclass
class LocalSlurm:
    """One controller and ``nodes`` slurmd daemons sharing this machine, all state under ``root``."""

    root: Path
    nodes: tuple[str, ...] = ("n1", "n2")
    cpus: int = 2
    cred_expire: int = 5  # seconds a requeued job waits before it may start again (Slurm's minimum is 5)
    min_job_age: int = 3600  # seconds a finished job stays visible to scontrol
    ctld_debug: str = "info"  # debug2 logs each time-limit check ("Testing job time limits"), every 30 s
    # the daemons this object started: whether one died is asked of its process, not of /proc/PID/cmdline,
    # which names the daemon only once exec has run (until then the child still shows Python's command line)
    _children: dict[str, subprocess.Popen] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge" / "munge.socket"

    @property
    def env(self) -> dict[str, str]:
        """What a client (sbatch, squeue, ...) needs in its environment to talk to this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def command_env(self) -> dict[str, str]:
        env = dict(os.environ, **self.env)
        env["PATH"] = f"{env.get('PATH', '')}{os.pathsep}/usr/sbin"
        return env

    # ----- configuration ---------------------------------------------------------------------
    def write_config(self) -> None:
        # every `up` starts an empty cluster: no job records or node state from an earlier one
        for sub in ("state", "spool"):
            shutil.rmtree(self.root / sub, ignore_errors=True)
        for sub in ("etc", "munge", "state", "log", "run", *(f"spool/{n}" for n in self.nodes)):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        key = self.root / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        ctld_port, *node_ports = _free_ports(1 + len(self.nodes))
        host = socket.gethostname().split(".")[0]
        mem = max(_memory_mb() // len(self.nodes), 256)
        r = self.root
        lines = [
            "# Written by tools/local_slurm.py: a one-machine test cluster; do not use it as a model for a real one.",
            "ClusterName=perception-lab-local",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            # cred_expire is also how long a requeued job waits before it may start again
            f"AuthInfo=socket={self.munge_socket},cred_expire={self.cred_expire}",
            f"StateSaveLocation={r}/state",
            f"SlurmdSpoolDir={r}/spool/%n",
            f"SlurmctldPidFile={r}/run/slurmctld.pid",
            f"SlurmdPidFile={r}/run/slurmd-%n.pid",
            f"SlurmctldLogFile={r}/log/slurmctld.log",
            f"SlurmdLogFile={r}/log/slurmd-%n.log",
            f"SlurmctldDebug={self.ctld_debug}",
            "SlurmdDebug=info",
            # no cgroups (so no cgroup.conf): processes are tracked by parent PID, tasks bound with
            # sched_setaffinity, which also works inside containers
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/affinity",
            "TaskPluginParam=Cores",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SchedulerType=sched/backfill",
            # look at pending jobs every second (default 60 s), so a requeued job starts as soon as it may
            "SchedulerParameters=sched_interval=1,bf_interval=1",
            "JobRequeue=1",
            f"MinJobAge={self.min_job_age}",
            "KillWait=10",
            "InactiveLimit=0",
            "ReturnToService=2",
            "MpiDefault=none",
            "MailProg=/bin/true",
            "SwitchType=switch/none",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            # the configured CPUs count, even where the machine reports a different layout
            "SlurmdParameters=config_overrides",
        ]
        for name, port in zip(self.nodes, node_ports):
            lines.append(f"NodeName={name} NodeAddr=127.0.0.1 NodeHostname={host} Port={port} CPUs={self.cpus} "
                         f"RealMemory={mem} State=UNKNOWN")
        lines.append(f"PartitionName=debug Nodes={','.join(self.nodes)} Default=YES MaxTime=INFINITE State=UP")
        self.conf.write_text("\n".join(lines) + "\n")

    # ----- daemons -----------------------------------------------------------------------------
    @property
    def _pid_file(self) -> Path:
        return self.root / "daemons.json"

    def _pids(self) -> dict[str, int]:
        try:
            return {k: int(v) for k, v in json.loads(self._pid_file.read_text()).items()}
        except (OSError, ValueError):
            return {}

    def _ours(self, pid: int) -> bool:
        """The PID belongs to this cluster (not a reused PID): its command line names the state dir or its
        environment this cluster's SLURM_CONF (daemons, step daemons and job processes)."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        except OSError:
            return False
        return str(self.root) in cmdline or str(self.conf) in environ

    def running(self) -> dict[str, int]:
        """This cluster's live daemons: ours by command line or environment, or started by this object."""
        live = {name: proc.pid for name, proc in self._children.items() if proc.poll() is None}
        return {name: pid for name, pid in self._pids().items() if live.get(name) == pid or self._ours(pid)}

    def _spawn(self, name: str, cmd: list[str]) -> int:
        log = open(self.root / "log" / f"{name}.stdout", "ab")
        proc = subprocess.Popen(cmd, env=self.command_env(), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self._children[name] = proc
        pids = self._pids()
        pids[name] = proc.pid
        self._pid_file.write_text(json.dumps(pids))
        return proc.pid

    def start(self, timeout: float = 60.0) -> None:
        """Write the configuration, start munged, slurmctld and the slurmd daemons, wait for idle nodes."""
        if self.running():
            raise ClusterUnavailable(f"a local cluster already runs from {self.root} (down it first)")
        self.write_config()
        self._pid_file.write_text("{}")
        sbin = "/usr/sbin"
        r = self.root
        self._spawn("munged", [f"{sbin}/munged", "--foreground", "--force", f"--socket={self.munge_socket}",
                               f"--key-file={r}/munge/munge.key", f"--pid-file={r}/run/munged.pid",
                               f"--log-file={r}/log/munged.log", f"--seed-file={r}/munge/munged.seed"])
        self._wait(lambda: self.munge_socket.exists(), timeout, "munged did not create its socket")
        self._spawn("slurmctld", [f"{sbin}/slurmctld", "-D", "-i", "-f", str(self.conf)])
        self._wait(lambda: self._query(["scontrol", "ping"]).returncode == 0, timeout, "slurmctld does not answer")
        for node in self.nodes:
            self._spawn(f"slurmd-{node}", [f"{sbin}/slurmd", "-D", "-N", node, "-f", str(self.conf)])
        self._wait(self._all_idle, timeout, "the nodes did not become idle")

    def _query(self, cmd: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, env=self.command_env(), capture_output=True, text=True, timeout=30)

    def _all_idle(self) -> bool:
        proc = self._query(["sinfo", "--noheader", "--Node", "--format=%N %t"])
        states = dict(line.split() for line in proc.stdout.splitlines() if line.strip())
        return proc.returncode == 0 and all(states.get(n) == "idle" for n in self.nodes)

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if any(proc.poll() is not None for proc in self._children.values()):  # a daemon exited
                break
            time.sleep(0.5)
        logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                         for p in sorted((self.root / "log").glob("*")) if p.stat().st_size)
        self.stop()
        raise ClusterUnavailable(f"{what} (state in {self.root})\n{logs}")

    def stop(self, timeout: float = 20.0) -> list[str]:
        """Cancel the cluster's jobs, then stop the daemons this state directory started, by PID (slurmd
        first, munged last). Jobs go first because a stopped slurmd leaves its running jobs behind."""
        pids = self.running()
        if "slurmctld" in pids:
            self._cancel_jobs(timeout=60.0)
        order = sorted(pids, key=lambda n: (n == "munged", n == "slurmctld", n))
        stopped = []
        for name in order:
            pid = pids[name]
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + timeout
            while self._ours(pid) and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.2)
            if self._ours(pid):
                os.kill(pid, signal.SIGKILL)
                _reap(pid)
            stopped.append(f"{name} ({pid})")
        self._pid_file.unlink(missing_ok=True)
        return stopped

    def _jobs(self) -> list[str]:
        proc = self._query(["squeue", "--noheader", "--format=%i"])
        return proc.stdout.split() if proc.returncode == 0 else []

    def _step_daemons(self) -> list[int]:
        """This cluster's slurmstepd processes (they carry its SLURM_CONF in their environment)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and self._ours(int(entry.name)):
                try:
                    if (entry / "comm").read_text().strip() == "slurmstepd":
                        found.append(int(entry.name))
                except OSError:
                    pass
        return found

    def _cancel_jobs(self, timeout: float) -> None:
        """Cancel every job and wait until their step daemons have reported back and exited."""
        jobs = self._jobs()
        if jobs:
            self._query(["scancel", *jobs])
        deadline = time.monotonic() + timeout  # the jobs get KillWait (10 s) to save a checkpoint
        while (self._jobs() or self._step_daemons()) and time.monotonic() < deadline:
            time.sleep(0.5)

    def status(self) -> str:
        running = self.running()
        if not running:
            return f"no local cluster runs from {self.root}"
        lines = [f"daemons: {', '.join(f'{n} ({p})' for n, p in running.items())}", f"export SLURM_CONF={self.conf}"]
        for cmd in (["sinfo"], ["squeue"]):
            proc = self._query(cmd)
            lines.append(proc.stdout.rstrip() or proc.stderr.rstrip())
        return "\n".join(lines)


def _reap(pid: int) -> None:
    """Collect a child that exited, so that it leaves no zombie that /proc still lists."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("up", "down", "status", "env"))
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("PL_SLURM_DIR", DEFAULT_DIR)),
                        help=f"state directory (default $PL_SLURM_DIR or {DEFAULT_DIR})")
    parser.add_argument("--no-install", action="store_true", help="fail instead of installing missing packages")
    args = parser.parse_args(argv)
    cluster = LocalSlurm(args.dir)
    try:
        if args.action == "up":
            ensure_installed(install=not args.no_install)
            cluster.start()
            print(cluster.status())
            print(f"\nnow: export SLURM_CONF={cluster.conf}   (then sbatch/squeue/scontrol as usual)")
        elif args.action == "down":
            stopped = cluster.stop()
            print(f"stopped {', '.join(stopped)}" if stopped else f"no local cluster runs from {args.dir}")
        elif args.action == "env":
            print(f"export SLURM_CONF={cluster.conf}")
        else:
            print(cluster.status())
            return 0 if cluster.running() else 3
    except ClusterUnavailable as e:
        print(f"local_slurm: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
