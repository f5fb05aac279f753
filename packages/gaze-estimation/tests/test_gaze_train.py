import csv
import json
import math
import os
import signal

import numpy as np
import pytest
import torch
from test_gaze_geometry import haversine_deg

import gaze_estimation.train as train_mod
from gaze_estimation.config import TrainConfig
from gaze_estimation.data import GazeH5Dataset, find_h5_files, participant_id
from gaze_estimation.demo import export_crops
from gaze_estimation.evaluate import evaluate
from gaze_estimation.predict import predict
from gaze_estimation.train import train, warmup_cosine
from perception_shared.checkpoint import load_checkpoint
from perception_shared.config import load_config, resolve_config_path
from perception_shared.distributed import init_distributed
from perception_shared.preemption import Preempted


def tiny_config(root, **overrides) -> TrainConfig:
    sets = [f"{k}={v}" for k, v in {"model.d_model": 32, "model.num_layers": 1, "figure_samples": 2, **overrides}.items()]
    cfg = load_config(TrainConfig, resolve_config_path("gaze_estimation", "demo"), sets)
    cfg.data.root = root
    return cfg


def weights(path) -> dict:
    return load_checkpoint(path)["model"]


@pytest.mark.slow
def test_short_training_beats_the_mean_predictor(synth_root, tmp_path):
    root = synth_root
    cfg = tiny_config(root, **{"loop.epochs": 10, "data.batch_size": 16, "augment.enabled": "false", "figure_samples": 0})
    result = train(cfg, ctx=init_distributed("cpu"), run_dir=tmp_path / "run")
    state = load_checkpoint(tmp_path / "run" / "best_model.pth")
    trained, held_out = state["extra"]["train_participants"], state["extra"]["selection_participants"]
    # the baseline, computed here from the labels: always predict the training participants' mean gaze,
    # scored on the held-out training participants that select the model
    files = {participant_id(p): p for p in find_h5_files(root, "train")}
    train_gaze = GazeH5Dataset([files[p] for p in trained]).gaze.astype(np.float64)
    select_gaze = GazeH5Dataset([files[p] for p in held_out]).gaze.astype(np.float64)
    baseline = haversine_deg(np.tile(train_gaze.mean(0), (len(select_gaze), 1)), select_gaze).mean()
    best = result.best_metric
    assert baseline > 10.0
    assert best < 0.6 * baseline, (best, baseline)
    assert result.history[0]["val/select_angular_error"] > best + 3
    assert math.isclose(result.history[-1]["val/select_mean_predictor_error"], baseline, rel_tol=1e-4)


def test_warmup_cosine_schedule():
    f = warmup_cosine(total_steps=110, warmup_steps=10, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0) and f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55) and f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 120))


@pytest.fixture(scope="module")
def preempted_and_straight(synth_root, tmp_path_factory):
    """A run preempted by SIGTERM mid-epoch and resumed, and the same run uninterrupted (dropout on)."""
    base = tmp_path_factory.mktemp("runs")
    over = {"loop.epochs": 2, "data.batch_size": 16, "model.dropout": 0.1, "optim.warmup_steps": 3}
    ctx = init_distributed("cpu")
    straight = train(tiny_config(synth_root, **over), ctx=ctx, run_dir=base / "straight")

    calls = {"n": 0}
    real_loss = train_mod.gaze_loss

    def loss_with_sigterm(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 10:  # 6 steps + 1 selection loss, then step 9 of 12: in the middle of epoch 2
            os.kill(os.getpid(), signal.SIGTERM)
        return real_loss(*args, **kwargs)

    train_mod.gaze_loss = loss_with_sigterm
    try:
        with pytest.raises(Preempted):
            train(tiny_config(synth_root, **over), ctx=ctx, run_dir=base / "resumed")
    finally:
        train_mod.gaze_loss = real_loss
    assert (base / "resumed" / "PREEMPTED").exists()
    assert load_checkpoint(base / "resumed" / "last.pth")["global_step"] == 9
    resumed = train(tiny_config(synth_root, **over), ctx=ctx, run_dir=base / "resumed", resume=True)
    return base, straight, resumed


def test_preempted_run_resumes_exactly(preempted_and_straight):
    base, straight, resumed = preempted_and_straight
    a, b = weights(base / "straight" / "final_model.pth"), weights(base / "resumed" / "final_model.pth")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert straight.history[-1]["val/select_angular_error"] == resumed.history[-1]["val/select_angular_error"]
    assert straight.global_step == resumed.global_step == 12
    run = base / "straight"
    for name in ("metrics.csv", "training_history.csv", "training_history.png", "best_model.pth", "config.yaml"):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in (run / "figures").glob("val_select_gaze_*.png")) == ["val_select_gaze_000006.png", "val_select_gaze_000012.png"]
    assert list((run / "tensorboard").iterdir())
    with open(run / "metrics.csv") as f:
        tags = {r["tag"] for r in csv.DictReader(f)}
    assert {"val/select_angular_error", "train/loss", "lr"} <= tags


def test_evaluate_writes_metrics_that_match_an_independent_computation(preempted_and_straight, synth_root, tmp_path):
    base = preempted_and_straight[0]
    ckpt = base / "straight" / "best_model.pth"
    metrics = evaluate(ckpt, ctx=init_distributed("cpu"), out_dir=tmp_path / "eval")
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["n_samples"] == metrics["n_samples"] == 32
    with open(tmp_path / "eval" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    pred = np.array([[float(r["pitch"]), float(r["yaw"])] for r in rows])
    true = np.array([[float(r["true_pitch"]), float(r["true_yaw"])] for r in rows])
    err = haversine_deg(pred, true)
    assert saved["mean_angular_error_deg"] == pytest.approx(err.mean(), abs=1e-4)
    assert saved["median_angular_error_deg"] == pytest.approx(np.median(err), abs=1e-4)
    ids = np.array([r["participant"] for r in rows])
    with open(tmp_path / "eval" / "per_participant.csv") as f:
        per = {r["participant"]: r for r in csv.DictReader(f)}
    assert set(per) == {"val01", "val02"}
    for pid, r in per.items():
        assert int(r["n_samples"]) == 16
        assert float(r["mean_deg"]) == pytest.approx(err[ids == pid].mean(), abs=1e-3)
    train_mean = load_checkpoint(ckpt)["extra"]["train_mean_gaze"]
    assert saved["mean_predictor_error_deg"] == pytest.approx(haversine_deg(np.tile(train_mean, (32, 1)), true).mean(), abs=1e-4)
    for png in ("per_participant.png", "gaze_examples.png"):
        assert (tmp_path / "eval" / png).stat().st_size > 1000


def test_predict_on_hdf5_and_on_crop_folders_agree(preempted_and_straight, synth_root, tmp_path):
    ckpt = preempted_and_straight[0] / "straight" / "best_model.pth"
    h5 = synth_root / "val" / "participant_val01" / "frames_basler.h5"
    out_h5 = predict(ckpt, [h5], tmp_path / "h5.csv")
    crops = export_crops(h5, tmp_path / "crops", 5)
    out_dir = predict(ckpt, [crops], tmp_path / "crops.csv")
    with open(out_h5) as f:
        a = list(csv.DictReader(f))
    with open(out_dir) as f:
        b = list(csv.DictReader(f))
    assert len(a) == 16 and len(b) == 5
    assert list(b[0]) == ["source", "sample", "pitch", "yaw", "x", "y", "z"]
    for ra, rb in zip(a, b):
        assert float(ra["pitch"]) == pytest.approx(float(rb["pitch"]), abs=1e-5)
        v = np.array([float(ra[k]) for k in "xyz"])
        assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
        assert math.asin(v[1]) == pytest.approx(float(ra["pitch"]), abs=1e-5)
        assert float(ra["error_deg"]) == pytest.approx(
            haversine_deg(np.array([[float(ra["pitch"]), float(ra["yaw"])]]), np.array([[float(ra["true_pitch"]), float(ra["true_yaw"])]]))[0], abs=1e-3
        )
