"""Preemption end to end, driven by Slurm: the time-limit warning, USR1 to the batch shell, scontrol
requeue, a plain scancel, and a kill without warning followed by a resubmission, each on a
sparse-video-loss run through slurm/single_node.sbatch (the time-limit run with one process; the others
with two under torchrun, the way a multi-GPU job runs).

A run that is stopped and resumed must end with the same weights and metrics as the uninterrupted run
of the same command (template_runs submits those reference runs first). Node n2 runs these jobs only;
the time-limit job is submitted before the others and checked last, so that the runs share n2's two CPUs.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
import torch

from .cluster import FINAL_STATES, Cluster, Job
from .template_runs import PREEMPT, PREEMPT_LANE, PREEMPT_SBATCH, Submitted

pytestmark = pytest.mark.slow

TEMPLATE = "slurm/single_node.sbatch"
# How long after its start the time-limit job should get the warning: past the start of training
# (about 5 s on an idle machine), well before its end.
WARNING_AFTER_S = 14
SAVED = re.compile(r"perception.train: received SIGTERM: saved \S+ at epoch (\d+), step (\d+)")
RESUMED = re.compile(r"perception.train: resumed from \S+: (\d+) epoch\(s\) done, step (\d+), batch (\d+) of the current epoch")


STEPS_PER_EPOCH = PREEMPT["short"].steps_per_epoch


def submit(cluster: Cluster, data: Path, length: str, name: str, *sbatch: str) -> tuple[Job, Path]:
    run_dir = cluster.clone / "runs" / name
    job = cluster.submit(TEMPLATE, *PREEMPT[length].command(data), sbatch=(*PREEMPT_LANE, *PREEMPT_SBATCH, *sbatch),
                         env={"PL_RUN_DIR": str(run_dir), "PL_NPROC_PER_NODE": str(PREEMPT[length].nproc)}, label=name)
    return job, run_dir


def progress_step(run_dir: Path) -> int:
    """The last step the running training logged (its progress.json), 0 before the first."""
    try:
        return int(json.loads((run_dir / "progress.json").read_text())["global_step"])
    except (OSError, ValueError, KeyError):
        return 0


def wait_mid_epoch(job: Job, run_dir: Path) -> int:
    """Wait until training is inside an epoch (a few steps in, several before its end); return the step."""
    job.wait_for(lambda: 3 <= progress_step(run_dir) % STEPS_PER_EPOCH <= STEPS_PER_EPOCH - 8, 300, "training inside an epoch")
    return progress_step(run_dir)


def history(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "training_history.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "time_s"} for row in csv.DictReader(f)]


def assert_same_result(run_dir: Path, reference: Submitted) -> None:
    """Same final weights (bit for bit) and the same per-epoch metrics as the uninterrupted run."""
    reference.job.assert_completed()
    ours = torch.load(run_dir / "final_model.pth", weights_only=True)
    theirs = torch.load(reference.run_dir / "final_model.pth", weights_only=True)
    assert ours["global_step"] == theirs["global_step"]
    differ = [k for k in theirs["model"] if not torch.equal(ours["model"][k], theirs["model"][k])]
    assert not differ, f"weights differ from the uninterrupted run: {differ[:5]}"
    assert history(run_dir) == history(reference.run_dir)


@pytest.fixture(scope="module")
def time_limit_job(cluster, template_jobs) -> tuple[Job, Path]:
    """The LONG run with a 1-minute limit (the template's own `--signal=B:USR1@180` stays), followed
    until an attempt saved a checkpoint on Slurm's warning.

    slurmctld checks time limits every 30 s (the check times are in its log) and sends the warning at
    the first check after a job starts, since the warning time exceeds the whole limit: 0-30 s after
    the first start, about 24 s after each requeue (6 s of requeue delay). The job is submitted so that
    its first warning comes about WARNING_AFTER_S after it starts; if training has not started by then
    (a slow start), the job requeues without a checkpoint and the next attempt is warned mid-training.
    Once an attempt has saved a checkpoint and requeued the job, its limit is extended (as a user may do
    for a pending job), so the requeued job finishes in one more attempt."""
    deadline = time.monotonic() + 180
    while cluster.idle_cpus("n2") < 1:  # the two-node jobs and the reference runs go first
        assert time.monotonic() < deadline, "no CPU of n2 became free"
        time.sleep(0.25)
    submit_at = cluster.next_time_limit_check() - WARNING_AFTER_S
    if submit_at < time.time() + 0.5:
        submit_at += 30
    time.sleep(submit_at - time.time())
    job, run_dir = submit(cluster, template_jobs["reference_long"].data, "long", "preempt-time-limit", "--time=1")
    job.wait_for(lambda: "training saved a checkpoint" in job.log() or job.state in FINAL_STATES, 300, "a checkpoint on the warning")
    if job.state not in FINAL_STATES:
        cluster.command(["scontrol", "update", f"JobId={job.id}", "TimeLimit=10"])
    return job, run_dir


def test_usr1_to_the_batch_shell_mid_epoch_requeues_and_resumes(cluster, template_jobs, time_limit_job):
    job, run_dir = submit(cluster, template_jobs["reference_short"].data, "short", "preempt-usr1")
    wait_mid_epoch(job, run_dir)
    cluster.command(["scancel", "--signal=USR1", "--batch", job.id])
    job.assert_completed()
    log = job.log()
    assert job.info()["Restarts"] == "1"
    assert "caught SIGUSR1" in log and "requeueing job" in log
    epoch, step = map(int, SAVED.search(log).groups())  # type: ignore[union-attr]
    assert step % STEPS_PER_EPOCH, "the checkpoint is mid-epoch"
    assert RESUMED.search(log).group(2) == str(step)  # type: ignore[union-attr]
    assert "no steps lost" in log
    assert_same_result(run_dir, template_jobs["reference_short"])


def test_scontrol_requeue_resumes_from_the_last_checkpoint_and_says_what_was_lost(cluster, template_jobs, time_limit_job):
    job, run_dir = submit(cluster, template_jobs["reference_short"].data, "short", "preempt-requeue")
    wait_mid_epoch(job, run_dir)
    cluster.command(["scontrol", "requeue", job.id])
    job.assert_completed()
    log = job.log()
    assert job.info()["Restarts"] == "1"
    assert "requeueing job" not in log, "Slurm requeued the job; the template must not requeue it again"
    resumed_step = int(RESUMED.search(log).group(2))  # type: ignore[union-attr]
    lost = re.search(r"reached step (\d+) but its last checkpoint is at step (\d+): (\d+) step\(s\) were lost", log)
    if lost:
        reached, at, n = map(int, lost.groups())
        assert at == resumed_step and n == reached - at > 0
    else:
        assert f"no steps lost: the checkpoint is at the last step the previous attempt logged ({resumed_step})" in log
    assert_same_result(run_dir, template_jobs["reference_short"])


def test_plain_scancel_ends_the_job_for_good_with_the_checkpoint_intact(cluster, template_jobs, time_limit_job):
    job, run_dir = submit(cluster, template_jobs["reference_short"].data, "short", "preempt-scancel")
    wait_mid_epoch(job, run_dir)
    cluster.command(["scancel", job.id])
    assert job.wait()["JobState"] == "CANCELLED"
    time.sleep(cluster.local.cred_expire + 3)  # a requeued job would be back by now
    info = job.info()
    assert (info["JobState"], info["Restarts"]) == ("CANCELLED", "0")
    log = job.log()
    assert "stopped by SIGTERM after saving a checkpoint" in log and "requeueing job" not in log
    step = int(SAVED.search(log).group(2))  # type: ignore[union-attr]
    assert (run_dir / "PREEMPTED").read_text().strip().endswith(f"step {step}")
    last = torch.load(run_dir / "last.pth", weights_only=True)
    assert last["global_step"] == step and 0 < last["batch_in_epoch"] < STEPS_PER_EPOCH
    assert not (run_dir / "final_model.pth").exists()


def training_processes(run_dir: Path) -> list[int]:
    """PIDs of the processes started with `--run-dir RUN_DIR` (torchrun and its workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if b"--run-dir" in argv and argv[argv.index(b"--run-dir") + 1] == str(run_dir).encode():
            pids.append(int(entry.name))
    return pids


def test_a_run_killed_without_warning_resumes_when_resubmitted_and_says_how_many_steps_it_lost(cluster, template_jobs, time_limit_job):
    data = template_jobs["reference_short"].data
    job, run_dir = submit(cluster, data, "short", "preempt-kill")
    # a few steps into the second epoch: the last checkpoint is the first epoch's
    job.wait_for(lambda: STEPS_PER_EPOCH + 3 <= progress_step(run_dir) <= 2 * STEPS_PER_EPOCH - 8, 300, "training in its second epoch")
    for pid in training_processes(run_dir):  # as a node failure or the OOM killer would: nothing is saved
        os.kill(pid, signal.SIGKILL)
    assert job.wait()["JobState"] == "FAILED"
    reached, saved = progress_step(run_dir), torch.load(run_dir / "last.pth", weights_only=True)["global_step"]
    assert saved == STEPS_PER_EPOCH < reached
    again, _ = submit(cluster, data, "short", "preempt-kill")  # the same PL_RUN_DIR: --auto-resume continues
    again.assert_completed()
    lost = f"the previous attempt reached step {reached} but its last checkpoint is at step {saved}: {reached - saved} step(s) were lost"
    assert lost in again.log()
    assert_same_result(run_dir, template_jobs["reference_short"])


def test_time_limit_warning_checkpoints_requeues_and_resumes_to_the_same_result(cluster, template_jobs, time_limit_job):
    job, run_dir = time_limit_job
    job.assert_completed()
    log = job.log()
    assert int(job.info()["Restarts"]) >= 1
    assert "caught SIGUSR1" in log and "training saved a checkpoint" in log and "requeueing job" in log
    steps = [int(m.group(2)) for m in SAVED.finditer(log)]
    assert steps and all(0 < s < PREEMPT["long"].epochs * PREEMPT["long"].steps_per_epoch for s in steps), steps
    assert set(steps) <= {int(m.group(2)) for m in RESUMED.finditer(log)}, "every checkpoint saved on a signal is resumed"
    assert_same_result(run_dir, template_jobs["reference_long"])
