import os
from pathlib import Path

import pytest
import torch

from gaze_estimation.cli import main
from gaze_estimation.synthetic import make_synthetic
from perception_shared.logging import close_logging

os.environ.setdefault("PERCEPTION_NO_PROGRESS", "1")

# The toy config at its smallest: what the tests train (pretrained: false, as demo.yaml says).
SMALL = ["--config", "demo", "--set", "model.d_model=32", "--set", "model.num_layers=1", "--set", "figure_samples=2"]


@pytest.fixture(autouse=True)
def _small_threads_and_clean_logging():
    torch.set_num_threads(1)
    yield
    close_logging()


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """4 training participants with 32 samples each and 2 validation participants with 16 (read-only)."""
    root = tmp_path_factory.mktemp("synth")
    make_synthetic(root / "tmp_train", train_participants=4, val_participants=0, samples_per_participant=32, seed=1)
    make_synthetic(root / "tmp_val", train_participants=1, val_participants=2, samples_per_participant=16, seed=1)
    (root / "tmp_train" / "train").rename(root / "train")
    (root / "tmp_val" / "val").rename(root / "val")
    return root


@pytest.fixture(scope="session")
def tiny_run(synth_root, tmp_path_factory) -> Path:
    """A run directory trained for one epoch through the CLI (read-only; copy it to change it)."""
    run = tmp_path_factory.mktemp("cli") / "run"
    code = main(["train", *SMALL, "--data", str(synth_root), "--run-dir", str(run), "--set", "loop.epochs=1", "--device", "cpu"])
    assert code == 0
    close_logging()
    return run
