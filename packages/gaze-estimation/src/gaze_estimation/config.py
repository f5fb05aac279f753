"""The training config: data, augmentation, model, optimizer, loss and the shared loop settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from perception_shared.tracking import TrackingConfig
from perception_shared.training import LoopConfig

from .augment import AugmentConfig
from .models import ModelConfig
from .normalization import NormalizationConfig


@dataclass
class DataConfig:
    """Where the HDF5 files are (``<root>/<split>*/participant_*/frames_<camera>.h5``) and how to load them."""

    root: Path = Path("data/eve_h5")
    train_split: str = "train"
    val_split: str = "val"
    camera: str = "basler"
    batch_size: int = 32  # per process
    eval_batch_size: int = 64
    num_workers: int = 4
    # Training participants held out to select the best checkpoint (a count drawn with selection_seed,
    # or their ids); the validation participants are only ever used for the reported error.
    selection_participants: int | list[str] = 1
    selection_seed: int = 0
    # Temporal models (model.name gazetr_temporal): windows of sequence_length consecutive frames, a new
    # training window every window_stride frames (evaluation covers each frame once); batch sizes count windows.
    sequence_length: int = 16
    window_stride: int = 8

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("data.batch_size and data.eval_batch_size must be at least 1")
        if self.sequence_length < 1 or self.window_stride < 1:
            raise ValueError(f"data.sequence_length ({self.sequence_length}) and data.window_stride ({self.window_stride}) must be at least 1")
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")


@dataclass
class OptimConfig:
    """AdamW with linear warmup and a cosine decay to ``min_lr_ratio * lr``, stepped every batch."""

    lr: float = 1e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 500
    min_lr_ratio: float = 0.01

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.weight_decay < 0 or self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("optim: lr > 0, weight_decay >= 0, warmup_steps >= 0 and 0 <= min_lr_ratio <= 1 are required")


def _loop_defaults() -> LoopConfig:
    return LoopConfig(epochs=20, grad_clip=1.0, monitor="val/select_angular_error", mode="min")


@dataclass
class TrainConfig:
    # research: the settings of a study; toy: tiny model/data for demos and tests, said in every log and
    # report the run touches (its numbers check the pipeline, they answer no research question).
    purpose: Literal["research", "toy"] = "research"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    # The data normalization that produced the data's crops; predict-raw repeats it on camera images.
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    mse_weight: float = 0.1  # loss = angular error (rad) + mse_weight * MSE of pitch/yaw (rad^2)
    figure_samples: int = 8  # validation samples drawn with predicted and true gaze each evaluation
    loop: LoopConfig = field(default_factory=_loop_defaults)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


def purpose_line(purpose: str) -> str:
    """How logs and reports name a config's purpose."""
    if purpose == "toy":
        return "TOY settings (demo/test size): the numbers check the pipeline, not a research question"
    return "research settings"


def is_random_init(cfg: TrainConfig) -> bool:
    """Whether the run starts from random weights (no pretrained backbones, no ``--init-from`` run)."""
    return not cfg.model.pretrained and cfg.model.init_from is None
