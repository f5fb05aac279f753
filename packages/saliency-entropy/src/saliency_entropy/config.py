"""The configuration of a saliency run: dataclasses loaded from YAML by ``perception_shared.config``.

Every key has a default; a YAML file (``configs/*.yaml``) and ``--set key=value`` override them.
Units: image sizes are ``[height, width]`` in pixels; entropies and log-likelihoods in nats unless a key
says ``bits``; learning rates per optimizer step; epochs are full passes over the training split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from perception_shared.tracking import TrackingConfig
from perception_shared.training import LoopConfig

# 101 of MIT1003's 1003 images are held out, the split DeepGaze and pysaliency use for a single fold;
# smaller data sets (synthetic ones) keep the same fraction.
MIT1003_VAL_FRACTION = 101 / 1003


def _check_size(name: str, size: list[int], multiple: int) -> None:
    if len(size) != 2 or any(s <= 0 or s % multiple for s in size):
        raise ValueError(f"{name} must be [height, width], each a positive multiple of {multiple}; got {size}")


@dataclass
class DataConfig:
    """Where MIT1003 (in-domain) and CAT2000 (out-of-domain) live and how they are read.

    ``fixations`` chooses the MIT1003 fixation source: ``raw`` extracts fixations from
    ``DATA/<subject>/<image>.mat`` with the pure-Python port of the release's ``checkFixations.m``;
    ``csv`` reads ``fixations_csv`` (columns ``x,y,image,subject``); ``fixlocs`` reads one file per image
    from ``fixlocs_dir`` (``<stem>.mat`` binary map under ``fixlocs_key``, or ``<stem>_fixPts.jpg/png``).
    Relative paths are relative to ``mit_root``.
    """

    mit_root: str = "data/MIT1003"
    fixations: Literal["raw", "csv", "fixlocs"] = "raw"
    fixations_csv: str = "fixations.csv"
    fixlocs_dir: str = "ALLFIXATIONMAPS"
    fixlocs_key: str = "fixLocs"
    drop_first_fixation: bool = True  # Judd et al.: the first fixation is the forced central one
    split_file: str | None = None  # a split JSON to reuse; null: make one from split_seed
    split_seed: int = 0
    val_fraction: float = MIT1003_VAL_FRACTION
    image_size: list[int] = field(default_factory=lambda: [768, 1024])
    # squash: every image resized to image_size (ood_image_size for CAT2000); keep: each image keeps its
    # aspect ratio, scaled so that its longer side is the longer side of that size (MIT1003's own size,
    # as DeepGaze evaluates), each side rounded to a multiple of model.saliency_map_factor
    aspect: Literal["squash", "keep"] = "squash"
    cat2000_root: str = "data/CAT2000"
    cat2000_key: str = "fixLocs"
    ood_images: int = 50  # CAT2000 images evaluated, drawn per category with ood_seed
    ood_seed: int = 0
    ood_image_size: list[int] = field(default_factory=lambda: [576, 1024])  # 1920x1080 keeps its aspect
    batch_size: int = 4  # per process
    eval_batch_size: int = 4
    num_workers: int = 2

    def __post_init__(self) -> None:
        _check_size("data.image_size", self.image_size, 8)
        _check_size("data.ood_image_size", self.ood_image_size, 8)
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.ood_images < 1 or self.batch_size < 1 or self.eval_batch_size < 1 or self.num_workers < 0:
            raise ValueError("data.ood_images, batch_size and eval_batch_size must be positive, num_workers >= 0")


@dataclass
class ModelConfig:
    """The saliency model: ``architecture`` ``variant`` (default) is this package's DeepGaze IIE/III-style
    spatial model (``saliency_entropy.models``); ``deepgaze3`` is DeepGaze III as published
    (``saliency_entropy.deepgaze3``: ``components`` mixture components, each with a scanpath network over
    the last ``history`` fixations when ``scanpath`` is true), whose backbone and layers are DenseNet-201's.

    ``backbone`` names the backbone's pretrained weights by their identifier
    (``torchvision:DenseNet201_Weights.IMAGENET1K_V1``, or a timm name with its tag such as
    ``timm:densenet201.tv_in1k``); with ``pretrained: false`` a bare architecture (``timm:resnet18``) is
    enough and the backbone is randomly initialized (stated in logs, manifest and reports). Weights come
    from ``weights_file`` (``train --weights PATH``), else the Hugging Face / torch hub caches, else a
    download (``perception_shared.pretrained``); their mean and std come from the weights' own config.
    ``layers`` are module names inside the backbone (``torch.nn.Module.named_modules``) read out.
    """

    backbone: str = "torchvision:DenseNet201_Weights.IMAGENET1K_V1"
    pretrained: bool = True
    weights_file: str | None = None
    layers: list[str] = field(
        default_factory=lambda: [
            "features.denseblock4.denselayer32.norm1",
            "features.denseblock4.denselayer32.conv1",
            "features.denseblock4.denselayer31.conv2",
        ]
    )
    architecture: Literal["variant", "deepgaze3"] = "variant"
    components: int = 1  # deepgaze3: mixture components (the published scanpath model: 10)
    scanpath: bool = False  # deepgaze3: each component has a scanpath network
    history: int = 4  # deepgaze3 scanpath: previous fixations read (the published model: 4)
    downsample: float = 2  # input images are shrunk by this factor before the backbone (variant: an integer)
    readout_factor: int = 4  # readout grid = downsampled image / readout_factor
    saliency_map_factor: int = 4  # the finalizer works at image / saliency_map_factor
    readout_channels: list[int] = field(default_factory=lambda: [8, 16])
    initial_sigma: float = 8.0  # Gaussian blur in saliency-map pixels, learned
    initial_center_bias_weight: float = 1.0  # weight of the log center bias, learned
    center_prior_grid: int = 128  # resolution of the center prior over the unit square

    def __post_init__(self) -> None:
        if ":" not in self.backbone and "." not in self.backbone:
            raise ValueError(
                f"model.backbone must be a weights identifier ('torchvision:<Enum>.<member>' or 'timm:<name>.<tag>'), "
                f"or with pretrained: false an architecture ('timm:resnet18'); got {self.backbone!r}"
            )
        if self.weights_file is not None and not self.pretrained:
            raise ValueError("model.weights_file is set but model.pretrained is false")
        if not self.layers:
            raise ValueError("model.layers must name at least one backbone layer")
        if min(self.downsample, self.readout_factor, self.saliency_map_factor) < 1:
            raise ValueError("model.downsample, readout_factor and saliency_map_factor must be at least 1")
        if self.initial_sigma <= 0:
            raise ValueError(f"model.initial_sigma must be positive, got {self.initial_sigma}")
        if self.architecture == "variant" and self.downsample != int(self.downsample):
            raise ValueError(f"model.downsample must be an integer for the variant model, got {self.downsample}")
        if self.components < 1 or self.history < 1:
            raise ValueError("model.components and model.history must be at least 1")
        if self.architecture == "variant" and (self.components != 1 or self.scanpath):
            raise ValueError("model.components and model.scanpath belong to architecture: deepgaze3")


@dataclass
class EntropyConfig:
    """The bias-map entropy regularizer: loss = NLL per fixation - weight * H(bias map).

    The bias map is the model's density for ``n_samples`` near-uniform images (intensities cycled from
    ``intensities``, plus i.i.d. Gaussian pixel noise of ``noise_std`` drawn from ``seed``), averaged
    as a mixture; H is in nats over the full-resolution pixel grid.

    Dose: the term enters the loss on the optimizer steps whose global number s (1-based) is a multiple
    of ``compute_every``, a fraction f = 1 / compute_every of all steps, so the dose is
    ``weight x f`` (the research configs: every step, f = 1). The schedule counts optimizer steps, which
    every rank and world size agree on, and a resumed run continues the count: f, and the dose, are the
    same whatever the number of GPUs, also when it changes on resume (the regularizer's gradient is added
    once per step; the NLL's is a mean over the global batch, so their ratio per step does not depend on
    the batch either). The run counts the steps it regularized and reports the measured dose. With
    weight 0 (the baseline) nothing is regularized and H is computed only at validation.
    """

    weight: float = 1.0
    compute_every: int = 1
    intensities: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])
    n_samples: int = 16
    noise_std: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if self.weight < 0 or self.compute_every < 1 or self.n_samples < 1 or self.noise_std < 0:
            raise ValueError("entropy.weight and noise_std must be >= 0; compute_every and n_samples >= 1")
        if not self.intensities or any(not 0.0 <= v <= 1.0 for v in self.intensities):
            raise ValueError(f"entropy.intensities must be values in [0, 1], got {self.intensities}")


@dataclass
class OptimConfig:
    """Adam with a multi-step schedule (per epoch). The defaults go from 1.585e-3 to 1.585e-7 in 25 epochs:
    DeepGaze III's MIT1003 milestones every 3 epochs, each dividing by sqrt(10)."""

    lr: float = 0.001585
    milestones: list[int] = field(default_factory=lambda: [3, 6, 9, 12, 15, 18, 21, 24])
    gamma: float = 10**-0.5
    weight_decay: float = 0.0
    # parameter-name prefixes kept fixed (besides the always frozen backbone), as DeepGaze III's
    # ``frozen_scopes``: the scanpath stage keeps the first two saliency-network stages fixed
    frozen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.lr <= 0 or not 0 < self.gamma <= 1 or self.weight_decay < 0:
            raise ValueError("optim.lr must be > 0, optim.gamma in (0, 1], optim.weight_decay >= 0")


@dataclass
class CenterPriorConfig:
    """Gaussian KDE of normalized training fixations mixed with a uniform density; the bandwidth and
    the uniform weight maximize the cross-validated (``folds`` folds by image) log-likelihood over the
    grids below. Bandwidths are in units of the image side (x / width, y / height)."""

    folds: int = 10
    bandwidth_min: float = 0.01
    bandwidth_max: float = 0.3
    bandwidth_steps: int = 25
    uniform_weights: list[float] = field(default_factory=lambda: [1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3])

    def __post_init__(self) -> None:
        if self.folds < 2 or self.bandwidth_steps < 1 or not 0 < self.bandwidth_min <= self.bandwidth_max:
            raise ValueError("center_prior: folds >= 2, bandwidth_steps >= 1, 0 < bandwidth_min <= bandwidth_max")
        if not self.uniform_weights or any(not 0 < w < 1 for w in self.uniform_weights):
            raise ValueError(f"center_prior.uniform_weights must lie in (0, 1), got {self.uniform_weights}")


@dataclass
class EvalConfig:
    """What ``evaluate`` computes besides IG/LL: the AUC jitter of the MIT benchmark and example plots."""

    auc_jitter: bool = False  # MIT's AUC_Judd adds U(0, 1e-7) to break ties; off: ties count as above
    examples: int = 4  # example predictions plotted (and saved as .npy for the report)
    mit_val: bool = True
    cat2000: bool = True


@dataclass
class CriteriaConfig:
    """Go/no-go thresholds of ``report`` (entropy run vs baseline run) and the uncertainty of the verdict.

    The information-gain criteria get paired bootstrap intervals over images (``confidence``,
    ``bootstrap_resamples`` resamples drawn from ``bootstrap_seed``); a criterion whose interval lies on
    the passing side passes, one whose interval straddles the threshold is inconclusive.
    """

    min_entropy_increase_pct: float = 5.0  # bias-map entropy must rise by at least this much
    max_in_domain_ig_drop_pct: float = 2.0  # MIT1003 val IG may fall by at most this much
    min_ood_ig_gain_bits: float = 0.0  # CAT2000 IG must improve by more than this (bits/fixation)
    max_val_nll_rise: float = 0.5  # nats/fixation above the run's best val NLL that counts as divergence
    confidence: float = 0.95
    bootstrap_resamples: int = 2000
    bootstrap_seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1 or self.bootstrap_resamples < 100:
            raise ValueError("criteria.confidence must be in (0, 1) and criteria.bootstrap_resamples >= 100")


@dataclass
class RuntimeConfig:
    """How the process runs, not what it computes: results do not depend on these."""

    # keep freed host memory in the process (glibc malloc without mmap and trimming): a CPU step then
    # stops page-faulting its working memory in again (saliency_entropy.allocator)
    retain_host_memory: bool = True


@dataclass
class TrainConfig:
    """Everything a training run needs; saved in every checkpoint and as ``config.yaml``.

    ``toy``: true in the demo and test configs, whose settings (tiny images, random backbone, few epochs)
    check the pipeline, not the research question; logs, evaluations and reports then say so.
    """

    seed: int = 0
    toy: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    entropy: EntropyConfig = field(default_factory=EntropyConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    center_prior: CenterPriorConfig = field(default_factory=CenterPriorConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    criteria: CriteriaConfig = field(default_factory=CriteriaConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(epochs=25, checkpoint_every=5, monitor="val/nll"))
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        factor = self.model.downsample * self.model.readout_factor
        for name, size in (
            ("data.image_size", self.data.image_size),
            ("data.ood_image_size", self.data.ood_image_size),
        ):
            if any(s % self.model.saliency_map_factor for s in size):
                raise ValueError(f"{name} {size} must be divisible by model.saliency_map_factor")
            if any(math.ceil(s / factor) < 1 for s in size):
                raise ValueError(f"{name} {size} is smaller than one readout cell")
