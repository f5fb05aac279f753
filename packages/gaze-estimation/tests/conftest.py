import os
from pathlib import Path

import pytest
import torch

from gaze_estimation.synthetic import make_synthetic
from perception_shared.logging import close_logging

os.environ.setdefault("PERCEPTION_NO_PROGRESS", "1")


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
