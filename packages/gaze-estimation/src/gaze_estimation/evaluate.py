"""Evaluation of a checkpoint: metrics JSON, per-participant and per-sample CSV, figures.

Outputs (written by rank 0 into ``out_dir``):

* ``metrics.json``: ``n_samples``, mean / median / std angular error (deg), the mean of the
  per-participant means, the mean-predictor baseline (the training set's mean gaze, from the
  checkpoint), per-participant mean and median, and where the numbers came from;
* ``per_participant.csv``: ``participant,n_samples,mean_deg,median_deg``;
* ``predictions.csv``: ``index,participant,file,row,pitch,yaw,true_pitch,true_yaw,error_deg`` (radians);
* ``per_participant.png`` and ``gaze_examples.png``.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perception_shared.badinput import BadInputPolicy
from perception_shared.checkpoint import load_checkpoint
from perception_shared.config import config_from_dict
from perception_shared.distributed import DistContext, gather_by_index
from perception_shared.errors import CheckpointError
from perception_shared.jsonio import write_json
from perception_shared.logging import get_logger
from perception_shared.plotting import plt
from perception_shared.precision import Precision
from perception_shared.samplers import make_eval_loader

from .config import TrainConfig
from .data import load_split
from .figures import participant_figure
from .metrics import per_sample_errors
from .models import GazeTR, build_model
from .train import draw_predictions, evaluate_predictions, figure_indices, predict_loader

_log = get_logger("gaze_estimation.evaluate")


def load_model(checkpoint: str | Path, device: torch.device | str = "cpu") -> tuple[GazeTR, TrainConfig, dict[str, Any]]:
    """Rebuild the model from the config saved in ``checkpoint`` and load its weights (eval mode).

    Returns ``(model, config, checkpoint state)``; weights files named in the saved config are not read
    again (the checkpoint holds the trained weights).
    """
    state = load_checkpoint(checkpoint)
    if "config" not in state or "model" not in state:
        raise CheckpointError(f"checkpoint {checkpoint} has no 'config' or no 'model': not a gaze-estimation checkpoint")
    cfg = config_from_dict(TrainConfig, state["config"], source=f"the config in {checkpoint}")
    model = build_model(replace(cfg.model, pretrained=None, pretrained_face=None, pretrained_eye=None))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {checkpoint} does not fit model {cfg.model.name}: {e}") from None
    return model.to(device).eval(), cfg, state


def resolve_checkpoint(run_dir: str | Path | None, checkpoint: str | Path | None) -> Path:
    """``checkpoint`` if given, else ``run_dir/best_model.pth``."""
    if checkpoint is not None:
        return Path(checkpoint)
    if run_dir is None:
        raise CheckpointError("evaluate needs a run directory or --checkpoint")
    return Path(run_dir) / "best_model.pth"


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def evaluate(
    checkpoint: str | Path,
    *,
    ctx: DistContext,
    out_dir: str | Path,
    data_root: str | Path | None = None,
    split: str | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    skip_bad: bool = False,
    figure_samples: int = 8,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on ``split`` (default: the config's validation split) of ``data_root``.

    Every sample counts once over all ranks; returns the metrics (on every rank), rank 0 writes files.
    """
    model, cfg, state = load_model(checkpoint, ctx.device)
    root = Path(data_root) if data_root is not None else cfg.data.root
    split = split or cfg.data.val_split
    policy = BadInputPolicy(skip=skip_bad)
    dataset = load_split(root, split, camera=cfg.data.camera, policy=policy)
    loader = make_eval_loader(
        dataset,
        batch_size or cfg.data.eval_batch_size,
        num_workers=cfg.data.num_workers if num_workers is None else num_workers,
        pin_memory=ctx.device.type == "cuda",
    )
    _log.info("evaluating %s on %d samples of %s/%s* (%s)", checkpoint, len(dataset), root, split, policy.summary())
    with Precision(cfg.loop.precision, ctx.device).autocast():
        idx, pred = predict_loader(model, loader, ctx.device)
    idx_all, pred_all = gather_by_index(idx, pred)
    idx_all = np.asarray(idx_all)
    train_mean = state.get("extra", {}).get("train_mean_gaze")
    metrics = evaluate_predictions(dataset, idx_all, pred_all, None if train_mean is None else np.asarray(train_mean))
    metrics.update(
        {
            "checkpoint": str(checkpoint),
            "epoch": state.get("epoch"),
            "data_root": str(root),
            "split": split,
            "model": cfg.model.name,
            "skipped_bad_inputs": policy.count,
        }
    )
    if ctx.is_main:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "metrics.json", metrics)
        per = metrics["per_participant"]
        write_csv(out / "per_participant.csv", ["participant", "n_samples", "mean_deg", "median_deg"],
                  [[p, v["n_samples"], f"{v['mean_deg']:.4f}", f"{v['median_deg']:.4f}"] for p, v in per.items()])
        target = dataset.gaze[idx_all].astype(np.float64)
        err = per_sample_errors(pred_all, target)
        pids = dataset.participant_of(idx_all)
        rows = [
            [int(i), pids[j], dataset.files[dataset.file_index[i]], int(dataset.row_index[i]),
             f"{pred_all[j, 0]:.6f}", f"{pred_all[j, 1]:.6f}", f"{target[j, 0]:.6f}", f"{target[j, 1]:.6f}", f"{err[j]:.4f}"]
            for j, i in enumerate(idx_all)
        ]
        write_csv(out / "predictions.csv", ["index", "participant", "file", "row", "pitch", "yaw", "true_pitch", "true_yaw", "error_deg"], rows)
        fig = participant_figure(per, metrics.get("mean_predictor_error_deg"))
        fig.savefig(out / "per_participant.png", dpi=100)
        plt.close(fig)
        if figure_samples > 0:
            k = figure_indices(len(idx_all), figure_samples)
            fig = draw_predictions(dataset, idx_all[k], pred_all[k])
            fig.savefig(out / "gaze_examples.png", dpi=100)
            plt.close(fig)
        _log.info(
            "%d samples: mean %.3f deg, median %.3f deg (mean predictor %.3f deg); wrote %s",
            metrics["n_samples"], metrics["mean_angular_error_deg"], metrics["median_angular_error_deg"],
            metrics.get("mean_predictor_error_deg", float("nan")), out / "metrics.json",
        )
    return metrics
