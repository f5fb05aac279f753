"""Evaluate a trained checkpoint on a split of a rating data set, with bootstrap intervals for r.

Writes, into ``<run_dir>/evaluation_<split>/`` by default:

* ``metrics.json``: ``n_samples``, the checkpoint, split, backbone and weights source, the means over
  dimensions and every dimension's metrics (see ``report``);
* ``per_dimension_metrics.csv`` / ``.png``; ``predictions.csv`` (observed and predicted mean rating per
  image); ``scatter.png``.

Runs under torchrun too: each rank predicts its share (``EvalSampler``), ``gather_by_index`` puts the
predictions in dataset order, and rank 0 computes and writes everything, so each image counts once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from perception_shared.badinput import BadInputPolicy
from perception_shared.checkpoint import BEST, load_checkpoint
from perception_shared.config import config_from_dict
from perception_shared.distributed import DistContext, broadcast_object, gather_by_index, init_distributed
from perception_shared.errors import CheckpointError, UserError
from perception_shared.jsonio import json_ready, write_json
from perception_shared.logging import get_logger, progress
from perception_shared.samplers import make_eval_loader

from . import __version__
from .config import RatingConfig
from .data import RatingImageDataset, RatingsTable, apply_split, load_ratings
from .models import RatingModel, build_model
from .report import per_dimension_metrics, plot_per_dimension, plot_scatter, predictions_frame, summary_means
from .scaler import TargetScaler
from .transforms import build_eval_transform

log = get_logger("image_rating.evaluate")
SPLITS = ("val", "train", "all")


@torch.no_grad()
def run_inference(
    model: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device, desc: str = "predict"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predict every batch of ``loader``: ``(indices (n,), standardized predictions (n, D) float32)`` on CPU.

    Call it with the model in eval mode; the caller chooses autocast.
    """
    indices, preds = [], []
    channels_last = device.type == "cuda"
    for batch in progress(loader, desc=desc, leave=False):
        images = batch["image"].to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        preds.append(model(images).float().cpu())
        indices.append(torch.as_tensor(batch["index"]))
    d = getattr(model, "num_outputs", 0)
    if not preds:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, d)
    return torch.cat(indices), torch.cat(preds)


@dataclass
class TrainedModel:
    """A model rebuilt from a checkpoint, with what it needs to turn outputs into ratings."""

    model: RatingModel
    config: RatingConfig
    scaler: TargetScaler
    split: dict[str, list[str]]
    checkpoint: Path
    epoch: int


def resolve_checkpoint(run_or_checkpoint: str | Path) -> Path:
    """A checkpoint file as given, or a run directory's ``best_model.pth``."""
    p = Path(run_or_checkpoint)
    if p.is_dir():
        p = p / BEST
        if not p.is_file():
            raise CheckpointError(f"run directory {p.parent} has no {BEST} (give --checkpoint to pick another file)")
    return p


def load_trained(checkpoint: str | Path, device: torch.device | str = "cpu") -> TrainedModel:
    """Rebuild the model from the config saved in ``checkpoint`` and load its weights (``weights_only``)."""
    path = resolve_checkpoint(checkpoint)
    state = load_checkpoint(path)
    extra = state.get("extra") or {}
    if not isinstance(state.get("config"), dict) or "scaler" not in extra or "model" not in state:
        raise CheckpointError(
            f"checkpoint {path} is not an image-rating checkpoint (no config, model or target scaler)"
        )
    cfg = config_from_dict(RatingConfig, state["config"], f"the config saved in {path}")
    scaler = TargetScaler.from_dict(extra["scaler"], f"the target scaler saved in {path}")
    model = build_model(
        cfg.model.backbone,
        len(scaler.dimensions),
        None,  # the checkpoint holds every weight; the original weights file is not needed
        hidden=cfg.model.hidden,
        dropout=cfg.model.dropout,
        image_size=cfg.data.image_size,
    )
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path} does not fit backbone {cfg.model.backbone}: {e}") from None
    model.to(device).eval()
    if torch.device(device).type == "cuda":
        model.to(memory_format=torch.channels_last)
    split = extra.get("split") or {"train": [], "val": []}
    log.info("model: %s from %s (epoch %s)", cfg.model.backbone, path, state.get("epoch"))
    return TrainedModel(model, cfg, scaler, split, path, int(state.get("epoch", 0)))


def _select(table: RatingsTable, split: dict[str, list[str]], which: str, source: str) -> RatingsTable:
    if which == "all":
        return table
    if not split.get("train") and not split.get("val"):
        raise UserError(f"{source} stores no train/val split; use --split all")
    train, val = apply_split(table, split, source)
    return train if which == "train" else val


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    split: str = "val",
    data_root: str | Path | None = None,
    out_dir: str | Path | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    num_workers: int | None = None,
    n_boot: int | None = None,
    skip_bad: bool = False,
    ctx: DistContext | None = None,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` (or a run directory's best model) and write the files listed above.

    ``split``: ``val`` / ``train`` (the split stored in the checkpoint) or ``all`` (every valid row of the
    CSV, e.g. a separate test set given with ``data_root``). Returns the metrics dict (on every rank).
    """
    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}; got {split!r}")
    ctx = ctx or init_distributed(device)
    trained = load_trained(checkpoint, ctx.device)
    cfg = trained.config
    data = cfg.data if data_root is None else dataclasses.replace(cfg.data, root=Path(data_root))
    policy = BadInputPolicy(skip=skip_bad)
    table = load_ratings(data, policy, dimensions=list(trained.scaler.dimensions))
    table = _select(table, trained.split, split, str(trained.checkpoint))

    dataset = RatingImageDataset(table.paths, None, build_eval_transform(data), decode_min_size=data.resize_size)
    loader = make_eval_loader(
        dataset,
        batch_size or data.eval_batch_size,
        num_workers=data.num_workers if num_workers is None else num_workers,
        pin_memory=ctx.device.type == "cuda",
    )
    idx, z = run_inference(trained.model, loader, ctx.device, desc=f"evaluate {split}")
    idx, z = gather_by_index(idx, z)
    if len(idx) != len(table):
        raise RuntimeError(f"evaluated {len(idx)} images but the {split} split has {len(table)}")
    pred = trained.scaler.inverse_transform(z.double().numpy())
    out = Path(out_dir) if out_dir is not None else trained.checkpoint.parent / f"evaluation_{split}"
    boot = cfg.eval.n_boot if n_boot is None else n_boot
    result: dict[str, Any] = {}
    if ctx.is_main:
        df = per_dimension_metrics(
            pred,
            table.means,
            table.dimensions,
            rater_sd=table.sds,
            n_raters=data.n_raters,
            n_boot=boot,
            confidence=cfg.eval.confidence,
            seed=cfg.seed,
        )
        means = summary_means(df)
        result = {
            "package": "image-rating",
            "version": __version__,
            "n_samples": int(len(idx)),
            "split": split,
            "checkpoint": str(trained.checkpoint),
            "epoch": trained.epoch,
            "backbone": cfg.model.backbone,
            "weights": cfg.model.pretrained_path or "random initialization",
            "ratings_csv": str(data.csv_path),
            "images_dir": str(data.images_path),
            "skipped_rows": policy.count,
            "bootstrap": {"n_boot": boot, "confidence": cfg.eval.confidence, "method": "percentile, images resampled"},
            "mean_over_dimensions": dict(means),
            "per_dimension": {
                row["dimension"]: {k: v for k, v in row.items() if k != "dimension"}
                for row in df.to_dict("records")
            },
        }
        if split == "val":
            result["note"] = (
                "the val split also chose the best epoch; report a held-out test set (--split all) as final"
            )
        result = json_ready(result)  # plain numbers; NaN (r of a constant column) becomes null
        write_json(out / "metrics.json", result)
        df.to_csv(out / "per_dimension_metrics.csv", index=False, float_format="%.6g")
        title = f"{cfg.model.backbone}, {split} split (n={len(idx)})"
        plot_per_dimension(df, out / "per_dimension_metrics.png", title)
        plot_scatter(pred, table.means, table.dimensions, out / "scatter.png", title)
        predictions_frame(table.names, pred, table.dimensions, table.means).to_csv(
            out / "predictions.csv", index=False, float_format="%.8g"
        )
        log.info(
            "%s split: %d images; mean over %d dimensions: r %.3f, MAE %.3f, RMSE %.3f -> %s",
            split,
            len(idx),
            len(table.dimensions),
            means["pearson_r"],
            means["mae"],
            means["rmse"],
            out,
        )
    return broadcast_object(result)

