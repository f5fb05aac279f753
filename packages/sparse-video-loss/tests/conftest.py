import os

import pytest
import torch

from perception_shared.config import load_config, resolve_config_path
from perception_shared.logging import close_logging
from sparse_video_loss.config import PACKAGE, TrainConfig
from sparse_video_loss.synthetic import make_synthetic

os.environ.setdefault("PERCEPTION_NO_PROGRESS", "1")


@pytest.fixture(autouse=True)
def _small_threads_and_clean_logging():
    torch.set_num_threads(1)
    yield
    close_logging()


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A small synthetic data set in the real format (odd test size, to catch duplicated samples)."""
    out = tmp_path_factory.mktemp("tiny_data")
    make_synthetic(out, n_train=48, n_val=16, n_test=15, seed=3)
    return out


def _tiny_config(data_root, *overrides: str) -> TrainConfig:
    base = [f"data.root={data_root}", "loop.epochs=1", "loop.max_steps_per_epoch=2", "data.batch_size=8"]
    return load_config(TrainConfig, resolve_config_path(PACKAGE, "demo"), base + list(overrides))


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(data_root, *overrides)``: the demo config (tiny SimVP), 1 epoch of 2 steps unless overridden."""
    return _tiny_config
