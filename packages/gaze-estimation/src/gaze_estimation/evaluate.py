"""Evaluation of a checkpoint on the validation participants: metrics JSON, CSVs, figures.

The protocol (issue 13): ``train`` selects ``best_model.pth`` on held-out *training* participants; the
error reported here is measured on the validation participants, which played no part in training or
selection. ``metrics.json`` says which participants did what and whether they are disjoint.

Outputs (written by rank 0 into ``out_dir``):

* ``metrics.json``: ``n_samples``, mean / median / std angular error (deg), the mean of the
  per-participant means, the mean-predictor baseline (the training set's mean gaze, from the
  checkpoint), per-participant mean and median, ``protocol`` (selection and report participants),
  ``weights`` (each backbone's identifier, source and sha256, or RANDOM INIT) and where the numbers
  came from;
* ``per_participant.csv``: ``participant,n_samples,mean_deg,median_deg``;
* ``predictions.csv``: ``index,participant,file,row,pitch,yaw,true_pitch,true_yaw,error_deg`` (radians);
* ``per_participant.png`` and ``gaze_examples.png`` (also logged to the run's TensorBoard and W&B run when
  the checkpoint lies in a run directory);
* a temporal run (``gazetr_temporal``) writes the same, one prediction per frame (each frame once, with
  the frames before it in its window), plus ``error_by_position`` in ``metrics.json``,
  ``error_by_position.csv`` and ``error_by_position.png``.

Before evaluating, the evaluated files are compared with the run's ``manifest.json`` (the validation
files recorded when it trained); different data is refused unless ``allow_data_mismatch``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from perception_shared.badinput import BadInputPolicy
from perception_shared.checkpoint import load_checkpoint, restore_model, uses_pretrained
from perception_shared.config import config_from_dict
from perception_shared.distributed import DistContext, gather_by_index
from perception_shared.errors import CheckpointError
from perception_shared.figures import save_figure
from perception_shared.jsonio import write_json
from perception_shared.logging import get_logger
from perception_shared.manifest import MANIFEST, check_same_data, describe_data, load_manifest
from perception_shared.precision import Precision
from perception_shared.samplers import make_eval_loader
from perception_shared.tracking import log_images

from .config import TrainConfig, is_random_init, purpose_line
from .data import find_h5_files, participant_id
from .figures import participant_figure, position_figure, run_subtitle
from .metrics import error_by_position, per_sample_errors
from .models import build_model
from .scoring import dataset_for, draw_predictions, evaluate_predictions, figure_indices, frame_dataset, predict_loader
from .sequences import SequenceDataset

_log = get_logger("gaze_estimation.evaluate")
REPORT_PREFIX = "report:"  # manifest data entries of the validation (report) participants


def load_model(checkpoint: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, TrainConfig, dict[str, Any]]:
    """Rebuild the model from the config saved in ``checkpoint`` and load its weights (eval mode).

    Returns ``(model, config, checkpoint state)``; backbone weights are looked up only when the
    checkpoint refers to frozen pretrained weights instead of holding them (their sha256 is checked).
    """
    state = load_checkpoint(checkpoint)
    if "config" not in state or "model" not in state:
        raise CheckpointError(f"checkpoint {checkpoint} has no 'config' or no 'model': not a gaze-estimation checkpoint")
    cfg = config_from_dict(TrainConfig, state["config"], source=f"the config in {checkpoint}")
    model, _ = build_model(cfg.model, load_weights=uses_pretrained(state), window=cfg.data.sequence_length)
    restore_model(model, state, checkpoint)
    return model.to(device).eval(), cfg, state


def weights_summary(state: dict[str, Any]) -> dict[str, Any] | str:
    """Which backbone weights the checkpoint's run started from (recorded by ``train``)."""
    return state.get("extra", {}).get("weights", "not recorded (checkpoint written before weights were recorded)")


def describe_weights_used(state: dict[str, Any]) -> str:
    """One line for logs and reports: each role's identifier and source, or RANDOM INIT."""
    weights = weights_summary(state)
    if not isinstance(weights, dict):
        return str(weights)
    parts = []
    for role, w in weights.items():
        if not w.get("pretrained"):
            parts.append(f"{role}: {w.get('identifier')} RANDOM INIT")
        else:
            digest = f", sha256 {str(w.get('sha256'))[:12]}" if w.get("sha256") else ""
            parts.append(f"{role}: {w.get('identifier')} ({w.get('kind')}{digest})")
    return "; ".join(parts)


def protocol(state: dict[str, Any], evaluated: list[str], split: str) -> dict[str, Any]:
    """Who selected the model and who the error is reported on, and whether they overlap."""
    extra = state.get("extra", {})
    selection = list(extra.get("selection_participants") or [])
    trained = list(extra.get("train_participants") or [])
    overlap = sorted(set(evaluated) & (set(selection) | set(trained)))
    if not selection:
        statement = "this checkpoint records no model-selection participants (it predates the held-out selection protocol)"
    elif overlap:
        statement = (
            f"NOT an independent estimate: the evaluated participants {', '.join(overlap)} were used in training or "
            "model selection"
        )
    else:
        statement = (
            f"best_model.pth was selected on held-out training participants ({', '.join(selection)}); this error is "
            f"reported on the {split} participants ({', '.join(evaluated)}), who played no part in training or selection"
        )
    return {
        "selection_participants": selection,
        "train_participants": trained,
        "report_participants": list(evaluated),
        "report_split": split,
        "disjoint": bool(selection) and not overlap,
        "overlap": overlap,
        "statement": statement,
    }


def check_evaluated_data(run_dir: Path, files: list[Path], *, allow: bool) -> list[str]:
    """Refuse evaluated files that differ from the report data the run's manifest recorded (unless ``allow``)."""
    manifest = load_manifest(run_dir, missing_ok=True)
    recorded = None
    if manifest is not None:
        recorded = {**manifest, "data": {k: v for k, v in (manifest.get("data") or {}).items() if k.startswith(REPORT_PREFIX)}}
    current = {"data": {f"{REPORT_PREFIX}{participant_id(p)}": describe_data(p) for p in files}}
    return check_same_data({f"run {run_dir}": recorded, "the evaluated data": current}, allow=allow)


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
    allow_data_mismatch: bool = False,
    log_to_run: bool = True,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on ``split`` (default: the config's validation split) of ``data_root``.

    Every sample counts once over all ranks; returns the metrics (on every rank), rank 0 writes files.
    With ``log_to_run``, a checkpoint in a run directory (``manifest.json`` beside it) also gets the
    figures as images ``evaluate/<split>/<figure>`` in the run's TensorBoard and its W&B run (continued,
    at the checkpoint's step; ``tracking.wandb`` of the run's config).
    """
    model, cfg, state = load_model(checkpoint, ctx.device)
    root = Path(data_root) if data_root is not None else cfg.data.root
    split = split or cfg.data.val_split
    files = find_h5_files(root, split, cfg.data.camera)
    mismatch = check_evaluated_data(Path(checkpoint).parent, files, allow=allow_data_mismatch)
    for problem in mismatch:
        _log.warning("data mismatch allowed by --allow-data-mismatch: %s", problem)
    policy = BadInputPolicy(skip=skip_bad)
    loaded = dataset_for(cfg, files, training=False, policy=policy)
    dataset = frame_dataset(loaded)
    loader = make_eval_loader(
        loaded,
        batch_size or cfg.data.eval_batch_size,
        num_workers=cfg.data.num_workers if num_workers is None else num_workers,
        pin_memory=ctx.device.type == "cuda",
    )
    weights_line = describe_weights_used(state)
    _log.info("evaluating %s on %d samples of %s/%s* (%s); weights: %s", checkpoint, len(dataset), root, split, policy.summary(), weights_line)
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
            "weights": weights_summary(state),
            "weights_used": weights_line,
            "random_init": is_random_init(cfg),
            "purpose": cfg.purpose,
            "purpose_note": purpose_line(cfg.purpose),
            "protocol": protocol(state, list(dataset.participants), split),
            "data_mismatch_allowed": mismatch,
            "skipped_bad_inputs": policy.count,
        }
    )
    if isinstance(loaded, SequenceDataset):
        errors = per_sample_errors(pred_all, dataset.gaze[idx_all].astype(np.float64))
        metrics["sequence_length"] = loaded.length
        metrics["error_by_position"] = error_by_position(errors, loaded.position_of[idx_all])
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
        sub = run_subtitle(Path(checkpoint).parent.name, cfg, f"{split} split: {metrics['n_samples']} samples of {len(per)} participants")
        figures = {"per_participant": save_figure(participant_figure(
            per, metrics.get("mean_predictor_error_deg"), title="Angular error per participant", sub=sub), out / "per_participant.png")}
        if "error_by_position" in metrics:
            by_pos = metrics["error_by_position"]
            write_csv(out / "error_by_position.csv", ["position", "context_frames", "n_frames", "mean_deg", "median_deg"],
                      [[p["position"], p["context_frames"], p["n_frames"], f"{p['mean_deg']:.4f}", f"{p['median_deg']:.4f}"] for p in by_pos])
            fig = position_figure(by_pos, metrics["mean_angular_error_deg"], title="Angular error by the frames of context seen", sub=sub)
            figures["error_by_position"] = save_figure(fig, out / "error_by_position.png")
        if figure_samples > 0:
            k = figure_indices(len(idx_all), figure_samples)
            figures["gaze_examples"] = save_figure(draw_predictions(dataset, idx_all[k], pred_all[k], sub), out / "gaze_examples.png")
        run_dir = Path(checkpoint).parent
        if log_to_run and (run_dir / MANIFEST).is_file():
            log_images(run_dir, {f"evaluate/{split}/{name}": path for name, path in figures.items()},
                       step=int(state.get("global_step", 0)), wandb=cfg.tracking.wandb, package="gaze-estimation")
        _log.info(
            "%d samples: mean %.3f deg, median %.3f deg (mean predictor %.3f deg); %s; %s; wrote %s",
            metrics["n_samples"], metrics["mean_angular_error_deg"], metrics["median_angular_error_deg"],
            metrics.get("mean_predictor_error_deg", float("nan")), metrics["protocol"]["statement"], metrics["purpose_note"],
            out / "metrics.json",
        )
    return metrics
