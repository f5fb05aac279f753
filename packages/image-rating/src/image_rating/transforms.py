"""Image pipelines (torchvision transforms v2): random augmentation for training, deterministic for evaluation.

Both take an RGB PIL image and return a normalized ``(3, image_size, image_size)`` float32 tensor. The
random steps draw from torch's global RNG, which ``SeededDataset`` seeds per (seed, epoch, sample).
"""

from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode, v2

from .config import AugmentConfig, DataConfig

_BILINEAR = InterpolationMode.BILINEAR


def build_train_transform(data: DataConfig, aug: AugmentConfig) -> v2.Compose:
    """Resize (shorter side), random crop, flip, rotation + affine (one warp), color jitter, grayscale,
    perspective, to float, normalize, random erasing; steps with probability or strength 0 are left out."""
    steps: list[torch.nn.Module] = [
        v2.Resize(data.resize_size, interpolation=_BILINEAR, antialias=True),
        v2.RandomCrop(data.image_size),
    ]
    if aug.hflip_p > 0:
        steps.append(v2.RandomHorizontalFlip(aug.hflip_p))
    translate, scale, shear = aug.affine_translate, aug.affine_scale, aug.affine_shear
    if aug.rotation_degrees > 0 or translate > 0 or scale != (1.0, 1.0) or shear > 0:
        # Rotation and the other affine parts in one warp: one interpolation blurs less than two.
        steps.append(
            v2.RandomAffine(
                degrees=aug.rotation_degrees,
                translate=(translate, translate) if translate > 0 else None,
                scale=scale if scale != (1.0, 1.0) else None,
                shear=shear if shear > 0 else None,
                interpolation=_BILINEAR,
            )
        )
    if max(aug.brightness, aug.contrast, aug.saturation, aug.hue) > 0:
        steps.append(v2.ColorJitter(aug.brightness, aug.contrast, aug.saturation, aug.hue))
    if aug.grayscale_p > 0:
        steps.append(v2.RandomGrayscale(aug.grayscale_p))
    if aug.perspective_p > 0 and aug.perspective_distortion > 0:
        steps.append(v2.RandomPerspective(aug.perspective_distortion, p=aug.perspective_p, interpolation=_BILINEAR))
    steps += [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(data.mean), list(data.std)),
    ]
    if aug.erasing_p > 0:
        steps.append(v2.RandomErasing(aug.erasing_p))
    return v2.Compose(steps)


def build_eval_transform(data: DataConfig) -> v2.Compose:
    """Resize the shorter side to ``resize_size``, center crop ``image_size``, to float, normalize."""
    return v2.Compose(
        [
            v2.Resize(data.resize_size, interpolation=_BILINEAR, antialias=True),
            v2.CenterCrop(data.image_size),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(data.mean), list(data.std)),
        ]
    )
