import argparse
import logging
import os
import signal

import pytest
import torch
from torch import nn

from perception_shared.badinput import BadInputPolicy
from perception_shared.cli import add_common_train_args, resolve_resume, run_cli
from perception_shared.errors import ConfigError, DataError, RunDirError, UserError, WeightsError
from perception_shared.logging import setup_logging
from perception_shared.precision import Precision
from perception_shared.preemption import PREEMPTED_EXIT_CODE, Preempted, PreemptionHandler
from perception_shared.runs import check_writable_dir, prepare_run_dir
from perception_shared.seed import capture_rng_state, restore_rng_state, seed_everything
from perception_shared.tracking import Tracker, read_scalars
from perception_shared.weights import load_pretrained


def test_run_dir_is_timestamped_and_unique(tmp_path):
    a = prepare_run_dir(tmp_path)
    b = prepare_run_dir(tmp_path)
    assert a.name.startswith("run_") and a != b and a.is_dir() and b.is_dir()
    assert prepare_run_dir(tmp_path, run_dir=tmp_path / "mine") == tmp_path / "mine"


def test_unwritable_output_dir_fails_early_with_its_name(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(RunDirError, match="a_file"):
        prepare_run_dir(blocker / "outputs")


def test_too_little_free_space_fails_early(tmp_path, monkeypatch):
    monkeypatch.setenv("PERCEPTION_MIN_FREE_MB", str(10**12))
    with pytest.raises(RunDirError, match="MB free"):
        check_writable_dir(tmp_path / "out")


def test_load_pretrained_reports_mismatches_and_unwraps(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    src = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, tmp_path / "ok.pth")
    load_pretrained(model, tmp_path / "ok.pth")
    assert torch.equal(model[0].weight, src[0].weight)
    wrong = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2), nn.Linear(2, 2))
    torch.save(wrong.state_dict(), tmp_path / "wrong.pth")
    with pytest.raises(WeightsError) as e:
        load_pretrained(model, tmp_path / "wrong.pth")
    msg = str(e.value)
    assert "wrong.pth" in msg and "0.weight" in msg and "shape" in msg and "unexpected keys: 2.bias" in msg
    partial = {k: v for k, v in src.state_dict().items() if k.startswith("0.")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match="missing keys: 1.bias"):
        load_pretrained(model, tmp_path / "partial.pth")
    assert load_pretrained(model, tmp_path / "partial.pth", strict=False)["missing"] == ["1.bias", "1.weight"]
    with pytest.raises(WeightsError, match="does not exist"):
        load_pretrained(model, tmp_path / "none.pth")


def test_bad_input_policy_raises_or_counts():
    with pytest.raises(DataError, match="img.jpg: unreadable"):
        BadInputPolicy(skip=False).report("img.jpg", "unreadable")
    policy = BadInputPolicy(skip=True)
    policy.report("a.mat", "no key 'fixLocs'")
    policy.report("b.mat", "empty")
    assert policy.count == 2 and "a.mat" in policy.summary()


def parse(argv):
    p = argparse.ArgumentParser()
    add_common_train_args(p)
    return p.parse_args(argv)


def test_resolve_resume_variants(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pth").write_bytes(b"x")
    assert resolve_resume(parse([])).resume is False
    spec = resolve_resume(parse(["--resume", str(tmp_path / "run")]))
    assert spec.resume and spec.run_dir == tmp_path / "run" and spec.checkpoint is None
    spec = resolve_resume(parse(["--resume", str(tmp_path / "run" / "last.pth")]))
    assert spec.checkpoint == tmp_path / "run" / "last.pth" and spec.run_dir == tmp_path / "run"
    assert resolve_resume(parse(["--run-dir", str(tmp_path / "run"), "--resume"])).resume
    assert resolve_resume(parse(["--run-dir", str(tmp_path / "run"), "--auto-resume"])).resume
    assert not resolve_resume(parse(["--run-dir", str(tmp_path / "new"), "--auto-resume"])).resume
    with pytest.raises(UserError, match="needs --run-dir"):
        resolve_resume(parse(["--resume"]))
    with pytest.raises(UserError, match="no such run directory"):
        resolve_resume(parse(["--resume", str(tmp_path / "missing")]))


def test_run_cli_exit_codes(capsys):
    def user_error(argv):
        raise ConfigError("unknown key 'x' in c.yaml")

    def preempted(argv):
        raise Preempted("stopped")

    assert run_cli(lambda argv: 0) == 0
    assert run_cli(user_error) == 2
    assert "error: unknown key 'x' in c.yaml" in capsys.readouterr().err
    assert run_cli(preempted) == PREEMPTED_EXIT_CODE
    with pytest.raises(ZeroDivisionError):  # a bug is not a user error: it keeps its traceback
        run_cli(lambda argv: 1 / 0)


def test_precision_is_fp32_on_cpu_and_rejects_unknown_modes():
    p = Precision("bf16", torch.device("cpu"))
    assert p.mode == "fp32" and p.requested == "bf16" and not p.scaler.is_enabled()
    with pytest.raises(ConfigError, match="fp8"):
        Precision("fp8", torch.device("cpu"))


def test_real_signals_set_the_preemption_flag():
    with PreemptionHandler() as h:
        assert not h.should_stop()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert h.requested and h.signal_name == "SIGUSR1" and h.should_stop()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # restored on exit


def test_rng_state_round_trip_covers_python_numpy_torch():
    import random

    import numpy as np

    seed_everything(5)
    state = capture_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(99)
    restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_tracker_writes_csv_and_tensorboard_and_purges_on_resume(tmp_path):
    with Tracker(tmp_path) as t:
        for step in range(1, 6):
            t.log_scalars({"loss": 1.0 / step}, step, prefix="train/")
        import matplotlib.pyplot as plt

        fig = plt.figure()
        png = t.log_figure("val/examples", fig, 5)
    assert png.exists() and png.name == "val_examples_000005.png"
    assert [s for s, _ in read_scalars(tmp_path / "metrics.csv")["train/loss"]] == [1, 2, 3, 4, 5]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    with Tracker(tmp_path, purge_step=4) as t:
        t.log_scalars({"loss": 9.0}, 4, prefix="train/")
    assert read_scalars(tmp_path / "metrics.csv")["train/loss"] == [(1, 1.0), (2, 0.5), (3, 1 / 3), (4, 9.0)]


def test_logging_writes_the_run_log(tmp_path):
    logger = setup_logging(tmp_path)
    logger.getChild("x").info("hello %s", "run")
    for h in logger.handlers:
        h.flush()
    assert "hello run" in (tmp_path / "train.log").read_text()
    assert logger.level == logging.INFO


def test_load_pretrained_renames_keys_and_tolerates_old_batchnorm_files(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    src = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    src[1].running_mean.fill_(3.0)
    old = {k.replace("1.", "norm.", 1): v for k, v in src.state_dict().items() if "num_batches_tracked" not in k}
    torch.save(old, tmp_path / "old.pth")
    with pytest.raises(WeightsError, match="missing keys"):
        load_pretrained(model, tmp_path / "old.pth")
    load_pretrained(model, tmp_path / "old.pth", rename=lambda k: k.replace("norm.", "1.", 1))
    assert torch.equal(model[1].running_mean, torch.full((2,), 3.0))


def test_report_all_lists_every_problem_or_counts_them():
    problems = [(f"row {i}", "rating is NaN") for i in range(45)]
    with pytest.raises(DataError) as e:
        BadInputPolicy(skip=False).report_all("ratings.csv", problems, total=100)
    msg = str(e.value)
    assert msg.startswith("ratings.csv: 45 of 100 rows have problems") and "row 39: rating is NaN" in msg
    assert "row 40:" not in msg and "and 5 more" in msg
    policy = BadInputPolicy(skip=True)
    policy.report_all("ratings.csv", problems, total=100)
    assert policy.count == 45
    BadInputPolicy(skip=False).report_all("ratings.csv", [], total=100)  # nothing wrong: no error


def test_benchmark_environment_names_the_device():
    from perception_shared.benchmarking import environment

    env = environment(torch.device("cpu"))
    assert env["device_type"] == "cpu" and env["device"] and env["torch"] == torch.__version__
