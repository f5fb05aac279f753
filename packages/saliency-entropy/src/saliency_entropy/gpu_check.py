"""The saliency-entropy part of ``tools/gpu_check.sh``: the research model and loader at research size.

``build_spec`` returns the research config ``entropy_reg`` as training builds it: DenseNet-201 with
DeepGaze III's three denseblock4 layers (the ``torchvision:DenseNet201_Weights.IMAGENET1K_V1``
architecture, RANDOM INIT: the check never downloads weights), 768x1024 images, the entropy regularizer
on every step with its 16 bias images, the training step ``train.make_step_fn``, Adam as configured,
and a training DataLoader with ``data.num_workers`` (4) over synthetic MIT1003-like data at 1024x768
(raw gaze files, so the loader runs the fixation detector as on the real data) written by
``synthetic.make_synthetic``. The bias images' frozen features are computed before the check (under
the check's autocast), as training computes them once before its first step. On CUDA the batch is the
config's (4); on CPU (the dry run) it is 1 so that the check stays under a minute.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch

from perception_shared.config import load_config, resolve_config_path
from perception_shared.gpu_check import GpuCheckSpec
from perception_shared.samplers import make_train_loader

from .centerbias import fit_center_prior
from .config import TrainConfig
from .data import FixationDataset, collate, normalized_fixations
from .registry import build_model
from .synthetic import DomainSpec, SyntheticSpec, make_synthetic
from .train import build_optimizer, load_mit_records, make_step_fn

CONFIG = "entropy_reg"
CPU_BATCH = 1
SUBJECTS = 3


def build_spec(device: torch.device, workdir: Path, *, steps: int) -> GpuCheckSpec:
    """The spec for ``steps`` training steps (the loader holds enough batches for them and its timing)."""
    cfg = load_config(TrainConfig, resolve_config_path("saliency_entropy", CONFIG), ["model.pretrained=false"])
    cuda = device.type == "cuda"
    batch = cfg.data.batch_size if cuda else CPU_BATCH
    h, w = cfg.data.image_size
    spec = SyntheticSpec(
        seed=0,
        mit_images=batch * (max(steps, 3) + 2),
        cat_per_category=1,
        mit=DomainSpec(w, h, SUBJECTS, 8, 0.6, 0.35, "warm"),
        cat=DomainSpec(256, 144, SUBJECTS, 8, 0.85, 0.05, "cool"),  # not used by the check: minimal
    )
    root = Path(workdir) / "data"
    make_synthetic(root, spec)
    cfg.data.mit_root = str(root / "MIT1003")
    records = load_mit_records(cfg)
    xy, owner = normalized_fixations(records)
    model = build_model(cfg.model, cfg.entropy, pretrained=False)
    model.set_center_prior(fit_center_prior(xy, owner, cfg.center_prior, grid=cfg.model.center_prior_grid).density)
    model.to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    with autocast:
        model.bias_features((h, w), device)
    loader = make_train_loader(
        FixationDataset(records, (h, w), cfg.data.aspect, cfg.model.saliency_map_factor),
        batch,
        seed=cfg.seed,
        num_workers=cfg.data.num_workers,
        collate_fn=collate,
        pin_memory=cuda,
    )
    return GpuCheckSpec(
        name=f"DenseNet-201 DeepGaze readout + entropy regularizer every step ({CONFIG} config, {h}x{w})",
        model=model,
        loader=loader,
        step_fn=make_step_fn(cfg, model),
        batch_size=batch,
        optimizer=lambda params: build_optimizer(cfg, model)[0],
        grad_clip=cfg.loop.grad_clip,
        notes={
            "config": CONFIG,
            "weights": f"{cfg.model.backbone}: RANDOM INIT (the check never downloads)",
            "image_size": [h, w],
            "aspect": cfg.data.aspect,
            "bias_images": cfg.entropy.n_samples,
            "entropy_compute_every": cfg.entropy.compute_every,
            "batch_size": batch,
            "num_workers": cfg.data.num_workers,
            "readout_grid": list(model.readout_size((h, w))),
            "max_bias_entropy_nats": math.log(h * w),
        },
    )
