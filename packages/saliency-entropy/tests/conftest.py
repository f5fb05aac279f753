"""Shared fixtures: a small synthetic data set and two tiny trained + evaluated runs (baseline and
entropy-regularized) that several test modules inspect. Everything is written under pytest's tmp dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PERCEPTION_NO_PROGRESS", "1")

from perception_shared.config import load_config, resolve_config_path  # noqa: E402
from perception_shared.distributed import init_distributed  # noqa: E402
from perception_shared.logging import setup_logging  # noqa: E402
from perception_shared.seed import seed_everything  # noqa: E402
from saliency_entropy.config import TrainConfig  # noqa: E402
from saliency_entropy.synthetic import DomainSpec, SyntheticSpec, make_synthetic  # noqa: E402

# Small enough for seconds per run; 30 MIT-like images give a 27/3 split (MIT1003's 902/101 fraction).
TEST_SPEC = SyntheticSpec(
    seed=3,
    mit_images=30,
    cat_per_category=3,
    cat_categories=["Action", "Indoor"],
    mit=DomainSpec(256, 192, 4, 8, 0.6, 0.35, "warm"),
    cat=DomainSpec(256, 144, 6, 8, 0.85, 0.05, "cool"),
)
TINY = [
    "loop.epochs=3",
    "loop.checkpoint_every=1",
    "loop.log_every=1",
    "data.ood_images=6",
    "entropy.n_samples=4",
    "center_prior.folds=3",
    "center_prior.bandwidth_steps=8",
    "eval.examples=2",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a few seconds; still run in CI")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic(root, TEST_SPEC)
    return root


def tiny_config(root: Path, *overrides: str) -> TrainConfig:
    cfg = load_config(TrainConfig, resolve_config_path("saliency_entropy", "demo"), [*TINY, *overrides])
    cfg.data.mit_root = str(root / "MIT1003")
    cfg.data.cat2000_root = str(root / "CAT2000")
    return cfg


def train_run(cfg: TrainConfig, run_dir: Path, **kwargs):
    from saliency_entropy.train import train

    ctx = init_distributed("cpu")
    run_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(run_dir)
    seed_everything(cfg.seed)
    return train(cfg, ctx, run_dir, **kwargs)


@pytest.fixture(scope="session")
def trained_runs(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Baseline (entropy weight 0) and entropy-regularized (weight 1) runs, both evaluated."""
    from saliency_entropy.evaluate import evaluate_run

    base = tmp_path_factory.mktemp("runs")
    runs = {}
    for label, weight in (("baseline", 0.0), ("entropy_reg", 1.0)):
        run_dir = base / label
        train_run(tiny_config(synthetic_root, f"entropy.weight={weight}"), run_dir)
        evaluate_run(run_dir, init_distributed("cpu"))
        runs[label] = run_dir
    return runs
