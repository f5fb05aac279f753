"""The sparse-video-loss part of ``tools/gpu_check.sh``: the study's model and loader at the study's size.

``build_spec`` returns the ``phase1`` config as ``train`` builds it: SimVP-gSTA with hid_S 64, hid_T 256,
N_S 4, N_T 8 on 10 x 1 x 32 x 32 inputs (18.6M parameters, random init: SimVP is trained from scratch
in the study, nothing is downloaded), the package's own training step (``train.step_fn``) with the
composite loss of the config, Adam with the config's settings, clipping at ``loop.grad_clip``, and the
training DataLoader with the config's batch (8) and ``data.num_workers`` (2) over synthetic sequences
written in the study's original format (``train_data.pt``, ...) by ``synthetic.make_synthetic`` and read
back through the original loader, as a real run reads them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from perception_shared.config import load_config, resolve_config_path
from perception_shared.gpu_check import GpuCheckSpec
from perception_shared.samplers import make_train_loader

from .config import PACKAGE, TrainConfig
from .models import count_parameters
from .synthetic import make_synthetic
from .train import build_loss, build_model, init_weights, load_split, step_fn

CONFIG = "phase1"


def build_spec(device: torch.device, workdir: Path, *, steps: int) -> GpuCheckSpec:
    """The spec for ``steps`` training steps (the synthetic set holds enough batches for them and the loader's timing)."""
    cfg = load_config(TrainConfig, resolve_config_path(PACKAGE, CONFIG), [f"data.root={Path(workdir) / 'data'}"])
    batch = cfg.data.batch_size
    n_train = batch * (max(steps, 3) + 3)
    make_synthetic(cfg.data.root, n_train=n_train, n_val=2, n_test=2, frames=cfg.data.n_input + cfg.data.n_output,
                   size=cfg.data.original.size, seed=cfg.seed, original=cfg.data.original)
    dataset = load_split(cfg, "train")
    loader = make_train_loader(dataset, batch, seed=cfg.seed, num_workers=cfg.data.num_workers, drop_last=True,
                               pin_memory=device.type == "cuda")
    model = build_model(cfg.model, (cfg.data.n_input, 1, dataset.size, dataset.size))
    source = init_weights(model, cfg.model)
    return GpuCheckSpec(
        name=f"SimVP-{cfg.model.model_type} ({CONFIG} config, 10 x 1 x 32 x 32)",
        model=model,
        loader=loader,
        step_fn=step_fn(build_loss(cfg.loss), cfg.perf),
        batch_size=batch,
        optimizer=lambda params: torch.optim.Adam(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay),
        grad_clip=cfg.loop.grad_clip,
        notes={
            "config": CONFIG,
            "parameters": count_parameters(model),
            "weights": source.describe(),
            "batch_size": batch,
            "num_workers": cfg.data.num_workers,
            "synthetic_sequences": len(dataset),
            "loss": cfg.loss.name,
        },
    )
