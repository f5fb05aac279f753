"""Training: data, model, AdamW + warmup/cosine, the shared Trainer, validation metrics and figures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from perception_shared.badinput import BadInputPolicy
from perception_shared.distributed import DistContext, gather_by_index
from perception_shared.logging import get_logger
from perception_shared.samplers import eval_indices, make_eval_loader, make_train_loader
from perception_shared.seed import seed_everything
from perception_shared.training import FitResult, StepInfo, StepOutput, Trainer

from .config import OptimConfig, TrainConfig
from .data import GazeH5Dataset, load_split, to_float
from .figures import gaze_figure
from .geometry import angular_error_deg
from .losses import gaze_loss
from .metrics import mean_predictor_errors, per_sample_errors, summarize_errors
from .models import build_model, count_parameters

_log = get_logger("gaze_estimation.train")


def forward_batch(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Run ``model`` on a collated batch of uint8 crops; ``(B, 2)`` pitch/yaw radians."""
    return model(to_float(batch["face"]), to_float(batch["leye"]), to_float(batch["reye"]))


def make_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW; biases, norms, the class token and embeddings (1-D or named ``*embed*``/``cls``) get no weight decay."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        (no_decay if p.ndim <= 1 or "embed" in leaf or leaf in ("cls", "cls_token") else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float):
    """LR multiplier per optimizer step: linear from 1/warmup to 1, then cosine to ``min_ratio``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


@torch.no_grad()
def predict_loader(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Predictions of this rank's share of ``loader``: ``(indices (M,), pitch/yaw (M, 2) float64)``.

    Follow with ``gather_by_index`` to get every sample over all ranks.
    """
    preds = []
    for batch in loader:
        out = forward_batch(model, {k: batch[k].to(device, non_blocking=True) for k in ("face", "leye", "reye")})
        preds.append(out.float().cpu())
    pred = torch.cat(preds).double().numpy() if preds else np.zeros((0, 2))
    return np.asarray(eval_indices(loader), dtype=np.int64), pred


def evaluate_predictions(dataset: GazeH5Dataset, indices: np.ndarray, pred: np.ndarray, train_mean: np.ndarray | None) -> dict[str, Any]:
    """Metrics of gathered predictions (all samples, dataset order), plus the mean-predictor baseline."""
    target = dataset.gaze[indices].astype(np.float64)
    errors = per_sample_errors(pred, target)
    summary = summarize_errors(errors, dataset.participant_of(indices))
    if train_mean is not None:
        summary["mean_predictor_error_deg"] = float(mean_predictor_errors(train_mean, target).mean())
    return summary


def figure_indices(n: int, k: int) -> np.ndarray:
    """``k`` evenly spread indices of ``n`` samples (the same every epoch)."""
    return np.unique(np.linspace(0, n - 1, num=min(k, n)).round().astype(np.int64))


def draw_predictions(dataset: GazeH5Dataset, indices: np.ndarray, pred: np.ndarray) -> Any:
    """A gaze figure of dataset ``indices`` with ``pred`` ``(K, 2)``; reads the crops from disk."""
    crops = [dataset.read(int(i)) for i in indices]
    dataset.close()  # the main process keeps no handle open across the workers' fork
    titles = [f"{p} #{int(i)}" for p, i in zip(dataset.participant_of(indices), indices)]
    return gaze_figure([c[0] for c in crops], [c[1] for c in crops], [c[2] for c in crops], pred, dataset.gaze[indices], titles)


def train(
    cfg: TrainConfig,
    *,
    ctx: DistContext,
    run_dir: str | Path,
    resume: bool = False,
    resume_from: str | Path | None = None,
    skip_bad: bool = False,
) -> FitResult:
    """Train ``cfg`` in ``run_dir`` (already prepared); returns the Trainer's result."""
    seed_everything(cfg.seed)
    policy = BadInputPolicy(skip=skip_bad)
    train_set = load_split(cfg.data.root, cfg.data.train_split, camera=cfg.data.camera, augment=cfg.augment if cfg.augment.enabled else None, policy=policy)
    val_set = load_split(cfg.data.root, cfg.data.val_split, camera=cfg.data.camera, policy=policy)
    _log.info(
        "data %s: %d training samples (%d participants), %d validation samples (%d participants); %s",
        cfg.data.root, len(train_set), len(train_set.participants), len(val_set), len(val_set.participants), policy.summary(),
    )
    model = build_model(cfg.model)
    loaded = [str(p) for p in (cfg.model.pretrained, cfg.model.pretrained_face, cfg.model.pretrained_eye) if p is not None]
    _log.info(
        "model %s: %s parameters, %s",
        cfg.model.name, f"{count_parameters(model):,}", "weights from " + ", ".join(loaded) if loaded else "random initialization (no pretrained weights)",
    )
    pin = ctx.device.type == "cuda"
    # No drop_last: a small data set still trains, and every norm layer sees more than one value per
    # channel even in a last batch of one (BatchNorm2d over >= 4x4 maps, LayerNorm in the ViTs).
    train_loader = make_train_loader(
        train_set, cfg.data.batch_size, seed=cfg.seed, num_workers=cfg.data.num_workers, pin_memory=pin
    )
    val_loader = make_eval_loader(val_set, cfg.data.eval_batch_size, num_workers=cfg.data.num_workers, pin_memory=pin)
    steps_per_epoch = len(train_loader)
    if cfg.loop.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.loop.max_steps_per_epoch)
    total = steps_per_epoch * cfg.loop.epochs
    optimizer = make_optimizer(model, cfg.optim)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, min(cfg.optim.warmup_steps, total // 2), cfg.optim.min_lr_ratio))
    train_mean = train_set.gaze.mean(axis=0).astype(np.float64)
    trainer: Trainer | None = None

    def step_fn(m: nn.Module, batch: dict[str, torch.Tensor], info: StepInfo) -> StepOutput:
        pred = forward_batch(m, batch)
        loss = gaze_loss(pred, batch["gaze"], cfg.mse_weight)
        with torch.no_grad():
            err = angular_error_deg(pred.detach().float(), batch["gaze"].float()).mean()
        return StepOutput(loss=loss, metrics={"angular_error": err}, n=float(len(pred)))

    def eval_fn(m: nn.Module, epoch: int) -> dict[str, float]:
        idx, pred = predict_loader(m, val_loader, ctx.device)
        idx_all, pred_all = gather_by_index(idx, pred)
        idx_all = np.asarray(idx_all)
        summary = evaluate_predictions(val_set, idx_all, pred_all, train_mean)
        loss = float(gaze_loss(torch.as_tensor(pred_all), torch.as_tensor(val_set.gaze[idx_all], dtype=torch.float64), cfg.mse_weight))
        if ctx.is_main and cfg.figure_samples > 0 and trainer is not None and trainer.tracker is not None:
            fig_idx = figure_indices(len(idx_all), cfg.figure_samples)
            fig = draw_predictions(val_set, idx_all[fig_idx], pred_all[fig_idx])
            trainer.tracker.log_figure("val/gaze", fig, trainer.global_step)
        return {
            "loss": loss,
            "angular_error": summary["mean_angular_error_deg"],
            "angular_error_median": summary["median_angular_error_deg"],
            "mean_predictor_error": summary["mean_predictor_error_deg"],
        }

    trainer = Trainer(
        model=model,
        optimizer=optimizer,
        train_loader=train_loader,
        step_fn=step_fn,
        loop=cfg.loop,
        ctx=ctx,
        run_dir=run_dir,
        config=cfg,
        eval_fn=eval_fn,
        scheduler=scheduler,
        scheduler_interval="step",
        extra_state={"train_mean_gaze": [float(v) for v in train_mean], "train_participants": list(train_set.participants)},
    )
    result = trainer.fit(resume=resume, resume_from=resume_from)
    if result.best_metric is not None:
        _log.info("best %s %.3f deg at epoch %s; run directory %s", cfg.loop.monitor, result.best_metric, result.best_epoch, result.run_dir)
    return result
