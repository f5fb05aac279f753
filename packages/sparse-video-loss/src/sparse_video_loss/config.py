"""The training config: dataclasses loaded from YAML (``configs/*.yaml``) with ``--set key=value``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from perception_shared.training import LoopConfig

PACKAGE = "sparse_video_loss"
DEFAULT_CONFIG = "simvp_incepu"


@dataclass
class DataConfig:
    root: str = "data/sparse-video"  # directory with train.pt, val.pt, test.pt (``--data`` overrides it)
    n_input: int = 10  # past frames given to the model
    n_output: int = 10  # future frames predicted (SimVP predicts as many frames as it sees)
    batch_size: int = 8
    eval_batch_size: int = 32
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.n_input < 1 or self.n_output < 1:
            raise ValueError(f"data.n_input and data.n_output must be at least 1, got {self.n_input}, {self.n_output}")
        if self.n_input != self.n_output:
            raise ValueError(
                f"data.n_output ({self.n_output}) must equal data.n_input ({self.n_input}): SimVP maps T frames to T frames"
            )
        if self.batch_size < 1 or self.eval_batch_size < 1 or self.num_workers < 0:
            raise ValueError("data.batch_size and data.eval_batch_size must be at least 1, data.num_workers at least 0")


@dataclass
class ModelConfig:
    model_type: Literal["incepu", "gsta"] = "incepu"  # SimVP v1 Inception U-Net, or SimVP v2 gSTA
    hid_S: int = 64
    hid_T: int = 256
    N_S: int = 4
    N_T: int = 8
    mlp_ratio: float = 8.0  # gSTA only
    drop_path: float = 0.0  # gSTA only
    prior_prob: float | None = None  # initial probability of every pixel (readout bias); null: default init


@dataclass
class LossConfig:
    name: str = "composite"  # one of sparse_video_loss.losses.LOSSES
    kwargs: dict[str, float] = field(default_factory=dict)  # e.g. {pos_weight: 50} for weighted_mse


@dataclass
class OptimConfig:
    lr: float = 1e-3  # Adam
    weight_decay: float = 1e-5
    plateau_factor: float = 0.5  # ReduceLROnPlateau on val/loss
    plateau_patience: int = 2
    min_lr: float = 1e-6

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"optim.lr must be > 0 and optim.weight_decay >= 0, got {self.lr}, {self.weight_decay}")
        if not 0 < self.plateau_factor < 1 or self.plateau_patience < 0:
            raise ValueError("optim.plateau_factor must be in (0, 1) and optim.plateau_patience >= 0")


@dataclass
class TrainConfig:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(epochs=25, grad_clip=1.0, monitor="val/loss", mode="min"))
