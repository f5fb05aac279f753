"""The gaze-estimation part of ``tools/gpu_check.sh``: the research model and loader at research size.

``build_spec`` returns the research config ``eve_lite`` as training builds it: ``GazeTRLite`` (three
ResNet-18 branches, face at 224 px and each eye at 112 px, and the 4-layer token fusion: 35.6M
parameters; RANDOM INIT, the check never downloads weights), the training step ``train.make_step_fn``,
AdamW with the config's parameter groups, gradient clipping at ``loop.grad_clip``, and the training
DataLoader with the config's augmentation and ``data.num_workers`` (8) over synthetic participants in
the training format (research-size crops: 224 and 112 px) rendered by ``synthetic.make_synthetic``.
On CUDA the batch is the config's (64 per GPU); on CPU (the dry run) it is 4, so that the check stays
well under a minute. ``gazetr_hybrid`` (109M) is not checked here: ``eve_lite`` is the configuration the
package's results are planned on.

``build_temporal_spec`` does the same for ``eve_temporal``: ``gazetr_temporal`` (GazeTRLite on every frame
and a causal GRU; RANDOM INIT) on windows of 16 frames from ``make-synthetic --sequences`` participants,
the config's batch of 16 windows (256 frames through the encoder) on CUDA and 1 window on CPU; the
loader's windows/s against the model's is the check that the sequence loader keeps up.
``SPEC_BUILDERS`` names both for ``tools/gpu_check.py``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from perception_shared.config import load_config, resolve_config_path
from perception_shared.gpu_check import GpuCheckSpec
from perception_shared.samplers import make_train_loader

from .config import TrainConfig
from .data import find_h5_files, load_split
from .models import build_model, count_parameters
from .scoring import dataset_for
from .synthetic import make_synthetic
from .synthetic_sequences import make_synthetic_sequences
from .train import make_optimizer, make_step_fn

CONFIG = "eve_lite"
TEMPORAL_CONFIG = "eve_temporal"
CPU_BATCH = 4
CPU_WINDOWS = 1


def _spec(name: str, config: str, cfg: TrainConfig, model: torch.nn.Module, sources: dict, loader: DataLoader, batch: int, **notes: object) -> GpuCheckSpec:
    """The check of ``model`` as ``config`` trains it: its step, AdamW groups, clipping; RANDOM INIT in the notes."""
    return GpuCheckSpec(
        name=name,
        model=model,
        loader=loader,
        step_fn=make_step_fn(cfg.mse_weight),
        batch_size=batch,
        optimizer=lambda params: make_optimizer(model, cfg.optim),
        grad_clip=cfg.loop.grad_clip,
        notes={
            "config": config,
            "parameters": count_parameters(model),
            "weights": {role: f"{src.identifier}: RANDOM INIT (the check never downloads)" for role, src in sources.items()},
            "num_workers": cfg.data.num_workers,
            **notes,
        },
    )


def build_spec(device: torch.device, workdir: Path, *, steps: int) -> GpuCheckSpec:
    """The spec for ``steps`` training steps (the loader holds enough batches for them and its timing)."""
    cfg = load_config(TrainConfig, resolve_config_path("gaze_estimation", CONFIG), [])
    cuda = device.type == "cuda"
    batch = cfg.data.batch_size if cuda else CPU_BATCH
    per_participant = -(-batch * (max(steps, 3) + 2) // 2)  # two participants hold the batches needed
    root = Path(workdir) / "data"
    make_synthetic(root, train_participants=2, val_participants=0, samples_per_participant=per_participant, seed=cfg.seed)
    dataset = load_split(root, cfg.data.train_split, camera="basler", augment=cfg.augment if cfg.augment.enabled else None)
    loader = make_train_loader(dataset, batch, seed=cfg.seed, num_workers=cfg.data.num_workers, drop_last=True, pin_memory=cuda)
    model, sources = build_model(dataclasses.replace(cfg.model, pretrained=False))
    return _spec(
        f"{cfg.model.name} ({CONFIG} config, face 224 px, eyes 112 px)", CONFIG, cfg, model, sources, loader, batch,
        batch_size=batch, synthetic_samples=len(dataset),
    )


def build_temporal_spec(device: torch.device, workdir: Path, *, steps: int) -> GpuCheckSpec:
    """The spec of ``eve_temporal`` for ``steps`` training steps (batches of windows of 16 frames)."""
    cfg = load_config(TrainConfig, resolve_config_path("gaze_estimation", TEMPORAL_CONFIG), [])
    cuda = device.type == "cuda"
    batch = cfg.data.batch_size if cuda else CPU_WINDOWS
    t, stride = cfg.data.sequence_length, cfg.data.window_stride
    windows = batch * (max(steps, 3) + 2)  # the batches the loader's timing and the steps need
    frames_per_step = t + stride * (-(-windows // 2) - 1)  # two participants of one step hold them
    root = Path(workdir) / "data"
    make_synthetic_sequences(root, train_participants=2, val_participants=0, steps=1, frames_per_step=frames_per_step, seed=cfg.seed)
    files = find_h5_files(root, cfg.data.train_split)
    dataset = dataset_for(cfg, files, training=True, augment=cfg.augment if cfg.augment.enabled else None)
    loader = make_train_loader(dataset, batch, seed=cfg.seed, num_workers=cfg.data.num_workers, drop_last=True, pin_memory=cuda)
    model, sources = build_model(dataclasses.replace(cfg.model, pretrained=False), window=t)
    return _spec(
        f"{cfg.model.name} ({TEMPORAL_CONFIG} config, windows of {t} frames: face 224 px, eyes 112 px)", TEMPORAL_CONFIG, cfg,
        model, sources, loader, batch, batch_size=f"{batch} windows x {t} frames", synthetic_windows=len(dataset),
        samples="throughputs count windows",
    )


SPEC_BUILDERS = {"gazetr_lite": build_spec, "gazetr_temporal": build_temporal_spec}
