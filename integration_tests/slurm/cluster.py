"""Driving the local Slurm cluster from the tests: submit a template, read `scontrol show job`, wait."""

from __future__ import annotations

import csv
import importlib.util
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType

from conftest import REPO, cli_env

FINAL_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}
)
# The test cluster's nodes have no GPUs; Slurm 22.05 accepts 0 for a template's --gpus-per-node.
NO_GPU = "--gpus-per-node=0"
_TIME_CHECK = re.compile(r"^\[(\S+)\] debug2: Testing job time limits", re.M)
_FIELD = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z/:_]*)=(\S*)")


def load_local_slurm() -> ModuleType:
    """tools/local_slurm.py (a script, not an installed module)."""
    spec = importlib.util.spec_from_file_location("local_slurm", REPO / "tools" / "local_slurm.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["local_slurm"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def fresh_clone(dest: Path) -> Path:
    """Copy the template files a clone of the repository holds (tracked, or new and not ignored)."""
    proc = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", "slurm", "packages/*/slurm/*"],
        cwd=REPO, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git ls-files in {REPO} failed: {proc.stderr.strip()}")
    for rel in proc.stdout.split():
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    return dest


@dataclass
class Job:
    """One submitted job (or array job) and what `scontrol show job` says about it."""

    cluster: Cluster
    id: str
    label: str

    def records(self) -> list[dict[str, str]]:
        """One dict per job (per array task), from `scontrol -o show job`."""
        proc = self.cluster.command(["scontrol", "-o", "show", "job", self.id])
        return [dict(_FIELD.findall(line)) for line in proc.stdout.splitlines() if line.strip()]

    def info(self) -> dict[str, str]:
        return self.records()[0]

    @property
    def state(self) -> str:
        return self.info()["JobState"]

    @property
    def output(self) -> Path:
        """The job's --output file as Slurm resolved it (the first one for an array)."""
        return Path(self.info()["StdOut"])

    def log(self) -> str:
        files = sorted({Path(r["StdOut"]) for r in self.records()})
        return "\n".join(f.read_text(errors="replace") for f in files if f.is_file())

    def wait_for(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.label} (job {self.id}): no {what} after {timeout:.0f} s\n{self.describe()}")
            time.sleep(0.25)

    def wait(self, timeout: float = 420) -> dict[str, str]:
        """Wait until every record of the job is in a final state; return the first record."""
        self.wait_for(lambda: all(r["JobState"] in FINAL_STATES for r in self.records()), timeout, "end of the job")
        return self.info()

    def assert_completed(self, timeout: float = 420) -> None:
        self.wait(timeout)
        bad = [r for r in self.records() if r["JobState"] != "COMPLETED" or r["ExitCode"] != "0:0"]
        assert not bad, f"{self.label} (job {self.id}) did not complete\n{self.describe()}"

    def describe(self) -> str:
        """States and the end of the output, for assertion messages."""
        lines = [
            f"{r.get('JobId')} {r.get('JobState')} reason={r.get('Reason')} exit={r.get('ExitCode')} "
            f"restarts={r.get('Restarts')} nodes={r.get('NodeList')} output={r.get('StdOut')}"
            for r in self.records()
        ]
        return "\n".join(lines) + "\n--- output (end)\n" + self.log()[-8000:]


@dataclass
class Cluster:
    """The running test cluster, the fresh-clone copy of the templates, and how to submit to them."""

    local: object  # tools/local_slurm.py's LocalSlurm
    clone: Path
    jobs: list[Job] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = cli_env(**extra)
        env.update(self.local.env)  # type: ignore[attr-defined]
        return env

    def command(self, cmd: list[str]) -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def submit(self, template: str, *args: object, sbatch: tuple[str, ...] = (), env: dict[str, str] | None = None,
               label: str | None = None) -> Job:
        """`sbatch [options] TEMPLATE ARGS` from the clone's root, as a user submits from the repository."""
        return self._sbatch([*sbatch, template, *map(str, args)], env, label or template)

    def submit_command(self, command: str, *, sbatch: tuple[str, ...] = (), label: str) -> Job:
        """`sbatch [options] --wrap COMMAND` from the clone's root."""
        return self._sbatch([*sbatch, "--wrap", command], None, label)

    def _sbatch(self, argv: list[str], env: dict[str, str] | None, label: str) -> Job:
        cmd = ["sbatch", "--parsable", *argv]
        proc = subprocess.run(cmd, env=self.env(**(env or {})), cwd=self.clone, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}"
        job = Job(self, proc.stdout.strip().split(";")[0], label)
        self.jobs.append(job)
        return job

    def idle_cpus(self, node: str) -> int:
        """CPUs of the node no job holds (`sinfo --nodes=X --format=%C` counts none as allocated in 22.05)."""
        info = dict(_FIELD.findall(self.command(["scontrol", "-o", "show", "node", node]).stdout))
        return int(info["CPUTot"]) - int(info["CPUAlloc"])

    def next_time_limit_check(self) -> float:
        """When slurmctld next tests time limits and sends --signal warnings (every 30 s), in epoch seconds."""
        log = self.local.root / "log" / "slurmctld.log"  # type: ignore[attr-defined]
        deadline = time.monotonic() + 40  # the first check comes 30 s after slurmctld starts
        while not (stamps := _TIME_CHECK.findall(log.read_text())):
            assert time.monotonic() < deadline, "slurmctld logged no time-limit check (the test cluster logs at debug2 for this)"
            time.sleep(0.5)
        last = datetime.fromisoformat(stamps[-1]).timestamp()
        return last + 30 * max(1, -(-(time.time() - last) // 30))


def assert_written_once_by_rank0(run_dir: Path) -> None:
    """A multi-process run's files exist once: no second rank wrote logs, metrics or rank-suffixed files."""
    for name in ("final_model.pth", "best_model.pth", "last.pth", "config.yaml", "training_history.csv", "train.log"):
        assert (run_dir / name).exists(), f"{run_dir / name} is missing"
    log = (run_dir / "train.log").read_text()
    epoch_lines = [line for line in log.splitlines() if " perception.train: epoch " in line]
    assert epoch_lines and len(epoch_lines) == len(set(epoch_lines)), "a second rank wrote to train.log"
    with open(run_dir / "metrics.csv", newline="") as f:
        keys = Counter((r["step"], r["tag"]) for r in csv.DictReader(f))
    assert max(keys.values()) == 1, "a scalar was logged twice: more than one rank writes metrics"
    assert not [p for p in run_dir.rglob("*") if "rank1" in p.name or "rank_1" in p.name]
