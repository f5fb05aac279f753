"""The image-rating part of ``tools/gpu_check.sh``: the baseline config's model and loader at research size.

``build_spec`` returns the research config ``baseline`` as training builds it: the ResNet-50 backbone
(``resnet50.a1_in1k`` architecture, RANDOM INIT: the check never downloads weights) with the rating head
at the weights' input size (224 px crops of images resized to 235 px, bicubic), the training step
``train.make_step_fn``, AdamW as configured, gradient clipping at ``loop.grad_clip``, and a training
DataLoader with the config's augmentation and ``data.num_workers`` (8) over synthetic 256 px images written
by ``synthetic.make_synthetic``. On CUDA the batch is the config's (32) and channels-last as in training;
on CPU (the dry run) the batch is 4 so that the check stays under a minute.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from perception_shared.config import load_config, resolve_config_path
from perception_shared.gpu_check import GpuCheckSpec
from perception_shared.samplers import make_train_loader

from .config import RatingConfig
from .data import RatingImageDataset, load_ratings
from .models import build_model
from .scaler import TargetScaler
from .synthetic import make_synthetic
from .train import build_optimizer, make_step_fn
from .transforms import build_train_transform, resolve_preprocessing

CONFIG = "baseline"
IMAGE_SIDE = 256  # synthetic image side, pixels: above the 235 px resize, as photos are
CPU_BATCH = 4


def build_spec(device: torch.device, workdir: Path, *, steps: int) -> GpuCheckSpec:
    """The spec for ``steps`` training steps (the loader holds enough batches for them and its timing)."""
    cfg = load_config(RatingConfig, resolve_config_path("image_rating", CONFIG), [])
    cuda = device.type == "cuda"
    batch = cfg.data.batch_size if cuda else CPU_BATCH
    n_images = batch * (max(steps, 3) + 2)
    syn = make_synthetic(Path(workdir) / "data", n_images=n_images, size=IMAGE_SIDE, seed=0)
    data = dataclasses.replace(cfg.data, root=syn.root)
    pre, _ = resolve_preprocessing(cfg.model, data)
    table = load_ratings(data)
    scaler = TargetScaler.fit(table.means, table.dimensions)
    dataset = RatingImageDataset(
        table.paths, scaler.transform(table.means), build_train_transform(pre, cfg.augment), pre.resize_size
    )
    loader = make_train_loader(
        dataset, batch, seed=cfg.seed, num_workers=data.num_workers, drop_last=True, pin_memory=cuda
    )
    model, weights = build_model(cfg.model, len(table.dimensions), image_size=pre.image_size, pretrained=False)
    if cuda:
        model.to(memory_format=torch.channels_last)
    return GpuCheckSpec(
        name=f"{cfg.model.backbone} + rating head ({CONFIG} config, {pre.image_size} px)",
        model=model,
        loader=loader,
        step_fn=make_step_fn(channels_last=cuda),
        batch_size=batch,
        # the configured optimizer over the model's parameter groups (the same trainable parameters)
        optimizer=lambda params: build_optimizer(cfg.optim, model),
        grad_clip=cfg.loop.grad_clip,
        notes={
            "config": CONFIG,
            "weights": f"{weights.identifier}: RANDOM INIT (the check never downloads)",
            "image_size": pre.image_size,
            "resize_size": pre.resize_size,
            "synthetic_image_side": IMAGE_SIDE,
            "batch_size": batch,
            "num_workers": data.num_workers,
        },
    )
