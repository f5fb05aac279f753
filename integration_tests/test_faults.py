"""Faults a cluster job meets: SIGTERM mid-training, a truncated checkpoint, a bad output directory."""

import csv
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PACKAGES, cli_env, run


def history(run_dir: Path) -> list[dict]:
    with open(run_dir / "training_history.csv", newline="") as f:
        return list(csv.DictReader(f))


def assert_same_history(a: Path, b: Path) -> None:
    ha, hb = history(a), history(b)
    assert len(ha) == len(hb)
    for ra, rb in zip(ha, hb):
        for key in ra:
            if key.startswith(("train/", "val/")):
                assert float(ra[key]) == pytest.approx(float(rb[key]), rel=1e-4, abs=1e-6), (key, ra["epoch"])


def wait_for_step(run_dir: Path, step: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Block until metrics.csv shows a training step >= `step` (the run is then mid-training)."""
    deadline = time.time() + timeout
    csv_path = run_dir / "metrics.csv"
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training ended (exit {proc.returncode}) before step {step}: {proc.stderr.read()[-3000:]}")
        if csv_path.exists():
            with open(csv_path, newline="") as f:
                steps = [int(r["step"]) for r in csv.DictReader(f) if r["tag"] == "train_step/loss"]
            if steps and max(steps) >= step:
                return
        time.sleep(0.05)
    raise AssertionError(f"no step {step} within {timeout}s")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_sigterm_saves_and_resume_matches_an_uninterrupted_run(name, tmp_path, synthetic_data):
    pkg = PACKAGES[name]
    args = [pkg.script, "train", *pkg.train_args(synthetic_data(name)), "--device", "cpu",
            "--set", "loop.epochs=2", "--set", "loop.log_every=1"]
    run([*args, "--run-dir", tmp_path / "straight"], timeout=900)
    steps_per_run = int(history(tmp_path / "straight")[-1]["step"])
    interrupted = tmp_path / "interrupted"
    proc = subprocess.Popen([str(a) for a in [*args, "--run-dir", interrupted]], env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_step(interrupted, max(steps_per_run // 2, 1), proc)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 75, stderr[-3000:]
    assert "received SIGTERM" in stderr and (interrupted / "PREEMPTED").exists()
    assert (interrupted / "last.pth").exists() and not (interrupted / "final_model.pth").exists()
    run([*args, "--run-dir", interrupted, "--resume"], timeout=900)
    assert not (interrupted / "PREEMPTED").exists()
    assert_same_history(tmp_path / "straight", interrupted)


@pytest.mark.slow
def test_truncated_checkpoint_is_reported_and_the_previous_one_used(tmp_path, synthetic_data):
    name = "sparse-video-loss"
    pkg = PACKAGES[name]
    args = [pkg.script, "train", *pkg.train_args(synthetic_data(name)), "--device", "cpu", "--run-dir", tmp_path / "run"]
    run([*args, "--set", "loop.epochs=2", "--set", "loop.checkpoint_every=1"], timeout=900)
    last = tmp_path / "run" / "last.pth"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])
    proc = run([*args, "--set", "loop.epochs=3", "--set", "loop.checkpoint_every=1", "--resume"], timeout=900)
    log = proc.stderr + (tmp_path / "run" / "train.log").read_text()
    assert "last.pth is corrupt" in log
    assert "resumed from" in log and "checkpoint_epoch_2.pth" in log
    assert [int(r["epoch"]) for r in history(tmp_path / "run")] == [1, 2, 3]


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_unusable_output_directories_fail_before_any_work(name, tmp_path, synthetic_data):
    pkg = PACKAGES[name]
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    args = [pkg.script, "train", *pkg.train_args(synthetic_data(name)), "--device", "cpu"]
    proc = run([*args, "--output-dir", blocker / "outputs"], check=False, timeout=300)
    assert proc.returncode == 2 and "error: cannot create output directory" in proc.stderr
    assert "not_a_dir" in proc.stderr and "Traceback" not in proc.stderr
    proc = run([*args, "--output-dir", tmp_path / "full"], env=cli_env(PERCEPTION_MIN_FREE_MB="1e12"), check=False, timeout=300)
    assert proc.returncode == 2 and "MB free" in proc.stderr and "Traceback" not in proc.stderr
