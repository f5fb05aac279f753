import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from perception_shared.checkpoint import load_checkpoint
from perception_shared.distributed import init_distributed
from perception_shared.errors import ConfigError
from sparse_video_loss.evaluate import evaluate_run, last_position_probs
from sparse_video_loss.metrics import horizon_metrics
from sparse_video_loss.synthetic import make_synthetic
from sparse_video_loss.train import load_split, train


def center_baseline_loc_error(dataset):
    """Localization error of always predicting the grid centre: what a model that learned nothing about position gets."""
    errors = []
    c = (dataset.size - 1) / 2
    for i in range(len(dataset)):
        s = dataset[i]
        px = s["target_pixels"][s["target_mask"]].double()
        errors += torch.sqrt(((px - c) ** 2).sum(-1)).tolist()
    return float(np.mean(errors))


@pytest.mark.slow
def test_short_training_beats_the_blank_predictor(tiny_config, tmp_path):
    make_synthetic(tmp_path / "data", n_train=192, n_val=48, n_test=48, seed=0)
    cfg = tiny_config(tmp_path / "data", "loss.name=weighted_mse", "loop.epochs=3", "loop.max_steps_per_epoch=null", "data.batch_size=16")
    ctx = init_distributed("cpu", environ={})
    train(cfg, run_dir=tmp_path / "run", ctx=ctx)
    m = evaluate_run(tmp_path / "run" / "best_model.pth", tmp_path / "eval", ctx)
    blank = m["baselines"]["blank"]["overall"]
    assert blank["f1@0.5"] == 0.0 and blank["recall@0.5"] == 0.0
    o = m["overall"]
    assert o["f1@0.5"] > blank["f1@0.5"] + 0.01
    assert o["f1@best"] > 0.05 and o["ap"] > 20 * blank["ap"]
    assert o["loc_error_px"] < center_baseline_loc_error(load_split(cfg, "test"))
    assert m["per_horizon"][0]["f1@best"] > m["per_horizon"][-1]["f1@best"]  # the near future is easier


def test_two_epochs_plus_resume_equals_three_straight(tiny_config, tiny_data, tmp_path):
    ctx = init_distributed("cpu", environ={})
    cfg = tiny_config(tiny_data, "loop.epochs=3", "loop.max_steps_per_epoch=2", "model.model_type=gsta", "model.hid_T=16")
    straight = train(cfg, run_dir=tmp_path / "a", ctx=ctx)
    two = tiny_config(tiny_data, "loop.epochs=2", "loop.max_steps_per_epoch=2", "model.model_type=gsta", "model.hid_T=16")
    train(two, run_dir=tmp_path / "b", ctx=ctx)
    resumed = train(cfg, run_dir=tmp_path / "b", ctx=ctx, resume=True)
    a, b = load_checkpoint(tmp_path / "a" / "final_model.pth"), load_checkpoint(tmp_path / "b" / "final_model.pth")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [h["val/loss"] for h in straight.history] == [h["val/loss"] for h in resumed.history]
    last_a, last_b = load_checkpoint(tmp_path / "a" / "last.pth"), load_checkpoint(tmp_path / "b" / "last.pth")
    assert last_a["optimizer"]["param_groups"][0]["lr"] == last_b["optimizer"]["param_groups"][0]["lr"]
    assert (tmp_path / "b" / "training_history.png").is_file() and (tmp_path / "b" / "metrics.csv").is_file()
    assert any((tmp_path / "b" / "tensorboard").iterdir())


def test_plateau_scheduler_reduces_the_learning_rate(tiny_config, tiny_data, tmp_path):
    ctx = init_distributed("cpu", environ={})
    cfg = tiny_config(tiny_data, "loop.epochs=3", "loop.max_steps_per_epoch=1", "optim.lr=1.0e-6", "optim.plateau_patience=0",
                      "optim.min_lr=0")
    result = train(cfg, run_dir=tmp_path / "r", ctx=ctx)
    lrs = [h["lr"] for h in result.history]
    assert lrs[0] == 1e-6 and lrs[-1] == pytest.approx(0.5e-6)


def test_evaluate_writes_metrics_with_baselines(tiny_config, tiny_data, tmp_path):
    ctx = init_distributed("cpu", environ={})
    cfg = tiny_config(tiny_data)
    train(cfg, run_dir=tmp_path / "run", ctx=ctx)
    m = evaluate_run(tmp_path / "run" / "best_model.pth", tmp_path / "eval", ctx)
    test = load_split(cfg, "test")
    assert m["n_samples"] == len(test) == 15
    assert m["n_frames"] == int(test.masks[:, 10:].sum())
    assert [r["horizon"] for r in m["per_horizon"]] == list(range(1, 11))
    assert 0.0 <= m["threshold_best"] <= 1.0 and set(m["by_motion"]) <= {"fixation", "pursuit", "saccade"}
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert written["n_samples"] == 15 and written["loss"]["name"] == "composite"
    for name in ("per_horizon.csv", "per_horizon.png", "predictions.png"):
        assert (tmp_path / "eval" / name).stat().st_size > 0
    rows = (tmp_path / "eval" / "per_horizon.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 10 and rows[0].startswith("predictor,horizon,n_frames")
    # The last-position baseline, recomputed independently of evaluate's code path.
    lp = horizon_metrics(last_position_probs(test), np.stack([test[i]["target_pixels"].numpy() for i in range(15)]),
                         test.masks[:, 10:].numpy(), 0.5)
    assert m["baselines"]["last_position"]["overall"]["f1@0.5"] == pytest.approx(lp["overall"]["f1@0.5"])


def test_bad_config_values_are_config_errors(tiny_config, tiny_data, tmp_path):
    ctx = init_distributed("cpu", environ={})
    with pytest.raises(ConfigError, match="loss section.*unknown loss 'l1'"):
        train(tiny_config(tiny_data, "loss.name=l1"), run_dir=tmp_path / "a", ctx=ctx)
    with pytest.raises(ConfigError, match="loss section.*unknown keyword"):
        train(tiny_config(tiny_data, "loss.name=focal", "loss.kwargs={pos_weight: 3}"), run_dir=tmp_path / "b", ctx=ctx)
    with pytest.raises(ConfigError, match="model section: frame size 32x32 is not divisible"):
        train(tiny_config(tiny_data, "model.N_S=12"), run_dir=tmp_path / "c", ctx=ctx)
    with pytest.raises(ConfigError, match="n_output .* must equal"):
        tiny_config(tiny_data, "data.n_output=5")


@pytest.mark.slow
def test_torchrun_two_processes_train_and_evaluate_every_sample_once(tiny_data, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PERCEPTION_NO_PROGRESS="1")
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "sparse_video_loss.cli"]
    run = tmp_path / "run"
    train_cmd = base + ["train", "--config", "demo", "--data", str(tiny_data), "--run-dir", str(run), "--device", "cpu",
                        "--set", "loop.epochs=1", "--set", "loop.max_steps_per_epoch=2", "--set", "data.batch_size=4"]
    done = subprocess.run(train_cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run / "best_model.pth").is_file() and len(list(run.glob("*.tmp"))) == 0
    done = subprocess.run(base + ["evaluate", str(run), "--device", "cpu"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    m = json.loads((run / "eval" / "metrics.json").read_text())
    assert m["n_samples"] == 15  # odd: one rank has 8 sequences, the other 7, none twice
    single = evaluate_run(run / "best_model.pth", tmp_path / "single", init_distributed("cpu", environ={}))
    assert single["overall"]["ap"] == pytest.approx(m["overall"]["ap"], rel=1e-6)
    assert single["threshold_best"] == pytest.approx(m["threshold_best"], rel=1e-6)


def test_training_steps_read_the_host_once_per_log_interval(tiny_config, tiny_data, tmp_path, monkeypatch):
    """The real step_fn through the Trainer: at most ceil(N / log_every) host reads in N steps."""
    from perception_shared.testing import count_epoch_reads

    steps, log_every = 6, 3
    cfg = tiny_config(tiny_data, f"loop.max_steps_per_epoch={steps}", f"loop.log_every={log_every}", "data.batch_size=4",
                      "loss.name=composite")
    with count_epoch_reads(monkeypatch, "sparse_video_loss.train.Trainer") as reads:
        result = train(cfg, run_dir=tmp_path / "run", ctx=init_distributed("cpu", environ={}))
    assert result.global_step == steps
    assert reads.count <= math.ceil(steps / log_every), reads.summary()
