"""Weights & Biases beside TensorBoard and CSV: offline runs read back from W&B's own transaction log."""

import json
import os
import signal
import sys
from dataclasses import dataclass, field

import matplotlib
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from perception_shared.distributed import init_distributed
from perception_shared.errors import ConfigError
from perception_shared.extras import MissingExtraError
from perception_shared.preemption import PREEMPTED_EXIT_CODE, Preempted
from perception_shared.samplers import make_train_loader
from perception_shared.seed import seed_everything
from perception_shared.testing import read_wandb_offline
from perception_shared.tracking import Tracker, TrackingConfig, WandbConfig, read_scalars
from perception_shared.training import LoopConfig, StepOutput, Trainer
from perception_shared.wandb_run import RUN_ID_JSON

matplotlib.use("Agg")


@dataclass
class TinyConfig:
    epochs: int = 1
    purpose: str = "toy"
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


# As a package's own TrainConfig: the missing-extra error names the package from the config's module.
TinyConfig.__module__ = "gaze_estimation.config"


def build(run_dir, epochs, mode="offline", signal_at=None):
    seed_everything(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(24, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    model = nn.Linear(3, 1)

    def step(m, batch, info):
        if info.step == signal_at:
            os.kill(os.getpid(), signal.SIGTERM)  # as SLURM before a requeue: checkpoint after this step, exit 75
        xb, yb = batch
        loss = ((m(xb).squeeze(-1) - yb) ** 2).mean()
        return StepOutput(loss, {"abs": (m(xb).squeeze(-1) - yb).abs().mean()}, n=len(yb))

    def evaluate(m, epoch):
        return {"loss": float(((m(x).squeeze(-1) - y) ** 2).mean())}

    config = TinyConfig(epochs, tracking=TrackingConfig(WandbConfig(project="perception-lab-tests", mode=mode)))
    return Trainer(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
                   train_loader=make_train_loader(TensorDataset(x, y), batch_size=8, seed=3), step_fn=step,
                   eval_fn=evaluate, loop=LoopConfig(epochs=epochs, log_every=2), ctx=init_distributed("cpu", environ={}),
                   run_dir=run_dir, config=config, manifest_info={"seeds": {"seed": 0}})


def numeric(row):
    return {k: v for k, v in row.items() if not k.startswith("_") and isinstance(v, (int, float))}


def test_offline_run_has_the_csv_scalars_config_manifest_and_figures_and_continues_across_resume(tmp_path):
    with pytest.raises(Preempted):
        build(tmp_path, 2, signal_at=1).fit()
    again = build(tmp_path, 2)
    again.fit(resume=True)
    figure = tmp_path / "training_history.png"  # drawn from files after training, as image-rating does
    again.log_images({"val/per_dimension": figure})

    attempts = read_wandb_offline(tmp_path)
    run_id = json.loads((tmp_path / RUN_ID_JSON).read_text())["id"]
    assert len(attempts) == 3 and {a.run_id for a in attempts} == {run_id}, "one W&B run, continued twice"
    assert [a.exit_code for a in attempts] == [PREEMPTED_EXIT_CODE, 0, 0]

    logged: dict[str, list[tuple[int, float]]] = {}
    for attempt in attempts[:2]:
        for step, row in sorted(attempt.history.items()):
            for tag, value in numeric(row).items():
                logged.setdefault(tag, []).append((step, value))
    expected = read_scalars(tmp_path / "metrics.csv")
    assert set(logged) == set(expected) and "train_step/loss" in logged and "val/loss" in logged
    for tag, points in expected.items():
        assert [s for s, _ in logged[tag]] == [s for s, _ in points], tag
        assert [v for _, v in logged[tag]] == pytest.approx([v for _, v in points], rel=1e-12), tag

    config = attempts[1].config
    assert config["epochs"] == 2 and config["purpose"] == "toy"
    assert config["tracking"]["wandb"] == {"project": "perception-lab-tests", "entity": None, "mode": "offline"}
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert config["manifest"]["status"] == manifest["status"] == "completed"
    assert config["manifest"]["seeds"] == {"seed": 0} and config["manifest"]["global_step"] == manifest["global_step"] == 6

    assert min(attempts[1].history) == 3, "the resumed attempt starts after the checkpoint at step 2"
    for attempt, tag, step in ((attempts[1], "training_history", 3), (attempts[1], "training_history", 6), (attempts[2], "val/per_dimension", 6)):
        image = attempt.history[step][tag]
        assert image["_type"] == "image-file" and image["format"] == "png"
        assert (attempt.folder / "files" / image["path"]).stat().st_size == image["size"]


def test_missing_wandb_is_a_named_error_before_any_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r'tracking.wandb.mode: offline needs wandb .*pip install "packages/gaze-estimation\[wandb\]"'):
        build(tmp_path, 1)
    build(tmp_path, 1, mode="disabled").fit()  # disabled needs no wandb
    assert not (tmp_path / "wandb").exists() and not (tmp_path / RUN_ID_JSON).exists()


def test_only_rank_0_opens_a_wandb_run(tmp_path):
    with Tracker(tmp_path, enabled=False, wandb=WandbConfig(mode="offline")) as tracker:
        tracker.log_scalars({"loss": 1.0}, step=1)
    assert not (tmp_path / "wandb").exists() and not (tmp_path / RUN_ID_JSON).exists()


def test_a_wandb_run_that_cannot_start_is_a_config_error_and_the_manifest_says_so(tmp_path, monkeypatch):
    import wandb

    def no_login(**kwargs):
        raise wandb.errors.UsageError("No API key configured. Use `wandb login` to log in.")

    monkeypatch.setattr(wandb, "init", no_login)
    with pytest.raises(ConfigError, match=r"tracking.wandb \(mode online, project 'perception-lab-tests'\).*No API key.*mode: offline"):
        build(tmp_path, 1, mode="online").fit()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "No API key" in manifest["error"] and manifest["global_step"] == 0
