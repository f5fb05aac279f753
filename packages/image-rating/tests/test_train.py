"""Training on synthetic data: it learns, writes the promised files, resumes exactly."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from image_rating.config import ModelConfig, OptimConfig, SchedConfig
from image_rating.data import load_split
from image_rating.models import build_model
from image_rating.scaler import TargetScaler
from image_rating.synthetic import EASY_DIMENSIONS, make_synthetic
from image_rating.train import build_optimizer, build_scheduler, cosine_factor, make_step_fn, train
from perception_shared.checkpoint import load_checkpoint
from perception_shared.errors import ConfigError, DataError
from perception_shared.preemption import Preempted, PreemptionHandler
from perception_shared.training import StepInfo

from conftest import tiny_config


@pytest.mark.slow
def test_short_training_learns_the_easy_dimensions(tmp_path):
    syn = make_synthetic(tmp_path / "data", n_images=160, size=48, n_raters=20, seed=2)
    cfg = tiny_config(syn.root, "loop.epochs=8", "data.batch_size=16", "optim.lr=0.003")
    result = train(cfg, output_dir=tmp_path / "outputs", device="cpu")
    assert re.fullmatch(r"run_\d{8}_\d{6}", result.run_dir.name) and result.run_dir.parent == tmp_path / "outputs"
    r = result.per_dimension.set_index("dimension")["pearson_r"]
    assert r["Brightness"] > 0.8, r.to_dict()
    assert r[list(EASY_DIMENSIONS)].mean() > 0.5, r.to_dict()
    history = pd.read_csv(result.run_dir / "training_history.csv")
    assert history["val/loss"].iloc[-1] < history["val/loss"].iloc[0]
    assert history["train/loss"].iloc[-1] < 0.9 * history["train/loss"].iloc[0]


def test_run_directory_holds_every_promised_output(trained_run, synthetic):
    run = trained_run.run_dir
    for name in [
        "best_model.pth",
        "checkpoint_epoch_2.pth",
        "config.yaml",
        "training_history.csv",
        "training_history.png",
        "per_dimension_performance.csv",
        "per_dimension_performance.png",
        "target_scaler.json",
        "split.json",
        "val_predictions.csv",
        "train.log",
        "manifest.json",
    ]:
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    split = load_split(run / "split.json")
    assert len(split["val"]) == 12 and len(split["train"]) == 39 and len(split["test"]) == 9
    ratings = pd.read_csv(synthetic.csv).set_index("image")
    train_means = ratings.loc[split["train"], [f"{d}_mean" for d in synthetic.dimensions]].to_numpy()
    scaler = TargetScaler.load(run / "target_scaler.json")
    np.testing.assert_allclose(scaler.mean, train_means.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scaler.std, train_means.std(axis=0), rtol=1e-12)
    state = load_checkpoint(run / "best_model.pth")
    assert state["extra"]["scaler"] == scaler.to_dict() and state["extra"]["split"]["val"] == split["val"]


def test_per_dimension_performance_is_in_rating_units_and_matches_scipy(trained_run):
    run = trained_run.run_dir
    perf = pd.read_csv(run / "per_dimension_performance.csv").set_index("dimension")
    pred = pd.read_csv(run / "val_predictions.csv")
    assert len(pred) == 12 and (perf["n"] == 12).all()
    for d in perf.index:
        p, t = pred[f"{d}_pred"], pred[f"{d}_true"]
        np.testing.assert_allclose(perf.loc[d, "pearson_r"], stats.pearsonr(p, t).statistic, atol=1e-5)
        np.testing.assert_allclose(perf.loc[d, "mae"], np.abs(p - t).mean(), rtol=1e-4)
        np.testing.assert_allclose(perf.loc[d, "rmse"], np.sqrt(((p - t) ** 2).mean()), rtol=1e-4)
    assert 30 < pred[[c for c in pred if c.endswith("_pred")]].to_numpy().mean() < 70  # slider units, not z


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


@pytest.mark.slow
def test_preempted_mid_epoch_and_resumed_equals_an_uninterrupted_run(synthetic, tmp_path, monkeypatch):
    cfg = tiny_config(synthetic.root, "loop.epochs=2", "sched.name=step", "sched.step_size=1", "sched.gamma=0.5")
    straight = train(cfg, run_dir=tmp_path / "straight", device="cpu")

    calls = {"n": 0}

    def signal_at_step_6(self):  # the loop looks at the flag once per step: as if SIGTERM arrived in step 6 of 4 + 4
        calls["n"] += 1
        if calls["n"] == 6:
            self.signal_name = "SIGTERM"
        return self.signal_name is not None

    monkeypatch.setattr(PreemptionHandler, "requested", property(signal_at_step_6))
    with pytest.raises(Preempted):
        train(cfg, run_dir=tmp_path / "preempted", device="cpu")
    last = load_checkpoint(tmp_path / "preempted" / "last.pth")
    assert (last["epoch"], last["batch_in_epoch"]) == (1, 2)
    assert (tmp_path / "preempted" / "PREEMPTED").is_file()
    monkeypatch.undo()
    resumed = train(cfg, run_dir=tmp_path / "preempted", resume=True, device="cpu")
    for k, v in _weights(straight.run_dir / "final_model.pth").items():
        torch.testing.assert_close(_weights(resumed.run_dir / "final_model.pth")[k], v, rtol=0, atol=0)
    a = pd.read_csv(straight.run_dir / "training_history.csv").drop(columns="time_s")
    b = pd.read_csv(resumed.run_dir / "training_history.csv").drop(columns="time_s")
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(
        pd.read_csv(straight.run_dir / "per_dimension_performance.csv"),
        pd.read_csv(resumed.run_dir / "per_dimension_performance.csv"),
    )


def test_split_is_reused_from_a_config_path(synthetic, trained_run, tmp_path):
    first = trained_run.run_dir / "split.json"
    cfg = tiny_config(synthetic.root, f"data.split_file={first}", "data.split_seed=999", "loop.epochs=1")
    result = train(cfg, run_dir=tmp_path / "second", device="cpu")
    assert load_split(result.run_dir / "split.json")["val"] == load_split(first)["val"]
    fresh = train(
        tiny_config(synthetic.root, "data.split_seed=999", "loop.epochs=1"), run_dir=tmp_path / "third", device="cpu"
    )
    assert load_split(fresh.run_dir / "split.json")["val"] != load_split(first)["val"]


def test_bad_images_fail_or_are_skipped(synthetic, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synthetic.root, root)
    (root / "images" / "img_0005.png").write_bytes(b"broken")
    (root / "images" / "img_0009.png").unlink()
    cfg = tiny_config(root, "loop.epochs=1")
    with pytest.raises(DataError) as e:
        train(cfg, run_dir=tmp_path / "fail", device="cpu")
    assert "img_0005.png" in str(e.value) and "img_0009.png" in str(e.value)
    result = train(cfg, run_dir=tmp_path / "skip", device="cpu", skip_bad=True)
    split = json.loads((result.run_dir / "split.json").read_text())
    assert split["n_train"] + split["n_val"] + split["n_test"] == 58
    assert "img_0005.png" not in split["train"] + split["val"] + split["test"]


def test_best_epoch_and_early_stopping_follow_the_mean_val_pearson_r_or_the_loss(synthetic, tmp_path):
    """The study's rule (the default): the best checkpoint is the epoch of the highest mean val r, and
    training stops after ``patience`` epochs without a higher one; ``val/loss`` (lowest) is the option."""
    for monitor, mode in [("val/pearson_r", "max"), ("val/loss", "min")]:
        cfg = tiny_config(
            synthetic.root,
            "loop.epochs=4",
            "loop.early_stopping_patience=1",
            f"loop.monitor={monitor}",
            f"loop.mode={mode}",
            "optim.lr=0.02",
        )
        result = train(cfg, run_dir=tmp_path / monitor.replace("/", "_"), device="cpu")
        history = pd.read_csv(result.run_dir / "training_history.csv")
        values = history[monitor].to_numpy() * (1 if mode == "max" else -1)  # higher is better
        best = int(np.argmax(values))
        assert (
            result.best_epoch == history["epoch"][best] == load_checkpoint(result.run_dir / "best_model.pth")["epoch"]
        )
        assert result.best_metric == pytest.approx(history[monitor][best])
        improved = [i == 0 or values[i] > values[:i].max() for i in range(len(values))]
        # patience 1: it stops at the first epoch without a better value, and only then
        assert result.stopped_early == (not all(improved)) and improved[:-1] == [True] * (len(values) - 1)
    with pytest.raises(ConfigError, match="loop.monitor val/pearson_r is better when higher: set loop.mode: max"):
        tiny_config(synthetic.root, "loop.monitor=val/pearson_r", "loop.mode=min")
    with pytest.raises(ConfigError, match="loop.monitor must be one of val/pearson_r, val/loss"):
        tiny_config(synthetic.root, "loop.monitor=train/loss")


def test_the_training_step_reads_the_host_once_per_log_interval(synthetic, tmp_path, monkeypatch):
    """The real step through the Trainer: 4 steps with log_every 2 read tensor values at most 2 times."""
    from perception_shared.testing import count_epoch_reads, count_host_reads

    cfg = tiny_config(synthetic.root, "loop.epochs=1", "loop.log_every=2")  # 39 train images / batch 8 = 4 steps
    with count_epoch_reads(monkeypatch, "image_rating.train.Trainer") as reads:
        result = train(cfg, run_dir=tmp_path / "reads", device="cpu")
    assert pd.read_csv(result.run_dir / "training_history.csv")["step"].tolist() == [4]
    assert reads.count <= math.ceil(4 / 2), reads.summary()

    images, target = torch.randn(4, 3, 32, 32), torch.randn(4, 14)
    model, _ = build_model(ModelConfig(backbone="test_resnet", pretrained=False), 14)
    with count_host_reads() as step_reads:
        make_step_fn(channels_last=False)(model, {"image": images, "target": target}, StepInfo(0, 0, 0))
    assert step_reads.count == 0, step_reads.summary()


def test_optimizers_and_schedulers_by_name():
    model, _ = build_model(ModelConfig(backbone="test_resnet", pretrained=False), num_outputs=3)
    for name, cls in [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)]:
        assert type(build_optimizer(OptimConfig(name=name), model)) is cls
    with pytest.raises(ConfigError, match="unknown optimizer.*'lion'.*adam, adamw, sgd"):
        build_optimizer(OptimConfig(name="lion"), model)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown scheduler.*'onecycle'"):
        build_scheduler(SchedConfig(name="onecycle"), build_optimizer(OptimConfig(), model), 10)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="optim.name"):
        tiny_config(Path("."), "optim.name=lion")

    opt = build_optimizer(OptimConfig(name="sgd", lr=1.0), model)
    sched, interval = build_scheduler(SchedConfig(name="cosine", warmup_epochs=2, min_lr_factor=0.1), opt, 10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert interval == "epoch"
    np.testing.assert_allclose(lrs[:3], [1 / 3, 2 / 3, 1.0])
    assert lrs[-1] == pytest.approx(0.1) and all(a >= b for a, b in zip(lrs[2:], lrs[3:]))
    assert build_scheduler(SchedConfig(name="plateau"), opt, 10)[1] == "plateau"
    assert build_scheduler(SchedConfig(name="none"), opt, 10) == (None, "epoch")


def test_cosine_factor_endpoints():
    assert cosine_factor(0, 10) == 1.0
    assert cosine_factor(9, 10, min_factor=0.2) == pytest.approx(0.2)
    assert cosine_factor(5, 11, min_factor=0.0) == pytest.approx(0.5)
    assert cosine_factor(0, 1) == 1.0
