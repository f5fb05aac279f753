"""The configuration of a rating run: dataclasses loaded from YAML by ``perception_shared.config``.

Every key has a default; a YAML file (``configs/*.yaml``) and ``--set key=value`` override them. Units:
image sizes in pixels, learning rates per optimizer step, epochs as full passes over the training split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from perception_shared.tracking import TrackingConfig
from perception_shared.training import LoopConfig

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("cosine", "step", "plateau", "none")
# What the loop can select the best epoch and stop early on, and which direction is better. The
# study's rule is the mean validation Pearson r over the dimensions.
MONITORS = {"val/pearson_r": "max", "val/loss": "min", "val/mae": "min", "val/rmse": "min"}


@dataclass
class DataConfig:
    """Where the images and the wide ratings CSV are, how its columns are named, and how to load them.

    ``mean_column`` / ``sd_column`` are name templates in which ``{dim}`` stands for the dimension name:
    with the defaults, dimension ``Brightness`` has columns ``Brightness_mean`` and ``Brightness_sd``.
    When ``dimensions`` is empty, every column matching ``mean_column`` is a dimension (in file order);
    each dimension needs both its mean and its sd column.
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
    val_fraction: float = 0.2  # selects the best epoch (and early stopping)
    test_fraction: float = 0.15  # held out: what evaluate reports; 0: no test part (as before 0.3)
    split_seed: int = 42
    # Preprocessing: null takes the value from the pretrained config of the backbone's weights (timm's
    # input_size, crop_pct, interpolation, mean, std; see transforms.Preprocessing). A value set here
    # overrides it, and training logs the override.
    image_size: int | None = None  # crop fed to the network, pixels
    resize_size: int | None = None  # shorter side before cropping, pixels (null: image_size / crop_pct)
    interpolation: Literal["bilinear", "bicubic", "nearest"] | None = None
    mean: tuple[float, float, float] | None = None  # per channel, RGB in [0, 1]
    std: tuple[float, float, float] | None = None
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
        if not 0.0 <= self.test_fraction < 1.0 or self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"data.test_fraction must be in [0, 1) and leave images for training beside data.val_fraction; got "
                f"test_fraction {self.test_fraction}, val_fraction {self.val_fraction}"
            )
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"data.image_size must be at least 8, got {self.image_size}")
        if self.image_size is not None and self.resize_size is not None and self.resize_size < self.image_size:
            raise ValueError(
                f"data.resize_size must be at least data.image_size; got resize_size {self.resize_size}, "
                f"image_size {self.image_size}"
            )
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"data.std must be positive, got {self.std}")
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
    """Training augmentation; the defaults are the study's protocol.

    In order, after resizing the shorter side to the resize size and a random crop to the input size:
    horizontal flip (p 0.5); one affine warp with rotation (±15°), translation (up to 10% of the side in
    x and y), scaling (0.9-1.1) and x-shear (±10°); color jitter (brightness, contrast, saturation
    factors in [0.7, 1.3], hue shift ±0.1); grayscale (p 0.1); perspective (off by default: not part of
    the study); then, on the normalized tensor, random erasing (p 0.2) of a rectangle covering 2-15% of
    the image (aspect ratio 0.3-3.3), filled with 0. A probability or strength of 0 turns a step off.
    Color jitter and grayscale change the very properties that colour-related ratings describe; the
    demo config keeps them mild.
    """

    hflip_p: float = 0.5
    rotation_degrees: float = 15.0
    affine_translate: float = 0.1  # fraction of the image size
    affine_scale: tuple[float, float] = (0.9, 1.1)
    affine_shear: float = 10.0  # degrees, along x
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.1
    grayscale_p: float = 0.1
    perspective_distortion: float = 0.2
    perspective_p: float = 0.0
    erasing_p: float = 0.2
    erasing_scale: tuple[float, float] = (0.02, 0.15)  # erased area as a fraction of the image

    def __post_init__(self) -> None:
        for key in ("hflip_p", "grayscale_p", "perspective_p", "erasing_p", "perspective_distortion"):
            v = getattr(self, key)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"augment.{key} must be in [0, 1], got {v}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"augment.hue must be in [0, 0.5], got {self.hue}")
        if min(self.brightness, self.contrast, self.saturation, self.rotation_degrees, self.affine_translate) < 0:
            raise ValueError("augment strengths must not be negative")
        lo, hi = self.affine_scale
        if not 0.0 < lo <= hi:
            raise ValueError(f"augment.affine_scale must be [low, high] with 0 < low <= high, got {self.affine_scale}")
        lo, hi = self.erasing_scale
        if not 0.0 < lo <= hi < 1.0:
            raise ValueError(
                f"augment.erasing_scale must be [low, high] with 0 < low <= high < 1, got {self.erasing_scale}"
            )


@dataclass
class ModelConfig:
    """A timm backbone with global pooling, followed by the rating head
    ``features -> hidden[0] -> hidden[1] -> dimensions``.

    ``backbone`` is the weights' identifier: a timm model name with its pretrained tag
    (``resnet50.a1_in1k``); a name without a tag means timm's default tag. With ``pretrained: true``
    the weights come, in this order, from ``weights_file`` (or ``train --weights PATH``), the Hugging
    Face hub cache or the torch hub cache, or a download; when none has them, training stops before it
    starts (``perception_shared.pretrained``). ``pretrained: false`` is random initialization, which
    the log, the run manifest and every report state.
    """

    backbone: str = "resnet50.a1_in1k"
    pretrained: bool = True
    weights_file: str | None = None  # a local file or folder with the backbone's weights
    hidden: list[int] = field(default_factory=lambda: [512, 256])
    dropout: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"model.hidden sizes must be positive, got {self.hidden}")
        if self.weights_file is not None and not self.pretrained:
            raise ValueError(
                f"model.weights_file is {self.weights_file!r} but model.pretrained is false; "
                "set model.pretrained: true to load the file"
            )


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
    return LoopConfig(epochs=100, precision="bf16", monitor="val/pearson_r", mode="max", early_stopping_patience=15)


@dataclass
class RatingConfig:
    """A rating run. ``toy: true`` marks demo/test settings (tiny model, random init, few epochs): the
    log, the run manifest, the figures and every report of such a run say so."""

    seed: int = 42
    toy: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    loop: LoopConfig = field(default_factory=_default_loop)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        direction = MONITORS.get(self.loop.monitor)
        if direction is None:
            raise ValueError(
                f"loop.monitor must be one of {', '.join(MONITORS)} (the best epoch and early stopping follow "
                f"it), got {self.loop.monitor!r}"
            )
        if self.loop.mode != direction:
            raise ValueError(
                f"loop.monitor {self.loop.monitor} is better when {'higher' if direction == 'max' else 'lower'}: "
                f"set loop.mode: {direction} (got {self.loop.mode})"
            )
