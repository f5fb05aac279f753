"""Training: standardized targets, MSE, the shared ``Trainer`` loop, and per-dimension results at the end.

A run directory (``outputs/run_YYYYMMDD_HHMMSS/`` by default) gets, besides what ``Trainer`` writes
(``config.yaml``, checkpoints, ``training_history.csv``/``.png``, ``metrics.csv``, ``tensorboard/``):

* ``split.json``: the train, val and held-out test image names (reused on resume, or by another run via
  ``data.split_file``); val chooses the best epoch, test is what ``evaluate`` reports;
* ``target_scaler.json``: per-dimension mean and sd of the training ratings;
* ``per_dimension_performance.csv`` / ``.png``: Pearson r (bootstrap interval), MAE and RMSE per
  dimension on the val split (which chose the epoch: optimistic), in rating units, for ``best_model.pth``;
  ``val_predictions.csv``; ``training_history.png`` redrawn with the best epoch, the mean predictor's
  MAE and RMSE as reference lines, and the run's status;
* ``manifest.json`` (written by the ``Trainer``): command line, config, versions, git state, the data
  files with their hashes, the backbone weights (identifier, source, sha256), seeds, device, times.

The best epoch and early stopping follow ``loop.monitor``: by default the mean validation Pearson r
over the dimensions (the study's rule; ``val/loss``, the standardized MSE, is the alternative).
The backbone's weights are located before the data are read, so missing weights stop the run at once.
The checkpoints also hold the scaler, the split, the preprocessing and the weights record
(``state["extra"]``), so a checkpoint alone is enough for ``evaluate``, ``predict`` and ``export``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from perception_shared.badinput import BadInputPolicy
from perception_shared.checkpoint import BEST, FINAL, load_checkpoint, restore_model
from perception_shared.distributed import DistContext, gather_by_index, init_distributed
from perception_shared.errors import ConfigError
from perception_shared.logging import get_logger, setup_logging
from perception_shared.metrics import mae, pearson_r, rmse
from perception_shared.pretrained import (
    check_against_manifest,
    load_weights_manifest,
    locate_weights,
)
from perception_shared.runs import prepare_run_dir
from perception_shared.samplers import make_eval_loader, make_train_loader
from perception_shared.seed import seed_everything
from perception_shared.training import StepInfo, StepOutput, Trainer

from . import __version__
from .config import OPTIMIZERS, SCHEDULERS, OptimConfig, RatingConfig, SchedConfig
from .data import (
    SPLIT_JSON,
    SPLIT_PARTS,
    RatingImageDataset,
    RatingsTable,
    apply_split,
    has_test,
    load_ratings,
    load_split,
    make_split,
    save_split,
)
from .evaluate import run_inference
from .models import PACKAGE, WEIGHTS_KEY, RatingModel, build_model, param_groups
from .report import (
    TOY_NOTE,
    describe_weights,
    figure_sub,
    history_plot,
    per_dimension_metrics,
    plot_per_dimension,
    predictions_frame,
    split_note,
)
from .scaler import SCALER_JSON, TargetScaler
from .transforms import build_eval_transform, build_train_transform, resolve_preprocessing

log = get_logger("image_rating.train")
PER_DIMENSION_CSV = "per_dimension_performance.csv"
PER_DIMENSION_PNG = "per_dimension_performance.png"
VAL_PREDICTIONS_CSV = "val_predictions.csv"


def weights_manifest_path() -> Path:
    """The package's manifest of published weights hashes (``weights_manifest.json``)."""
    return Path(str(resources.files("image_rating") / "weights_manifest.json"))


def build_optimizer(cfg: OptimConfig, model: RatingModel) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD (Nesterov momentum) over the backbone and head parameter groups."""
    groups = param_groups(model, cfg.lr, cfg.weight_decay, cfg.backbone_lr_scale)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    raise ConfigError(f"unknown optimizer optim.name={cfg.name!r}; choose one of {', '.join(OPTIMIZERS)}")


def cosine_factor(epoch: int, epochs: int, warmup_epochs: int = 0, min_factor: float = 0.0) -> float:
    """LR multiplier for the epoch after ``epoch`` completed epochs: linear warm-up, then half a cosine
    from 1 down to ``min_factor`` at the last epoch."""
    if epoch < warmup_epochs:
        return (epoch + 1) / (warmup_epochs + 1)
    span = max(epochs - warmup_epochs - 1, 1)
    t = min((epoch - warmup_epochs) / span, 1.0)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_scheduler(
    cfg: SchedConfig, optimizer: torch.optim.Optimizer, epochs: int, mode: str = "min"
) -> tuple[Any, str]:
    """``(scheduler or None, interval)`` for ``Trainer``: per-epoch cosine / step, or plateau on the monitor."""
    if cfg.name == "cosine":
        factor = lambda e: cosine_factor(e, epochs, cfg.warmup_epochs, cfg.min_lr_factor)  # noqa: E731
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "epoch"
    if cfg.name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, cfg.step_size, cfg.gamma), "epoch"
    if cfg.name == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, factor=cfg.plateau_factor, patience=cfg.plateau_patience
        )
        return sched, "plateau"
    if cfg.name == "none":
        return None, "epoch"
    raise ConfigError(f"unknown scheduler sched.name={cfg.name!r}; choose one of {', '.join(SCHEDULERS)}")


@dataclass
class TrainResult:
    run_dir: Path
    epochs_completed: int
    best_epoch: int | None
    best_metric: float | None  # of loop.monitor
    stopped_early: bool
    per_dimension: pd.DataFrame
    outputs: dict[str, Path] = field(default_factory=dict)


def _resolve_split(cfg: RatingConfig, table: RatingsTable, run_dir: Path, ctx: DistContext) -> dict[str, Any]:
    """The split of this run: data.split_file, else the run's own split.json (resume), else a new one."""
    if cfg.data.split_file:
        split = load_split(cfg.data.split_file)
        log.info("split: reusing %s", cfg.data.split_file)
    elif (run_dir / SPLIT_JSON).is_file():
        split = load_split(run_dir / SPLIT_JSON)
        log.info("split: reusing %s", run_dir / SPLIT_JSON)
    else:
        split = make_split(table.names, cfg.data.val_fraction, cfg.data.split_seed, cfg.data.test_fraction)
        log.info(
            "split: new seeded split (seed %d, val fraction %.2f, test fraction %.2f)",
            cfg.data.split_seed,
            cfg.data.val_fraction,
            cfg.data.test_fraction,
        )
    if not has_test(split):
        log.warning("split: no held-out test part; evaluate will report on val, which also chooses the best epoch")
    if ctx.is_main:
        save_split(split, run_dir / SPLIT_JSON)
    return split


def train(
    cfg: RatingConfig,
    *,
    output_dir: str | Path = "outputs",
    run_dir: str | Path | None = None,
    resume: bool = False,
    resume_from: str | Path | None = None,
    device: str = "auto",
    skip_bad: bool = False,
    ctx: DistContext | None = None,
    argv: list[str] | None = None,
) -> TrainResult:
    """Train a rating model with ``cfg`` (see the module docstring for what the run directory holds).

    ``argv``: the command line to record in ``manifest.json`` (default: this process's).
    """
    ctx = ctx or init_distributed(device)
    run = prepare_run_dir(output_dir, run_dir)
    setup_logging(run)
    seed_everything(cfg.seed)
    log.info(
        "image-rating %s: run directory %s, device %s, %d process(es)", __version__, run, ctx.device, ctx.world_size
    )
    if cfg.toy:
        log.warning(
            "%s: tiny model, random initialization and few epochs; the numbers check the pipeline only", TOY_NOTE
        )

    pre, overrides = resolve_preprocessing(cfg.model, cfg.data)
    for line in overrides:  # only pretrained weights have statistics that the inputs should match
        log.log(
            logging.WARNING if cfg.model.pretrained else logging.INFO,
            "preprocessing differs from the weights' pretrained config: %s",
            line,
        )
    # The resolved values go into the saved config, so config.yaml says what the run used.
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(
            cfg.data,
            image_size=pre.image_size,
            resize_size=pre.resize_size,
            interpolation=pre.interpolation,  # type: ignore[arg-type]
            mean=pre.mean,
            std=pre.std,
        ),
    )
    log.info(
        "preprocessing (%s): resize %d (%s), crop %d, mean %s, std %s",
        pre.source,
        pre.resize_size,
        pre.interpolation,
        pre.image_size,
        list(pre.mean),
        list(pre.std),
    )

    if cfg.model.pretrained:  # before the data: missing weights must stop the run before minutes of image checks
        locate_weights(cfg.model.backbone, cfg.model.weights_file, package=PACKAGE, config_key=WEIGHTS_KEY)

    policy = BadInputPolicy(skip=skip_bad)
    table = load_ratings(cfg.data, policy)
    if policy.count:
        log.warning("%s", policy.summary())
    model, weights = build_model(cfg.model, len(table.dimensions), image_size=pre.image_size)
    log.info("backbone weights: %s", describe_weights(weights))
    mismatch = check_against_manifest(weights, load_weights_manifest(weights_manifest_path()))
    if mismatch:
        log.warning("backbone weights: %s", mismatch)
    split = _resolve_split(cfg, table, run, ctx)
    train_table, val_table = apply_split(table, split, "the split")
    scaler_path = run / SCALER_JSON
    if (resume or resume_from is not None) and scaler_path.is_file():
        scaler = TargetScaler.load(scaler_path)
    else:
        scaler = TargetScaler.fit(train_table.means, table.dimensions)
    if list(scaler.dimensions) != table.dimensions:
        raise ConfigError(f"{scaler_path} has dimensions {list(scaler.dimensions)}, the CSV {table.dimensions}")
    if ctx.is_main:
        scaler.save(scaler_path)
    log.info(
        "%d dimensions (%s); %d training, %d validation (best epoch) and %d held-out test images",
        len(table.dimensions),
        ", ".join(table.dimensions),
        len(train_table),
        len(val_table),
        len(split.get("test", [])),
    )

    data = cfg.data
    train_ds = RatingImageDataset(
        train_table.paths,
        scaler.transform(train_table.means),
        build_train_transform(pre, cfg.augment),
        decode_min_size=pre.resize_size,
    )
    val_ds = RatingImageDataset(val_table.paths, None, build_eval_transform(pre), decode_min_size=pre.resize_size)
    pin = ctx.device.type == "cuda"
    train_loader = make_train_loader(
        train_ds, data.batch_size, seed=cfg.seed, num_workers=data.num_workers, drop_last=data.drop_last, pin_memory=pin
    )
    if len(train_loader) == 0:
        fits = max(len(train_ds) // ctx.world_size, 1)
        raise ConfigError(
            f"the training split has {len(train_ds)} images, fewer than data.batch_size {data.batch_size} x "
            f"{ctx.world_size} process(es) with data.drop_last; use --set data.batch_size={fits} (or "
            "--set data.drop_last=false), or --config demo for a toy run on a small data set"
        )
    val_loader = make_eval_loader(val_ds, data.eval_batch_size, num_workers=data.num_workers, pin_memory=pin)
    val_z = scaler.transform(val_table.means)
    # The training means as the prediction for every image: the floor a model must beat (constant per run)
    mean_pred = np.broadcast_to(scaler.inverse_transform(np.zeros((1, len(table.dimensions)))), val_table.means.shape)
    baseline = {
        "mean_predictor_mae": float(np.mean(mae(mean_pred, val_table.means))),
        "mean_predictor_rmse": float(np.mean(rmse(mean_pred, val_table.means))),
    }

    channels_last = ctx.device.type == "cuda"  # faster convolutions under autocast on GPUs
    if channels_last:
        model.to(memory_format=torch.channels_last)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model: %s backbone + head %s, %.1fM parameters", cfg.model.backbone, cfg.model.hidden, n_params / 1e6)
    log.info(
        "best epoch and early stopping: %s (%s), patience %s",
        cfg.loop.monitor,
        cfg.loop.mode,
        cfg.loop.early_stopping_patience,
    )
    optimizer = build_optimizer(cfg.optim, model)
    scheduler, interval = build_scheduler(cfg.sched, optimizer, cfg.loop.epochs, cfg.loop.mode)
    step_fn = make_step_fn(channels_last)

    def val_predictions(net: torch.nn.Module) -> np.ndarray:
        idx, z = run_inference(net, val_loader, ctx.device, desc="validate")
        idx, z = gather_by_index(idx, z)
        if len(idx) != len(val_ds):
            raise RuntimeError(f"validation saw {len(idx)} of {len(val_ds)} images")
        return z.double().numpy()

    def eval_fn(net: torch.nn.Module, epoch: int) -> dict[str, float]:
        z = val_predictions(net)
        pred = scaler.inverse_transform(z)
        r = pearson_r(pred, val_table.means)
        return {
            "loss": float(((z - val_z) ** 2).mean()),  # standardized MSE, the training objective
            "pearson_r": float(np.nanmean(r)) if np.isfinite(r).any() else float("nan"),
            "mae": float(np.mean(mae(pred, val_table.means))),
            "rmse": float(np.mean(rmse(pred, val_table.means))),
            **baseline,
        }

    extra = {
        "package": "image-rating",
        "version": __version__,
        "dimensions": list(table.dimensions),
        "scaler": scaler.to_dict(),
        "split": {k: list(split[k]) for k in SPLIT_PARTS if k in split},
        "preprocessing": pre.to_dict(),
        "weights": weights.to_dict(),
        "toy": cfg.toy,
    }
    manifest_info = {
        "argv": argv,
        "data_paths": {"ratings_csv": data.csv_path, "images": data.images_path},
        "weights": [weights],
        "seeds": {"seed": cfg.seed, "split_seed": data.split_seed},
        "extra": {"preprocessing": pre.to_dict(), "toy_settings": cfg.toy},
    }
    trainer = Trainer(
        history_plot=history_plot(cfg.toy, weights),
        model=model,
        optimizer=optimizer,
        train_loader=train_loader,
        step_fn=step_fn,
        loop=cfg.loop,
        ctx=ctx,
        run_dir=run,
        config=cfg,
        eval_fn=eval_fn,
        scheduler=scheduler,
        scheduler_interval=interval,
        extra_state=extra,
        manifest_info=manifest_info,
    )
    fit = trainer.fit(resume=resume, resume_from=resume_from)

    chosen = run / BEST if (run / BEST).is_file() else run / FINAL
    restore_model(model, load_checkpoint(chosen), chosen)
    model.to(ctx.device).eval()
    with torch.no_grad(), trainer.precision.autocast():
        pred = scaler.inverse_transform(val_predictions(model))
    outputs = {
        "run_dir": run,
        "best_model": run / BEST,
        "split": run / SPLIT_JSON,
        "target_scaler": scaler_path,
        "per_dimension_csv": run / PER_DIMENSION_CSV,
        "per_dimension_png": run / PER_DIMENSION_PNG,
        "val_predictions": run / VAL_PREDICTIONS_CSV,
    }
    df = per_dimension_metrics(
        pred,
        val_table.means,
        table.dimensions,
        rater_sd=val_table.sds,
        n_raters=data.n_raters,
        n_boot=cfg.eval.n_boot,
        confidence=cfg.eval.confidence,
        seed=cfg.seed,
    )
    if ctx.is_main:
        df.to_csv(outputs["per_dimension_csv"], index=False, float_format="%.6g")
        note = split_note("val", len(val_table))
        sub = figure_sub(run.name, cfg.toy, weights, f"{note}; {chosen.name} (epoch {fit.best_epoch})")
        plot_per_dimension(df, outputs["per_dimension_png"], "Per-dimension accuracy on the val images", sub)
        trainer.log_images({"val/per_dimension_performance": outputs["per_dimension_png"]})
        predictions_frame(val_table.names, pred, table.dimensions, val_table.means).to_csv(
            outputs["val_predictions"], index=False, float_format="%.8g"
        )
    r = df["pearson_r"].to_numpy()
    log.info(
        "done after %d epoch(s)%s; %s (epoch %s, best %s %.4g) on val, which chose the epoch (optimistic): mean r "
        "%.3f (min %.3f, max %.3f); backbone %s%s; %s; held-out numbers: image-rating evaluate RUN (test split)",
        fit.epochs_completed,
        " (early stop)" if fit.stopped_early else "",
        chosen.name,
        fit.best_epoch,
        cfg.loop.monitor,
        fit.best_metric if fit.best_metric is not None else float("nan"),
        float(np.nanmean(r)),
        float(np.nanmin(r)),
        float(np.nanmax(r)),
        describe_weights(weights),
        f"; {TOY_NOTE}" if cfg.toy else "",
        outputs["per_dimension_csv"],
    )
    return TrainResult(run, fit.epochs_completed, fit.best_epoch, fit.best_metric, fit.stopped_early, df, outputs)


def make_step_fn(channels_last: bool) -> Callable[[torch.nn.Module, dict[str, Any], StepInfo], StepOutput]:
    """The training step: MSE of the standardized predictions. It reads nothing back to the host (the
    loss stays a device tensor; ``n`` is the batch length, known on the host), so a GPU never waits."""

    def step_fn(net: torch.nn.Module, batch: dict[str, Any], info: StepInfo) -> StepOutput:
        images = batch["image"]
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        pred = net(images)
        loss = F.mse_loss(pred.float(), batch["target"])
        return StepOutput(loss=loss, n=float(len(images)))

    return step_fn
