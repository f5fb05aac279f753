"""The configuration of a rating run: dataclasses loaded from YAML by ``perception_shared.config``.

Every key has a default; a YAML file (``configs/*.yaml``) and ``--set key=value`` override them. Units:
image sizes in pixels, learning rates per optimizer step, epochs as full passes over the training split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from perception_shared.training import LoopConfig

# ImageNet channel statistics, the normalization timm's ImageNet weights expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("cosine", "step", "plateau", "none")


@dataclass
class DataConfig:
    """Where the images and the wide ratings CSV are, how its columns are named, and how to load them.

    ``mean_column`` / ``sd_column`` are name templates in which ``{dim}`` stands for the dimension name:
    with the defaults, dimension ``Brightness`` has columns ``Brightness_mean`` and ``Brightness_sd``.
    When ``dimensions`` is empty, every column matching ``mean_column`` is a dimension (in file order).
    """

    root: Path = Path("data/image-rating")
    images_dir: str = "images"  # relative to root, or absolute
    ratings_csv: str = "per_image_Slider_mean_sd_from_wide.csv"  # relative to root, or absolute
    image_column: str = "image"
    mean_column: str = "{dim}_mean"
    sd_column: str = "{dim}_sd"
    dimensions: list[str] = field(default_factory=list)
    num_dimensions: int | None = 14  # the number of dimensions the CSV must have; null: any
    n_raters: int | None = None  # raters per image, if known: enables the noise-ceiling estimate
    check_images: Literal["decode", "exists"] = "decode"
    split_file: str | None = None  # a split JSON to reuse (e.g. from another run); null: make one
    val_fraction: float = 0.2
    split_seed: int = 42
    image_size: int = 224  # crop fed to the network
    resize_size: int = 256  # shorter side before cropping
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    batch_size: int = 32  # per process
    eval_batch_size: int = 64
    num_workers: int = 4
    drop_last: bool = True

    def __post_init__(self) -> None:
        for key in ("mean_column", "sd_column"):
            template = getattr(self, key)
            if template.count("{dim}") != 1:
                raise ValueError(f"data.{key} must contain '{{dim}}' exactly once, got {template!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.image_size < 8 or self.resize_size < self.image_size:
            raise ValueError(
                f"data.image_size must be at least 8 and data.resize_size at least image_size; "
                f"got image_size {self.image_size}, resize_size {self.resize_size}"
            )
        if self.batch_size < 1 or self.eval_batch_size < 1 or self.num_workers < 0:
            raise ValueError("data.batch_size and data.eval_batch_size must be positive, data.num_workers >= 0")
        if self.n_raters is not None and self.n_raters < 2:
            raise ValueError(f"data.n_raters must be at least 2 (or null), got {self.n_raters}")
        if self.num_dimensions is not None and self.dimensions and len(self.dimensions) != self.num_dimensions:
            raise ValueError(
                f"data.dimensions lists {len(self.dimensions)} names but data.num_dimensions is {self.num_dimensions}"
            )

    @property
    def csv_path(self) -> Path:
        p = Path(self.ratings_csv)
        return p if p.is_absolute() else self.root / p

    @property
    def images_path(self) -> Path:
        p = Path(self.images_dir)
        return p if p.is_absolute() else self.root / p


@dataclass
class AugmentConfig:
    """Training augmentation, applied in this order after resizing the shorter side to ``data.resize_size``:
    random crop to ``data.image_size``, horizontal flip, rotation with translation, scaling and shear (one
    affine warp), color jitter, grayscale, perspective, then (on the normalized tensor) random erasing.
    A probability or strength of 0 turns a step off. Color jitter and grayscale change the very properties
    that colour-related ratings describe; keep them mild, or off, when such dimensions matter.
    """

    hflip_p: float = 0.5
    rotation_degrees: float = 15.0
    affine_translate: float = 0.1  # fraction of the image size
    affine_scale: tuple[float, float] = (0.9, 1.1)
    affine_shear: float = 5.0  # degrees
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.05
    grayscale_p: float = 0.1
    perspective_distortion: float = 0.2
    perspective_p: float = 0.3
    erasing_p: float = 0.25

    def __post_init__(self) -> None:
        for key in ("hflip_p", "grayscale_p", "perspective_p", "erasing_p", "perspective_distortion"):
            v = getattr(self, key)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"augment.{key} must be in [0, 1], got {v}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"augment.hue must be in [0, 0.5], got {self.hue}")
        if min(self.brightness, self.contrast, self.saturation, self.rotation_degrees, self.affine_translate) < 0:
            raise ValueError("augment strengths must not be negative")


@dataclass
class ModelConfig:
    """A timm backbone (any ``timm.list_models()`` name, always built with ``pretrained=False``) with
    global pooling, followed by the rating head ``features -> hidden[0] -> hidden[1] -> dimensions``."""

    backbone: str = "resnet50"
    pretrained_path: str | None = None  # local backbone weights (.pth/.pt/.bin/.safetensors); null: random init
    hidden: list[int] = field(default_factory=lambda: [512, 256])
    dropout: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"model.hidden sizes must be positive, got {self.hidden}")


@dataclass
class OptimConfig:
    name: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = 1e-4
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd only
    backbone_lr_scale: float = 1.0  # the backbone's learning rate is lr * this (fine-tuning often uses 0.1)

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.weight_decay < 0 or self.backbone_lr_scale < 0:
            raise ValueError("optim.lr must be positive, optim.weight_decay and optim.backbone_lr_scale >= 0")


@dataclass
class SchedConfig:
    """Learning-rate schedule, stepped once per epoch (``plateau`` on ``loop.monitor``)."""

    name: Literal["cosine", "step", "plateau", "none"] = "cosine"
    warmup_epochs: int = 0  # cosine only: linear warm-up from lr/(warmup+1)
    min_lr_factor: float = 0.01  # cosine: final lr = lr * this
    step_size: int = 30  # step: epochs between decays
    gamma: float = 0.1  # step: decay factor
    plateau_patience: int = 5
    plateau_factor: float = 0.5

    def __post_init__(self) -> None:
        if self.warmup_epochs < 0 or self.step_size < 1 or self.plateau_patience < 0:
            raise ValueError("sched.warmup_epochs and sched.plateau_patience must be >= 0, sched.step_size >= 1")
        if not 0.0 <= self.min_lr_factor <= 1.0 or not 0.0 < self.gamma <= 1.0 or not 0.0 < self.plateau_factor < 1.0:
            raise ValueError("sched.min_lr_factor must be in [0, 1], sched.gamma in (0, 1], plateau_factor in (0, 1)")


@dataclass
class EvalConfig:
    n_boot: int = 1000  # bootstrap resamples for the confidence interval of Pearson r
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.n_boot < 0 or not 0.0 < self.confidence < 1.0:
            raise ValueError("eval.n_boot must be >= 0 and eval.confidence in (0, 1)")


def _default_loop() -> LoopConfig:
    return LoopConfig(epochs=100, precision="bf16", monitor="val/loss", mode="min", early_stopping_patience=15)


@dataclass
class RatingConfig:
    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    loop: LoopConfig = field(default_factory=_default_loop)
