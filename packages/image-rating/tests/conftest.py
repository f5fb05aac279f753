from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PERCEPTION_NO_PROGRESS", "1")
os.environ.setdefault("PERCEPTION_MIN_FREE_MB", "10")

from image_rating.config import RatingConfig  # noqa: E402
from image_rating.synthetic import SyntheticData, make_synthetic  # noqa: E402
from image_rating.train import TrainResult, train  # noqa: E402
from perception_shared.config import load_config, resolve_config_path  # noqa: E402

# Small enough for seconds of CPU per run; the 48 px images are cropped to 32 px.
TINY = [
    "data.image_size=32",
    "data.resize_size=36",
    "data.batch_size=8",
    "data.eval_batch_size=32",
    "loop.epochs=2",
    "loop.log_every=2",
    "eval.n_boot=50",
]


def tiny_config(root: Path, *overrides: str) -> RatingConfig:
    """The demo config made tinier, on the data in ``root``."""
    return load_config(
        RatingConfig, resolve_config_path("image_rating", "demo"), [f"data.root={root}", *TINY, *overrides]
    )


def research_config(name: str, *overrides: str) -> RatingConfig:
    """One of the shipped research configs (``baseline``, ``vit_base``, ...) with ``--set`` overrides."""
    return load_config(RatingConfig, resolve_config_path("image_rating", name), list(overrides))


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticData:
    """60 synthetic 48 px images with 20 simulated raters."""
    return make_synthetic(tmp_path_factory.mktemp("synthetic"), n_images=60, size=48, n_raters=20, seed=1)


@pytest.fixture(scope="session")
def trained_run(synthetic: SyntheticData, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """A two-epoch run on the synthetic data (shared by the evaluate and predict tests)."""
    cfg = tiny_config(synthetic.root, "data.n_raters=20")
    return train(cfg, run_dir=tmp_path_factory.mktemp("runs") / "run", device="cpu")
