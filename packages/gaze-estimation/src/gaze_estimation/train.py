"""Training: data, model, AdamW + warmup/cosine, the shared Trainer, validation metrics and figures."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from perception_shared.badinput import BadInputPolicy
from perception_shared.distributed import DistContext, gather_by_index
from perception_shared.errors import DataError
from perception_shared.logging import get_logger
from perception_shared.pretrained import WeightsSource, check_against_manifest, load_weights_manifest
from perception_shared.samplers import make_eval_loader, make_train_loader
from perception_shared.seed import seed_everything
from perception_shared.training import FitResult, StepInfo, StepOutput, Trainer

from .config import OptimConfig, TrainConfig, is_random_init, purpose_line
from .data import find_h5_files, participant_id, split_selection
from .figures import history_plot, run_subtitle
from .geometry import angular_error_deg
from .losses import gaze_loss, sequence_loss
from .models import build_model, count_parameters, weights_manifest_path
from .scoring import (
    dataset_for,
    describe_windows,
    draw_predictions,
    evaluate_predictions,
    figure_indices,
    forward_batch,
    frame_dataset,
    predict_loader,
)

_log = get_logger("gaze_estimation.train")


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


def make_step_fn(mse_weight: float, freeze_encoder_epochs: int = 0) -> Callable[[nn.Module, dict[str, torch.Tensor], StepInfo], StepOutput]:
    """The training step: forward, loss, and the batch's mean angular error (per frame) as a device tensor.

    Single frames: ``gaze_loss``. Windows (``valid`` in the batch): ``sequence_loss`` over every valid
    frame; in the first ``freeze_encoder_epochs`` epochs the temporal model's frame encoder is frozen.
    Nothing in it reads a tensor's value on the host (no ``.item()``, ``float()``, ``bool()``), so it
    never stalls a GPU; the Trainer reads the logged values once per ``loop.log_every`` steps.
    """

    def step_fn(m: nn.Module, batch: dict[str, torch.Tensor], info: StepInfo) -> StepOutput:
        if freeze_encoder_epochs:
            getattr(m, "module", m).freeze_encoder(info.epoch < freeze_encoder_epochs)
        pred = forward_batch(m, batch)
        if "valid" not in batch:
            loss = gaze_loss(pred, batch["gaze"], mse_weight)
            with torch.no_grad():
                err = angular_error_deg(pred.detach().float(), batch["gaze"].float()).mean()
            return StepOutput(loss=loss, metrics={"angular_error": err}, n=float(len(pred)))
        valid = batch["valid"]
        loss = sequence_loss(pred, batch["gaze"], valid, mse_weight)
        with torch.no_grad():
            w = valid.float()
            err = (angular_error_deg(pred.detach().float(), batch["gaze"].float()) * w).sum() / w.sum().clamp(min=1.0)
        # weighted by frames of full windows (counting the valid ones would read a value on the host)
        return StepOutput(loss=loss, metrics={"angular_error": err}, n=float(pred.shape[0] * pred.shape[1]))

    return step_fn


def describe_weights(sources: dict[str, WeightsSource]) -> str:
    """One line naming each backbone role's weights (RANDOM INIT spelled out)."""
    return "; ".join(f"{role}: {src.describe()}" for role, src in sources.items())


def weights_record(sources: dict[str, WeightsSource]) -> dict[str, dict[str, Any]]:
    """``{role: {identifier, kind, path, sha256, pretrained}}`` for checkpoints, manifests and reports."""
    return {role: src.to_dict() for role, src in sources.items()}


def check_weights_hashes(sources: dict[str, WeightsSource]) -> list[str]:
    """Warnings for loaded files whose sha256 differs from the package's weights manifest."""
    manifest = load_weights_manifest(weights_manifest_path())
    return [w for w in (check_against_manifest(src, manifest) for src in sources.values()) if w]


def train(
    cfg: TrainConfig,
    *,
    ctx: DistContext,
    run_dir: str | Path,
    resume: bool = False,
    resume_from: str | Path | None = None,
    skip_bad: bool = False,
    argv: Sequence[str] | None = None,
) -> FitResult:
    """Train ``cfg`` in ``run_dir`` (already prepared); returns the Trainer's result.

    Model selection (the best checkpoint, early stopping) uses held-out *training* participants
    (``data.selection_participants``); the validation participants are not looked at here, so that
    ``evaluate`` reports an error that played no part in choosing the model.
    """
    seed_everything(cfg.seed)
    _log.info("config purpose: %s", purpose_line(cfg.purpose))
    policy = BadInputPolicy(skip=skip_bad)
    splits = split_selection(
        find_h5_files(cfg.data.root, cfg.data.train_split, cfg.data.camera), cfg.data.selection_participants, cfg.data.selection_seed
    )
    augment = cfg.augment if cfg.augment.enabled else None
    train_set = dataset_for(cfg, splits.train, training=True, augment=augment, policy=policy)
    select_loaded = dataset_for(cfg, splits.selection, training=False, policy=policy)
    frames, select_set = frame_dataset(train_set), frame_dataset(select_loaded)
    _log.info(
        "data %s: %d training samples (%d participants)%s; model selection on %d samples of held-out training "
        "participants %s; the validation participants (%s*) are not used in training; %s",
        cfg.data.root, len(frames), len(frames.participants), describe_windows(train_set), len(select_set),
        ", ".join(select_set.participants), cfg.data.val_split, policy.summary(),
    )
    model, sources = build_model(cfg.model, window=cfg.data.sequence_length)
    _log.info("model %s: %s parameters; weights: %s", cfg.model.name, f"{count_parameters(model):,}", describe_weights(sources))
    for warning in check_weights_hashes(sources):
        _log.warning("%s", warning)
    pin = ctx.device.type == "cuda"
    # No drop_last: a small data set still trains, and every norm layer sees more than one value per
    # channel even in a last batch of one (BatchNorm2d over >= 4x4 maps, LayerNorm in the ViTs).
    train_loader = make_train_loader(
        train_set, cfg.data.batch_size, seed=cfg.seed, num_workers=cfg.data.num_workers, pin_memory=pin
    )
    select_loader = make_eval_loader(select_loaded, cfg.data.eval_batch_size, num_workers=cfg.data.num_workers, pin_memory=pin)
    steps_per_epoch = len(train_loader)
    if cfg.loop.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.loop.max_steps_per_epoch)
    total = steps_per_epoch * cfg.loop.epochs
    optimizer = make_optimizer(model, cfg.optim)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, min(cfg.optim.warmup_steps, total // 2), cfg.optim.min_lr_ratio))
    train_mean = frames.gaze.mean(axis=0).astype(np.float64)
    trainer: Trainer | None = None

    def eval_fn(m: nn.Module, epoch: int) -> dict[str, float]:
        # The held-out training participants: what selects best_model.pth (logged as val/select_*).
        idx, pred = predict_loader(m, select_loader, ctx.device)
        idx_all, pred_all = gather_by_index(idx, pred)
        idx_all = np.asarray(idx_all)
        summary = evaluate_predictions(select_set, idx_all, pred_all, train_mean)
        loss = float(gaze_loss(torch.as_tensor(pred_all), torch.as_tensor(select_set.gaze[idx_all], dtype=torch.float64), cfg.mse_weight))
        if ctx.is_main and cfg.figure_samples > 0 and trainer is not None and trainer.tracker is not None:
            fig_idx = figure_indices(len(idx_all), cfg.figure_samples)
            sub = run_subtitle(Path(run_dir).name, cfg, f"held-out training participants (model selection), epoch {epoch}")
            fig = draw_predictions(select_set, idx_all[fig_idx], pred_all[fig_idx], sub)
            trainer.tracker.log_figure("val/select_gaze", fig, trainer.global_step)
        return {
            "select_loss": loss,
            "select_angular_error": summary["mean_angular_error_deg"],
            "select_angular_error_median": summary["median_angular_error_deg"],
            "select_mean_predictor_error": summary["mean_predictor_error_deg"],
        }

    # The report participants are recorded (not read) so that evaluate can check it reports on them.
    try:
        report_files = find_h5_files(cfg.data.root, cfg.data.val_split, cfg.data.camera)
    except DataError:
        report_files = []
        _log.warning("no validation split %s/%s*: evaluate the run later with --data", cfg.data.root, cfg.data.val_split)
    roles = (("train", splits.train), ("selection", splits.selection), ("report", report_files))
    trainer = Trainer(
        model=model,
        optimizer=optimizer,
        train_loader=train_loader,
        step_fn=make_step_fn(cfg.mse_weight, cfg.model.freeze_encoder_epochs if cfg.model.is_temporal else 0),
        loop=cfg.loop,
        ctx=ctx,
        run_dir=run_dir,
        config=cfg,
        eval_fn=eval_fn,
        scheduler=scheduler,
        scheduler_interval="step",
        history_plot=history_plot(cfg),
        # a frozen encoder takes no part in the loss, which DDP must be told
        ddp_kwargs={"find_unused_parameters": True} if cfg.model.is_temporal and cfg.model.freeze_encoder_epochs else None,
        extra_state={
            "train_mean_gaze": [float(v) for v in train_mean],
            "train_participants": list(frames.participants),
            "selection_participants": list(select_set.participants),
            "weights": weights_record(sources),
        },
        manifest_info={
            "argv": argv,
            "data_paths": {f"{role}:{participant_id(p)}": p for role, files in roles for p in files},
            "weights": [{**src.to_dict(), "role": role} for role, src in sources.items()],
            "seeds": {"seed": cfg.seed, "selection_seed": cfg.data.selection_seed},
            "extra": {
                "purpose": cfg.purpose,
                "selection_participants": list(select_set.participants),
                "random_init": is_random_init(cfg),
            },
        },
    )
    result = trainer.fit(resume=resume, resume_from=resume_from)
    if result.best_metric is not None:
        _log.info("best %s %.3f deg at epoch %s; run directory %s", cfg.loop.monitor, result.best_metric, result.best_epoch, result.run_dir)
    return result
