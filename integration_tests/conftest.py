"""Shared pieces of the integration tests: the repository, the packages, and how to run their CLIs.

The tests drive the installed console scripts in subprocesses, the way a researcher would, and check
the files they leave behind. All runs are small enough for a 2-core CPU.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Package:
    """How to drive one package's CLI on tiny synthetic data."""

    name: str
    module: str
    subcommands: tuple[str, ...]
    synthetic_args: tuple[str, ...]  # after `make-synthetic OUT`
    train_args: Callable[[Path], list[str]]  # data dir -> args after `train`
    evaluate_args: Callable[[Path, Path, Path], list[str]]  # run dir, data dir, out dir -> args after `evaluate`
    metrics_json: Callable[[Path], Path]  # out dir -> the metrics JSON evaluate writes
    # data dir -> samples evaluate must count (every one exactly once); None: compare with a 1-process run
    n_eval_samples: Callable[[Path], int | None]
    sane: Callable[[dict], list[str]]  # demo summary metrics -> problems (empty when sane)

    @property
    def script(self) -> str:
        return str(BIN / self.name)


def _count_h5(data: Path, split: str) -> int:
    import h5py

    total = 0
    for f in sorted(data.glob(f"{split}*/participant_*/frames_*.h5")):
        with h5py.File(f, "r") as h:
            total += len(h["gaze"])
    return total


def _count_pt(path: Path) -> int:
    import torch

    return int(torch.load(path, weights_only=True)["coordinates"].shape[0])


def _rating_val_count(data: Path) -> int:
    import csv

    with open(next(data.glob("*.csv")), newline="") as f:
        n = sum(1 for _ in csv.DictReader(f))
    return n - int(round(0.8 * n))


def _between(metrics: dict, key: str, lo: float, hi: float) -> list[str]:
    v = metrics.get(key)
    if not isinstance(v, (int, float)) or not (lo <= v <= hi):
        return [f"{key}={v!r} not in [{lo}, {hi}]"]
    return []


# every package's CLI has these (perception_shared.cli), plus its own
COMMON_SUBCOMMANDS = ("make-synthetic", "validate-data", "train", "evaluate", "predict", "export", "weights", "demo")

PACKAGES: dict[str, Package] = {
    "sparse-video-loss": Package(
        name="sparse-video-loss",
        module="sparse_video_loss",
        subcommands=COMMON_SUBCOMMANDS + ("compare", "import-csv"),
        synthetic_args=("--n-train", "48", "--n-val", "16", "--n-test", "13"),
        train_args=lambda data: ["--config", "demo", "--data", str(data)],
        evaluate_args=lambda run, data, out: [str(run), "--data", str(data), "--out", str(out)],
        metrics_json=lambda out: out / "metrics.json",
        n_eval_samples=lambda data: _count_pt(data / "test.pt"),
        # a trained composite loss must place mass near the dot far better than chance (AP of blank ~0.001)
        sane=lambda m: _between(m, "composite_ap", 0.005, 1.0) + _between(m, "composite_loc_error_px", 0.0, 12.0),
    ),
    "gaze-estimation": Package(
        name="gaze-estimation",
        module="gaze_estimation",
        subcommands=COMMON_SUBCOMMANDS + ("predict-raw", "convert-eve", "compare"),
        # three training participants: one of them is held out for model selection
        synthetic_args=("--train-participants", "3", "--val-participants", "2", "--samples", "13"),
        train_args=lambda data: ["--config", "demo", "--data", str(data)],
        evaluate_args=lambda run, data, out: [str(run), "--data", str(data), "--out", str(out)],
        metrics_json=lambda out: out / "metrics.json",
        n_eval_samples=lambda data: _count_h5(data, "val"),
        # trained: clearly below the error of always predicting the mean gaze
        sane=lambda m: _between(m, "mean_angular_error_deg", 0.0, 0.8 * m.get("mean_predictor_error_deg", 0.0)),
    ),
    "image-rating": Package(
        name="image-rating",
        module="image_rating",
        subcommands=COMMON_SUBCOMMANDS + ("verify-setup",),
        synthetic_args=("--n-images", "41", "--size", "64"),
        train_args=lambda data: ["--config", "demo", "--data", str(data)],
        evaluate_args=lambda run, data, out: [str(run), "--out", str(out)],
        metrics_json=lambda out: out / "metrics.json",
        n_eval_samples=_rating_val_count,
        # brightness is an easy, known function of the pixels (achievable r ~0.99)
        sane=lambda m: _between(m, "test_brightness_pearson_r", 0.8, 1.0),
    ),
    "saliency-entropy": Package(
        name="saliency-entropy",
        module="saliency_entropy",
        subcommands=COMMON_SUBCOMMANDS + ("report", "study", "extract-fixations"),
        synthetic_args=("--mit-images", "16", "--subjects", "4", "--cat-per-category", "3"),
        train_args=lambda data: ["--config", "demo", "--data", str(data / "MIT1003"), "--cat2000", str(data / "CAT2000")],
        evaluate_args=lambda run, data, out: [str(run), "--out", str(out)],
        metrics_json=lambda out: out / "metrics.json",
        n_eval_samples=lambda data: None,
        # the model learns content beyond the center prior but cannot beat the true density; the entropy
        # term raises the bias map's entropy
        sane=lambda m: _between(m, "baseline_mit_val_ig_bits", 0.2, m.get("mit_val_gt_ig_bits", 0.0) + 0.05)
        + ([] if m["entropy_bias_entropy_nats"] > m["baseline_bias_entropy_nats"] else ["bias entropy did not rise"]),
    ),
}


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"):
        env.pop(k, None)
    for k in list(env):
        if k.startswith("SLURM_"):
            env.pop(k)
    env.update(PERCEPTION_NO_PROGRESS="1", MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 600, cwd: Path | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], env=env or cli_env(), capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}"
                             f"\n--- stderr\n{proc.stderr[-5000:]}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Callable[[str], Path]:
    """Each package's tiny synthetic data set, made once per session."""
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            pkg = PACKAGES[name]
            out = tmp_path_factory.mktemp(f"data-{name}")
            run([pkg.script, "make-synthetic", str(out), *pkg.synthetic_args])
            made[name] = out
        return made[name]

    return get
