"""Training SimVP on sparse frames with one of the losses: model, data, step and validation for ``Trainer``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from perception_shared.badinput import BadInputPolicy
from perception_shared.distributed import DistContext, all_reduce_sum
from perception_shared.errors import ConfigError, DataError
from perception_shared.logging import get_logger
from perception_shared.samplers import make_eval_loader, make_train_loader
from perception_shared.seed import seed_everything
from perception_shared.training import FitResult, StepInfo, StepOutput, Trainer

from . import __version__
from .config import LossConfig, ModelConfig, TrainConfig
from .data import SparseVideoDataset, split_path
from .losses import SparseLoss, get_loss_function
from .models import SimVP, count_parameters

log = get_logger("sparse_video_loss.train")


def build_model(cfg: ModelConfig, in_shape: tuple[int, int, int, int]) -> SimVP:
    """SimVP from the ``model`` section and the data's ``(T, C, H, W)``; bad settings are a ConfigError."""
    try:
        return SimVP(
            in_shape,
            cfg.hid_S,
            cfg.hid_T,
            cfg.N_S,
            cfg.N_T,
            cfg.model_type,
            mlp_ratio=cfg.mlp_ratio,
            drop_path=cfg.drop_path,
            prior_prob=cfg.prior_prob,
        )
    except ValueError as e:
        raise ConfigError(f"model section: {e}") from None


def build_loss(cfg: LossConfig) -> SparseLoss:
    """The loss named in the ``loss`` section; an unknown name or keyword is a ConfigError listing valid ones."""
    try:
        return get_loss_function(cfg.name, **cfg.kwargs)
    except ValueError as e:
        raise ConfigError(f"loss section (loss.name / loss.kwargs): {e}") from None


def load_split(cfg: TrainConfig, split: str, policy: BadInputPolicy | None = None, root: str | Path | None = None) -> SparseVideoDataset:
    path = split_path(root if root is not None else cfg.data.root, split)
    return SparseVideoDataset(path, cfg.data.n_input, cfg.data.n_output, policy)


def check_same_size(datasets: list[SparseVideoDataset]) -> int:
    sizes = {d.size for d in datasets}
    if len(sizes) != 1:
        listed = ", ".join(f"{d.path} has size {d.size}" for d in datasets)
        raise DataError(f"the splits must share one grid size: {listed}")
    return sizes.pop()


def step_fn(loss_fn: SparseLoss) -> Callable[[nn.Module, Any, StepInfo], StepOutput]:
    def step(model: nn.Module, batch: dict[str, torch.Tensor], info: StepInfo) -> StepOutput:
        logits = model(batch["inputs"])
        loss = loss_fn(logits, batch["targets"], batch["target_mask"])
        return StepOutput(loss, n=float(len(batch["inputs"])))

    return step


@torch.no_grad()
def validate(model: nn.Module, loader: DataLoader, loss_fn: SparseLoss, device: torch.device) -> dict[str, float]:
    """Validation loss and pixel precision/recall/F1 at 0.5 and localization error, exact over all ranks.

    Sums (not means) are reduced, so every sample counts once whatever its rank or batch.
    """
    sums = torch.zeros(7, dtype=torch.float64)  # loss*n, n, tp, fp, fn, sum of loc errors, frames
    for batch in loader:
        inputs, targets = batch["inputs"].to(device), batch["targets"].to(device)
        mask = batch["target_mask"].to(device)
        logits = model(inputs)
        n = len(inputs)
        sums[0] += float(loss_fn(logits, targets, mask)) * n
        sums[1] += n
        pred = logits[:, :, 0] >= 0  # sigmoid(logits) >= 0.5
        true = targets[:, :, 0].bool()
        m = mask[:, :, None, None]
        sums[2] += float((pred & true & m).sum())
        sums[3] += float((pred & ~true & m).sum())
        sums[4] += float((~pred & true & m).sum())
        B, T, _, H, W = logits.shape
        flat = logits[:, :, 0].reshape(B, T, H * W).argmax(-1)
        am = torch.stack([flat // W, flat % W], dim=-1).cpu()
        err = ((am - batch["target_pixels"]).double() ** 2).sum(-1).sqrt()
        valid = batch["target_mask"]
        sums[5] += float(err[valid].sum())
        sums[6] += float(valid.sum())
    s = all_reduce_sum(sums).tolist()
    tp, fp, fn = s[2], s[3], s[4]
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "loss": s[0] / s[1] if s[1] else float("nan"),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "loc_error_px": s[5] / s[6] if s[6] else float("nan"),
    }


def train(
    cfg: TrainConfig,
    *,
    run_dir: str | Path,
    ctx: DistContext,
    resume: bool = False,
    resume_from: str | Path | None = None,
    skip_bad: bool = False,
) -> FitResult:
    """Train SimVP with ``cfg`` into ``run_dir`` (checkpoints, logs, history); returns the Trainer's result."""
    policy = BadInputPolicy(skip=skip_bad)
    loss_fn = build_loss(cfg.loss)
    train_ds = load_split(cfg, "train", policy)
    val_ds = load_split(cfg, "val", policy)
    size = check_same_size([train_ds, val_ds])
    if policy.count:
        log.warning("data: %s", policy.summary())
    in_shape = (cfg.data.n_input, 1, size, size)
    seed_everything(cfg.seed)
    model = build_model(cfg.model, in_shape)
    valid = float(train_ds.masks.float().mean())
    log.info(
        "SimVP %s: %d parameters, random initialisation (no pretrained weights); loss %r; %d train / %d val "
        "sequences of %dx%d frames, %.1f%% of frames with a point, %.3f%% of pixels active",
        cfg.model.model_type,
        count_parameters(model),
        loss_fn,
        len(train_ds),
        len(val_ds),
        size,
        size,
        100 * valid,
        100 * valid / size**2,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=cfg.optim.plateau_factor, patience=cfg.optim.plateau_patience, min_lr=cfg.optim.min_lr
    )
    train_loader = make_train_loader(train_ds, cfg.data.batch_size, seed=cfg.seed, num_workers=cfg.data.num_workers)
    val_loader = make_eval_loader(val_ds, cfg.data.eval_batch_size, num_workers=cfg.data.num_workers)

    def eval_fn(m: nn.Module, epoch: int) -> dict[str, float]:
        return validate(m, val_loader, loss_fn, ctx.device)

    trainer = Trainer(
        model=model,
        optimizer=optimizer,
        train_loader=train_loader,
        step_fn=step_fn(loss_fn),
        eval_fn=eval_fn,
        loop=cfg.loop,
        ctx=ctx,
        run_dir=run_dir,
        config=cfg,
        scheduler=scheduler,
        scheduler_interval="plateau",
        extra_state={"in_shape": list(in_shape), "package_version": __version__},
    )
    return trainer.fit(resume=resume, resume_from=resume_from)
