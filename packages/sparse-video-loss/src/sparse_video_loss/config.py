"""The training config: dataclasses loaded from YAML (``configs/*.yaml``) with ``--set key=value``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from perception_shared.tracking import TrackingConfig
from perception_shared.training import LoopConfig

PACKAGE = "sparse_video_loss"
DEFAULT_CONFIG = "simvp_incepu"


@dataclass
class SplitFiles:
    """File name of each split inside ``data.root`` (the study's names by default)."""

    train: str = "train_data.pt"
    val: str = "val_data.pt"
    test: str = "test_data.pt"


@dataclass
class OriginalKeys:
    """Which key of the study's files holds what."""

    coordinates: str = "coordinates"  # float (N, T, 2)
    mask: str = "fixation_mask"  # (N, T), bool or 0/1: frames that hold a point
    frames: str | None = None  # optional rendered frames stored beside the coordinates; cross-checked on load
    motion: str | None = None  # optional (N, T) motion codes (0 fixation, 1 pursuit, 2 saccade, -1 unknown)


@dataclass
class CoordinateConvention:
    """How the study's files write a point; converted on load to this package's (x = column, y = row,
    pixel centres at integers).

    * ``units``: ``pixels`` of the grid, or ``normalized`` to [0, 1] over the frame;
    * ``order``: ``xy`` (component 0 is the column) or ``yx`` (component 0 is the row);
    * ``origin``: ``corner``: pixel ``i`` covers ``[i, i + 1)`` (a point is rendered at ``floor(v)``, as
      ``coordinates.long()`` does for non-negative values); ``center``: pixel ``i`` covers
      ``[i - 0.5, i + 0.5)`` (rendered at ``floor(v + 0.5)``). Normalized corner values span the frame's
      edges (``v * size``), normalized centre values the first to the last pixel centre (``v * (size - 1)``).
    """

    units: Literal["pixels", "normalized"] = "pixels"
    order: Literal["xy", "yx"] = "yx"
    origin: Literal["corner", "center"] = "corner"


@dataclass
class OriginalFormatConfig:
    """The study's original files: ``data/train_data.pt``, ``val_data.pt``, ``test_data.pt`` (``data.format: original``)."""

    files: SplitFiles = field(default_factory=SplitFiles)
    keys: OriginalKeys = field(default_factory=OriginalKeys)
    convention: CoordinateConvention = field(default_factory=CoordinateConvention)
    size: int = 32  # side of the square grid the coordinates refer to

    def __post_init__(self) -> None:
        if self.size < 2:
            raise ValueError(f"data.original.size must be at least 2 pixels, got {self.size}")


@dataclass
class DataConfig:
    root: str = "data/sparse-video"  # directory with the split files (``--data`` overrides it)
    # native: train.pt/val.pt/test.pt written by make-synthetic or import-csv (sparse_video_loss.sequences);
    # original: the study's files, mapped by ``original`` (sparse_video_loss.original_data)
    format: Literal["native", "original"] = "native"
    original: OriginalFormatConfig = field(default_factory=OriginalFormatConfig)
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
    # SimVP has no published pretrained backbone for this task; the study trains it from scratch. false
    # is the only accepted value and is written in every run's metadata as random initialisation.
    pretrained: bool = False
    weights: str | None = None  # a user's own SimVP state dict to start from (``train --weights PATH``)

    def __post_init__(self) -> None:
        if self.pretrained:
            raise ValueError(
                "model.pretrained: true, but SimVP has no published pretrained weights (the study trains it "
                "from scratch); set model.pretrained: false, or start from your own file with model.weights / --weights PATH"
            )


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
class PerfConfig:
    """Optional speed-ups that change floating-point results slightly (off in every shipped config).

    Measured in ``benchmarks/train_step.py``; see ``benchmarks/RESULTS.md``.
    """

    channels_last: bool = False  # NHWC memory format for the model (other convolution kernels)
    compile: bool = False  # torch.compile the model (inductor): fused kernels after minutes of compiling
    # bf16 autocast of the forward pass on CPUs with bf16 units (avx512_bf16, AMX); on CUDA use
    # loop.precision: bf16. The loss, gradients and optimizer stay fp32.
    cpu_bf16: bool = False


@dataclass
class CompareConfig:
    """What ``compare`` runs: the losses, their settings, and how many seeds."""

    losses: list[str] = field(default_factory=lambda: ["mse", "bce", "focal", "sparsity", "concentration", "composite", "dice", "weighted_mse"])
    loss_kwargs: dict[str, dict[str, float]] = field(default_factory=dict)  # per loss; others keep their defaults
    seeds: int = 1  # runs per loss, with seeds seed, seed + 1, ...

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ValueError(f"compare.seeds must be at least 1, got {self.seeds}")
        if not self.losses:
            raise ValueError("compare.losses must name at least one loss")


@dataclass
class TrainConfig:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(epochs=25, grad_clip=1.0, monitor="val/loss", mode="min"))
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    toy: bool = False  # demo/test settings: every log and report says so
