"""Image pipelines (torchvision transforms v2): random augmentation for training, deterministic for evaluation.

Both take an RGB PIL image and return a normalized ``(3, image_size, image_size)`` float32 tensor. The
sizes, interpolation and normalization come from a ``Preprocessing``: by default the pretrained config
of the backbone's weights (timm's ``input_size``, ``crop_pct``, ``interpolation``, ``mean``, ``std``),
as timm's own evaluation transform uses them. The random steps draw from torch's global RNG, which
``SeededDataset`` seeds per (seed, epoch, sample).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torchvision.transforms import InterpolationMode, v2

from perception_shared.pretrained import preprocessing_for

from .config import AugmentConfig, DataConfig, ModelConfig

INTERPOLATIONS = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


@dataclass(frozen=True)
class Preprocessing:
    """What the network expects of an image.

    ``image_size``: side of the square crop fed to the network (pixels); ``resize_size``: the shorter
    side before cropping (pixels; timm's ``floor(image_size / crop_pct)``); ``interpolation``: resampling
    for the resize and the warps; ``mean`` / ``std``: per-channel normalization of RGB in [0, 1];
    ``source``: where these values came from (the weights' pretrained config, or the config file).
    """

    image_size: int
    resize_size: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str

    @property
    def crop_pct(self) -> float:
        return self.image_size / self.resize_size

    @property
    def mode(self) -> InterpolationMode:
        return INTERPOLATIONS[self.interpolation]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        out["crop_pct"] = round(self.crop_pct, 6)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(
            int(data["image_size"]),
            int(data["resize_size"]),
            str(data["interpolation"]),
            tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
            str(data["source"]),
        )


def resize_for_crop(image_size: int, crop_pct: float) -> int:
    """timm's resize before a center crop: the shorter side becomes ``floor(image_size / crop_pct)``."""
    return int(math.floor(image_size / crop_pct))


def resolve_preprocessing(model: ModelConfig, data: DataConfig) -> tuple[Preprocessing, list[str]]:
    """The preprocessing of a run and the config values that override the weights' own.

    Every ``data`` value left null comes from the pretrained config of ``model.backbone``'s weights
    (``perception_shared.pretrained.preprocessing_for``); ``resize_size`` left null is
    ``floor(image_size / crop_pct)``. Returns the overrides as ``"data.key: value (weights: value)"``
    lines for the log (a pretrained backbone fed other statistics than it learned with is worth a warning).
    """
    weights = preprocessing_for(model.backbone)
    native = {
        "image_size": int(weights["input_size"][-1]),
        "interpolation": str(weights["interpolation"]),
        "mean": tuple(float(v) for v in weights["mean"]),
        "std": tuple(float(v) for v in weights["std"]),
    }
    chosen = {k: getattr(data, k) if getattr(data, k) is not None else v for k, v in native.items()}
    chosen["mean"], chosen["std"] = tuple(chosen["mean"]), tuple(chosen["std"])
    if chosen["interpolation"] not in INTERPOLATIONS:
        raise ValueError(
            f"interpolation {chosen['interpolation']!r} of {model.backbone} is not one of {', '.join(INTERPOLATIONS)}"
        )
    resize = data.resize_size or resize_for_crop(chosen["image_size"], float(weights["crop_pct"]))
    overrides = [f"data.{k}: {chosen[k]} (weights: {v})" for k, v in native.items() if chosen[k] != v]
    native_resize = resize_for_crop(native["image_size"], float(weights["crop_pct"]))
    if data.resize_size is not None and chosen["image_size"] == native["image_size"] and resize != native_resize:
        overrides.append(f"data.resize_size: {resize} (weights: {native_resize})")
    origin = (
        "pretrained config of " + model.backbone + ("" if model.pretrained else " (weights not loaded: random init)")
    )
    source = origin + (f", overridden by {', '.join(o.split(':')[0] for o in overrides)}" if overrides else "")
    pre = Preprocessing(chosen["image_size"], resize, chosen["interpolation"], chosen["mean"], chosen["std"], source)
    return pre, overrides


def build_train_transform(pre: Preprocessing, aug: AugmentConfig) -> v2.Compose:
    """Resize (shorter side), random crop, flip, rotation + affine (one warp), color jitter, grayscale,
    perspective, to float, normalize, random erasing; steps with probability or strength 0 are left out."""
    steps: list[torch.nn.Module] = [
        v2.Resize(pre.resize_size, interpolation=pre.mode, antialias=True),
        v2.RandomCrop(pre.image_size),
    ]
    if aug.hflip_p > 0:
        steps.append(v2.RandomHorizontalFlip(aug.hflip_p))
    translate, scale, shear = aug.affine_translate, tuple(aug.affine_scale), aug.affine_shear
    if aug.rotation_degrees > 0 or translate > 0 or scale != (1.0, 1.0) or shear > 0:
        # Rotation and the other affine parts in one warp: one interpolation blurs less than two, and
        # the corners that a rotation leaves empty are not shifted into the image by a second warp.
        steps.append(
            v2.RandomAffine(
                degrees=aug.rotation_degrees,
                translate=(translate, translate) if translate > 0 else None,
                scale=scale if scale != (1.0, 1.0) else None,
                shear=shear if shear > 0 else None,
                interpolation=pre.mode,
            )
        )
    if max(aug.brightness, aug.contrast, aug.saturation, aug.hue) > 0:
        steps.append(v2.ColorJitter(aug.brightness, aug.contrast, aug.saturation, aug.hue))
    if aug.grayscale_p > 0:
        steps.append(v2.RandomGrayscale(aug.grayscale_p))
    if aug.perspective_p > 0 and aug.perspective_distortion > 0:
        steps.append(v2.RandomPerspective(aug.perspective_distortion, p=aug.perspective_p, interpolation=pre.mode))
    steps += [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(pre.mean), list(pre.std)),
    ]
    if aug.erasing_p > 0:
        steps.append(v2.RandomErasing(aug.erasing_p, scale=tuple(aug.erasing_scale), value=0))
    return v2.Compose(steps)


def build_eval_transform(pre: Preprocessing) -> v2.Compose:
    """Resize the shorter side to ``resize_size``, center crop ``image_size``, to float, normalize."""
    return v2.Compose(
        [
            v2.Resize(pre.resize_size, interpolation=pre.mode, antialias=True),
            v2.CenterCrop(pre.image_size),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(pre.mean), list(pre.std)),
        ]
    )
