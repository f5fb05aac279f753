"""Issue 15: the training step reads no tensor value on the host; the GPU check's CPU dry run."""

import math
from pathlib import Path

import pytest
import torch

from gaze_estimation.cli import load_train_config
from gaze_estimation.data import load_split
from gaze_estimation.models import build_model
from gaze_estimation.train import make_optimizer, make_step_fn
from perception_shared.distributed import init_distributed
from perception_shared.samplers import make_train_loader
from perception_shared.testing import count_epoch_reads
from perception_shared.training import Trainer


def test_training_steps_read_the_host_once_per_log_interval(synth_root, tmp_path, monkeypatch):
    """The real step_fn through the Trainer: at most ceil(N / log_every) host reads in N steps (the epoch's
    end, with its checkpoint and means, is outside the window)."""
    cfg = load_train_config("demo", ["model.d_model=32", "model.num_layers=1", "loop.log_every=4", "loop.epochs=1", "augment.enabled=false"])
    loader = make_train_loader(load_split(synth_root, "train"), 8, seed=0, num_workers=0)
    model, _ = build_model(cfg.model)
    with count_epoch_reads(monkeypatch, f"{__name__}.Trainer") as reads:
        trainer = Trainer(
            model=model, optimizer=make_optimizer(model, cfg.optim), train_loader=loader, step_fn=make_step_fn(cfg.mse_weight),
            loop=cfg.loop, ctx=init_distributed("cpu"), run_dir=tmp_path, config=cfg,
        )
        trainer.fit()
    steps = trainer.global_step
    assert steps == len(loader) == 16
    assert reads.count <= math.ceil(steps / cfg.loop.log_every), reads.summary()


@pytest.mark.slow
def test_gpu_check_dry_run_on_cpu(tmp_path):
    from gaze_estimation.gpu_check import build_spec
    from perception_shared.gpu_check import run_check

    spec = build_spec(torch.device("cpu"), Path(tmp_path), steps=3)
    assert spec.notes["parameters"] == 35_574_722 and spec.loader.num_workers == 8  # eve_lite's research model and workers
    result = run_check(spec, torch.device("cpu"), steps=1, warmup=1)
    assert result["problems"] == [], result["problems"]
    assert result["model_samples_per_s"] > 0 and math.isfinite(result["final_loss"])
