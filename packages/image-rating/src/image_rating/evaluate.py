"""Evaluate a trained checkpoint on a split of a rating data set, with bootstrap intervals for r.

Writes, into ``<run_dir>/evaluation_<split>/`` by default:

* ``metrics.json``: ``n_samples``, the checkpoint, the split shown and what it is (``split_note``: held
  out, or also the split that chose the best epoch), backbone, the weights the run started from
  (identifier, source, sha256, or RANDOM INIT), the preprocessing, the means over dimensions and every
  dimension's metrics (see ``report``);
* ``per_dimension_metrics.csv`` / ``.png``; ``predictions.csv`` (observed and predicted mean rating per
  image); ``scatter.png``.

The default is the run's held-out ``test`` split: the best epoch was chosen on ``val``, so val numbers
are optimistic. A run from before image-rating 0.3 has no test split: it is evaluated on val with a
warning (in the log and in ``metrics.json``'s ``warnings``).

On the run's own splits (``test``/``val``/``train``) the data must be those the run was trained on: their hashes
are compared with the run's ``manifest.json`` and a difference is an error unless ``allow_data_mismatch``
(then it is recorded in ``metrics.json``). ``--split all`` on another data set (a held-out test set) is
a new data set on purpose and is not compared.

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
from perception_shared.checkpoint import load_checkpoint, restore_model, uses_pretrained
from perception_shared.cli import resolve_run
from perception_shared.config import config_from_dict
from perception_shared.distributed import DistContext, broadcast_object, gather_by_index, init_distributed
from perception_shared.errors import CheckpointError, UserError
from perception_shared.jsonio import json_ready, write_json
from perception_shared.logging import get_logger, progress
from perception_shared.manifest import check_same_data, describe_data, load_manifest
from perception_shared.samplers import make_eval_loader

from . import __version__
from .config import DataConfig, RatingConfig
from .data import RatingImageDataset, has_test, load_ratings, split_part
from .models import RatingModel, build_model
from .report import (
    TOY_NOTE,
    describe_weights,
    figure_sub,
    per_dimension_metrics,
    plot_per_dimension,
    plot_scatter,
    predictions_frame,
    split_note,
    summary_means,
)
from .scaler import TargetScaler
from .transforms import Preprocessing, build_eval_transform

log = get_logger("image_rating.evaluate")
SPLITS = ("test", "val", "train", "all")


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
    """A model rebuilt from a checkpoint, with what it needs to turn images into ratings."""

    model: RatingModel
    config: RatingConfig
    scaler: TargetScaler
    split: dict[str, list[str]]
    checkpoint: Path
    run_dir: Path
    epoch: int
    preprocessing: Preprocessing
    weights: dict[str, Any]  # the backbone weights the run started from (WeightsSource.to_dict())

    @property
    def toy(self) -> bool:
        return self.config.toy


def load_trained(run: str | Path, device: torch.device | str = "cpu") -> TrainedModel:
    """Rebuild the model of a run directory (its best checkpoint, see ``resolve_run``) or checkpoint file.

    The config, scaler, preprocessing and weights record come from the checkpoint (``weights_only``);
    the backbone is built with pretrained weights only when the checkpoint refers to frozen pretrained
    weights instead of holding them (their sha256 is checked); otherwise the checkpoint holds every weight.
    """
    ref = resolve_run(run)
    path = ref.checkpoint
    state = load_checkpoint(path)
    extra = state.get("extra") or {}
    needed = ("scaler", "preprocessing", "weights")
    if not isinstance(state.get("config"), dict) or "model" not in state or any(k not in extra for k in needed):
        raise CheckpointError(
            f"checkpoint {path} is not an image-rating checkpoint of version 0.2 or later "
            "(no config, model, target scaler, preprocessing or weights record)"
        )
    cfg = config_from_dict(RatingConfig, state["config"], f"the config saved in {path}")
    scaler = TargetScaler.from_dict(extra["scaler"], f"the target scaler saved in {path}")
    pre = Preprocessing.from_dict(extra["preprocessing"])
    model, _ = build_model(cfg.model, len(scaler.dimensions), image_size=pre.image_size, pretrained=uses_pretrained(state))
    restore_model(model, state, path)
    model.to(device).eval()
    if torch.device(device).type == "cuda":
        model.to(memory_format=torch.channels_last)
    split = extra.get("split") or {"train": [], "val": []}
    log.info("model: %s from %s (epoch %s)", cfg.model.backbone, path, state.get("epoch"))
    return TrainedModel(
        model, cfg, scaler, split, path, ref.run_dir, int(state.get("epoch", 0)), pre, dict(extra["weights"])
    )


def check_training_data(trained: TrainedModel, data: DataConfig, allow: bool) -> list[str]:
    """Differences between ``data`` and the data the run's manifest recorded (empty: the same files).

    Raises ``DataMismatchError`` naming them unless ``allow``; a run without a manifest is an error too.
    """
    manifest = load_manifest(trained.run_dir, missing_ok=True)
    current = {"data": {"ratings_csv": describe_data(data.csv_path), "images": describe_data(data.images_path)}}
    return check_same_data({str(trained.run_dir): manifest, "the data evaluated now": current}, allow=allow)


def resolve_split(split: dict[str, list[str]], which: str, source: str) -> tuple[str, str | None]:
    """``(split to evaluate, warning or None)``: ``which``, except ``test`` of a run without one (trained
    before image-rating 0.3), which falls back to ``val`` with a warning that val also chose the best epoch."""
    if which == "all":
        return which, None
    if not split.get("train") and not split.get("val"):
        raise UserError(f"{source} stores no train/val split; use --split all")
    if which == "test" and not has_test(split):
        return "val", (
            f"{source} has no held-out test split (trained before image-rating 0.3): evaluated on its val split, "
            "which also chose the best epoch, so the numbers are optimistic; retrain for a held-out test split, "
            "or evaluate a separate test set with --data DIR --split all"
        )
    return which, None


def evaluate_run(
    run: str | Path,
    *,
    split: str = "test",
    data_root: str | Path | None = None,
    out_dir: str | Path | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    num_workers: int | None = None,
    n_boot: int | None = None,
    skip_bad: bool = False,
    allow_data_mismatch: bool = False,
    ctx: DistContext | None = None,
) -> dict[str, Any]:
    """Evaluate a run (its directory: the best checkpoint; or a checkpoint file) and write the files above.

    ``split``: ``test`` (held out; ``val`` with a warning for runs without one) / ``val`` / ``train`` (the
    split stored in the checkpoint, on the run's data, checked against its manifest) or ``all`` (every valid row of the CSV, e.g. a separate test set given with
    ``data_root``). Returns the metrics dict (on every rank).
    """
    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}; got {split!r}")
    ctx = ctx or init_distributed(device)
    trained = load_trained(run, ctx.device)
    cfg = trained.config
    data = cfg.data if data_root is None else dataclasses.replace(cfg.data, root=Path(data_root))
    differences: list[str] = []
    if split != "all":
        differences = broadcast_object(check_training_data(trained, data, allow_data_mismatch) if ctx.is_main else [])
        for d in differences:
            log.warning("evaluating on other data than the run was trained on (--allow-data-mismatch): %s", d)
    shown, warning = resolve_split(trained.split, split, str(trained.checkpoint))
    if warning:
        log.warning("%s", warning)
    policy = BadInputPolicy(skip=skip_bad)
    table = load_ratings(data, policy, dimensions=list(trained.scaler.dimensions))
    if shown != "all":
        table = split_part(table, trained.split, shown, str(trained.checkpoint))

    pre = trained.preprocessing
    dataset = RatingImageDataset(table.paths, None, build_eval_transform(pre), decode_min_size=pre.resize_size)
    loader = make_eval_loader(
        dataset,
        batch_size or data.eval_batch_size,
        num_workers=data.num_workers if num_workers is None else num_workers,
        pin_memory=ctx.device.type == "cuda",
    )
    idx, z = run_inference(trained.model, loader, ctx.device, desc=f"evaluate {shown}")
    idx, z = gather_by_index(idx, z)
    if len(idx) != len(table):
        raise RuntimeError(f"evaluated {len(idx)} images but the {shown} split has {len(table)}")
    pred = trained.scaler.inverse_transform(z.double().numpy())
    out = Path(out_dir) if out_dir is not None else trained.run_dir / f"evaluation_{shown}"
    boot = cfg.eval.n_boot if n_boot is None else n_boot
    result: dict[str, Any] = {}
    n_val = len(trained.split.get("val", []))
    note = split_note(shown, len(idx), n_val, str(data.csv_path))
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
            "split": shown,
            "requested_split": split,
            "split_note": note,
            "warnings": [warning] if warning else [],
            "checkpoint": str(trained.checkpoint),
            "epoch": trained.epoch,
            "backbone": cfg.model.backbone,
            "weights": describe_weights(trained.weights),
            "weights_record": trained.weights,
            "preprocessing": pre.to_dict(),
            "settings": TOY_NOTE if trained.toy else "research config",
            "selection": f"best epoch by {cfg.loop.monitor} ({cfg.loop.mode}) on the val split (n={n_val})",
            "ratings_csv": str(data.csv_path),
            "images_dir": str(data.images_path),
            "data_differences": differences,
            "skipped_rows": policy.count,
            "bootstrap": {"n_boot": boot, "confidence": cfg.eval.confidence, "method": "percentile, images resampled"},
            "mean_over_dimensions": dict(means),
            "per_dimension": {
                row["dimension"]: {k: v for k, v in row.items() if k != "dimension"} for row in df.to_dict("records")
            },
        }
        result = json_ready(result)  # plain numbers; NaN (r of a constant column) becomes null
        write_json(out / "metrics.json", result)
        df.to_csv(out / "per_dimension_metrics.csv", index=False, float_format="%.6g")
        sub = figure_sub(trained.run_dir.name, trained.toy, trained.weights, note)
        plot_per_dimension(df, out / "per_dimension_metrics.png", f"Per-dimension accuracy on the {shown} images", sub)
        plot_scatter(pred, table.means, table.dimensions, out / "scatter.png", sub=sub)
        predictions_frame(table.names, pred, table.dimensions, table.means).to_csv(
            out / "predictions.csv", index=False, float_format="%.8g"
        )
        log.info(
            "%s: mean over %d dimensions: r %.3f, MAE %.3f, RMSE %.3f; backbone %s%s -> %s",
            note,
            len(table.dimensions),
            means["pearson_r"],
            means["mae"],
            means["rmse"],
            describe_weights(trained.weights),
            f"; {TOY_NOTE}" if trained.toy else "",
            out,
        )
    return broadcast_object(result)
