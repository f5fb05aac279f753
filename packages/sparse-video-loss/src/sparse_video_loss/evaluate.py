"""Evaluate a trained run: threshold chosen on val, metrics per horizon on test, baselines, JSON/CSV/PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from perception_shared.badinput import BadInputPolicy
from perception_shared.checkpoint import load_checkpoint, restore_model
from perception_shared.config import config_from_dict
from perception_shared.distributed import DistContext, all_reduce_sum, gather_by_index
from perception_shared.errors import CheckpointError, DataError
from perception_shared.figures import run_status, subtitle
from perception_shared.jsonio import json_ready, write_json
from perception_shared.logging import get_logger, progress
from perception_shared.manifest import check_same_data, describe_data, load_manifest
from perception_shared.plotting import write_history_csv
from perception_shared.samplers import eval_indices, make_eval_loader

from . import __version__
from .config import TrainConfig
from .data import SparseVideoDataset
from .losses import SparseLoss
from .metrics import HEADLINE_KEYS, THRESHOLD, best_f1_threshold, horizon_metrics, one_hot_targets
from .report import plot_per_horizon, plot_prediction_grid
from .sequences import pixel_indices
from .train import build_loss, build_model, check_same_size, load_split, model_identifier, toy_note

log = get_logger("sparse_video_loss.evaluate")


def load_trained_model(checkpoint: str | Path, device: torch.device) -> tuple[nn.Module, TrainConfig, dict[str, Any]]:
    """Rebuild the model from the config inside a checkpoint and load its weights (``weights_only=True``)."""
    state = load_checkpoint(checkpoint)
    if "config" not in state or "model" not in state:
        raise CheckpointError(f"checkpoint {checkpoint} has no 'config' or 'model' entry: not a sparse-video-loss checkpoint")
    cfg = config_from_dict(TrainConfig, state["config"], source=f"the config inside {checkpoint}")
    in_shape = (state.get("extra") or {}).get("in_shape")
    if in_shape is None:
        raise CheckpointError(f"checkpoint {checkpoint} does not record the model's input shape (extra.in_shape)")
    model = build_model(cfg.model, tuple(in_shape))
    restore_model(model, state, checkpoint)
    return model.to(device).eval(), cfg, state


@torch.no_grad()
def predict_split(
    model: nn.Module,
    dataset: SparseVideoDataset,
    batch_size: int,
    device: torch.device,
    desc: str = "predict",
    *,
    loss_fn: SparseLoss | None = None,
    num_workers: int = 0,
) -> dict[str, np.ndarray]:
    """Predicted probabilities for every sequence of ``dataset``, gathered over ranks in dataset order.

    Returns numpy arrays: ``index (N,)``, ``probs (N, T, H, W)`` float32, ``target_pixels (N, T, 2)``,
    ``valid (N, T)`` bool, ``motion (N, T)``; with ``loss_fn`` also ``loss (T,)``: the loss of the frames
    of each horizon that have a point (as in training), over all ranks. Every rank returns the full arrays.
    """
    loader = make_eval_loader(dataset, batch_size, num_workers=num_workers)
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("probs", "target_pixels", "valid", "motion")}
    T, S = dataset.n_output, dataset.size
    loss_sums = torch.zeros(2, T, dtype=torch.float64, device=device)  # loss * frames, frames per horizon
    for batch in progress(loader, desc=desc, leave=False):
        logits = model(batch["inputs"].to(device))
        if loss_fn is not None:
            targets, mask = batch["targets"].to(device), batch["target_mask"].to(device)
            for h in range(T):
                frames = mask[:, h].sum()
                value = loss_fn(logits[:, h : h + 1], targets[:, h : h + 1], mask[:, h : h + 1]).double()
                loss_sums[:, h] += torch.stack([value * frames, frames.double()])
        parts["probs"].append(torch.sigmoid(logits[:, :, 0].float()).cpu())
        parts["target_pixels"].append(batch["target_pixels"])
        parts["valid"].append(batch["target_mask"])
        parts["motion"].append(batch["motion"])
    empty = {"probs": (0, T, S, S), "target_pixels": (0, T, 2), "valid": (0, T), "motion": (0, T)}
    local = [torch.cat(v) if v else torch.zeros(empty[k]) for k, v in parts.items()]
    idx, probs, pixels, valid, motion = gather_by_index(eval_indices(loader), *local)
    out = {
        "index": idx.numpy(),
        "probs": probs.numpy(),
        "target_pixels": pixels.long().numpy(),
        "valid": valid.bool().numpy(),
        "motion": motion.long().numpy(),
    }
    if loss_fn is not None:
        sums = all_reduce_sum(loss_sums).cpu().numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            out["loss"] = np.where(sums[1] > 0, sums[0] / sums[1], np.nan)
    return out


def last_position_probs(dataset: SparseVideoDataset) -> np.ndarray:
    """The persistence baseline: every future frame repeats the last valid input point (blank if none).

    Returns ``(N, n_output, S, S)`` maps with a single 1.
    """
    n, k, S = len(dataset), dataset.n_input, dataset.size
    out = np.zeros((n, dataset.n_output, S, S), dtype=np.float32)
    masks = dataset.masks[:, :k]
    pixels = pixel_indices(torch.nan_to_num(dataset.coordinates[:, :k])).numpy()
    for i in range(n):
        valid = np.flatnonzero(masks[i].numpy())
        if len(valid):
            r, c = pixels[i, valid[-1]]
            out[i, :, r, c] = 1.0
    return out


def evaluate_predictions(val: dict[str, np.ndarray], test: dict[str, np.ndarray], has_motion: bool) -> tuple[float, dict[str, Any]]:
    """Choose the F1-best threshold on ``val`` (all horizons pooled), then score ``test`` per horizon."""
    v = val["valid"]
    labels = one_hot_targets(val["target_pixels"][v], val["probs"].shape[2:])
    if labels.any():
        threshold, _ = best_f1_threshold(val["probs"][v], labels)
    else:
        log.warning("the validation split has no valid target frame; using threshold %.2f as the best threshold", THRESHOLD)
        threshold = THRESHOLD
    result = horizon_metrics(
        test["probs"], test["target_pixels"], test["valid"], threshold, motion=test["motion"] if has_motion else None
    )
    return threshold, result


def check_evaluated_data(run_dir: Path, files: dict[str, Path], *, allow: bool = False) -> list[str]:
    """Refuse val/test files that differ from those the run's ``manifest.json`` recorded (unless ``allow``).

    Returns the differences (allowed ones, for the report). A run without a manifest (made before run
    manifests) is evaluated with a warning.
    """
    manifest = load_manifest(run_dir, missing_ok=True)
    if manifest is None:
        log.warning("%s has no manifest.json: cannot check that %s are the files it was made with", run_dir, ", ".join(map(str, files.values())))
        return []
    recorded = {**manifest, "data": {k: v for k, v in (manifest.get("data") or {}).items() if k in files}}
    current = {"data": {k: describe_data(p) for k, p in files.items()}}
    return check_same_data({f"run {run_dir}": recorded, "the data evaluated now": current}, allow=allow)


def evaluate_run(
    checkpoint: str | Path,
    out_dir: str | Path,
    ctx: DistContext,
    *,
    data_root: str | Path | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    skip_bad: bool = False,
    allow_data_mismatch: bool = False,
    n_examples: int = 4,
    figures: bool = True,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on the test split; write ``metrics.json``, ``per_horizon.csv`` and PNGs to ``out_dir``.

    The best threshold is chosen on the val split. Baselines on the same test frames: ``blank`` (all-zero
    frames) and ``last_position`` (the last valid input point repeated). The val/test files must be those
    the run's manifest recorded, unless ``allow_data_mismatch``. ``figures=False`` skips the PNGs (``compare``
    draws its own over all runs). Only rank 0 writes; every rank returns the metrics.
    """
    model, cfg, state = load_trained_model(checkpoint, ctx.device)
    extra = state.get("extra") or {}
    policy = BadInputPolicy(skip=skip_bad)
    root = data_root if data_root is not None else cfg.data.root
    val_ds = load_split(cfg, "val", policy, root)
    test_ds = load_split(cfg, "test", policy, root)
    mismatch = check_evaluated_data(Path(checkpoint).parent, {"val": val_ds.path, "test": test_ds.path}, allow=allow_data_mismatch)
    for problem in mismatch:
        log.warning("data mismatch allowed by --allow-data-mismatch: %s", problem)
    size = check_same_size([val_ds, test_ds])
    if size != model.in_shape[-1]:
        raise DataError(f"{root}: frames are {size}x{size}, but checkpoint {checkpoint} was trained on {model.in_shape[-1]}x{model.in_shape[-1]}")
    bs = batch_size or cfg.data.eval_batch_size
    workers = cfg.data.num_workers if num_workers is None else num_workers
    loss_fn = build_loss(cfg.loss)
    val = predict_split(model, val_ds, bs, ctx.device, "predict val", num_workers=workers)
    test = predict_split(model, test_ds, bs, ctx.device, "predict test", loss_fn=loss_fn, num_workers=workers)
    threshold, result = evaluate_predictions(val, test, test_ds.has_motion)
    for row, value in zip(result["per_horizon"], test["loss"]):
        row["loss"] = float(value)
    result["overall"]["loss"] = float(np.nanmean(test["loss"])) if np.isfinite(test["loss"]).any() else float("nan")
    blank = horizon_metrics(np.zeros_like(test["probs"]), test["target_pixels"], test["valid"], THRESHOLD, localization=False)
    last = horizon_metrics(
        last_position_probs(test_ds), test["target_pixels"], test["valid"], THRESHOLD,
        motion=test["motion"] if test_ds.has_motion else None,
    )
    weights = extra.get("weights") or {"identifier": model_identifier(cfg.model), "kind": "unknown",
                                       "note": "the checkpoint predates weights records"}
    toy = bool(extra.get("toy", cfg.toy))
    metrics: dict[str, Any] = {
        "package": "sparse-video-loss",
        "version": __version__,
        "checkpoint": str(checkpoint),
        "data": str(root),
        "data_format": cfg.data.format,
        "split": "test",
        "toy": toy,
        **({"note": toy_note(cfg)} if toy else {}),
        "weights": weights,
        "random_init": weights.get("kind") == "random",
        "headline": {k: result["overall"].get(k) for k in HEADLINE_KEYS},
        "n_samples": int(len(test["index"])),
        "n_frames": result["n_frames"],
        "loss": {"name": cfg.loss.name, "kwargs": dict(cfg.loss.kwargs)},
        "model": {"model_type": cfg.model.model_type, "hid_S": cfg.model.hid_S, "hid_T": cfg.model.hid_T,
                  "N_S": cfg.model.N_S, "N_T": cfg.model.N_T,
                  "parameters": sum(p.numel() for p in model.parameters())},
        "threshold_best": threshold,
        "threshold_best_source": f"val ({len(val['index'])} sequences, all horizons pooled)",
        "overall": result["overall"],
        "per_horizon": result["per_horizon"],
        "baselines": {
            "blank": {"overall": blank["overall"], "per_horizon": blank["per_horizon"]},
            "last_position": {"overall": last["overall"], "per_horizon": last["per_horizon"]},
        },
    }
    if "by_motion" in result:
        metrics["by_motion"] = result["by_motion"]
        metrics["baselines"]["last_position"]["by_motion"] = last["by_motion"]
    if policy.count:
        metrics["skipped_inputs"] = policy.skipped
    if mismatch:
        metrics["data_mismatch_allowed"] = mismatch
    metrics = json_ready(metrics)
    if ctx.is_main:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "metrics.json", metrics)
        write_per_horizon_csv(metrics, out / "per_horizon.csv")
        if figures:
            sub = subtitle(
                Path(checkpoint).parent.name,
                run_status(toy=toy, random_init=metrics["random_init"]),
                f"{Path(checkpoint).name}; test split (n={metrics['n_samples']} sequences); best epoch and "
                "F1 threshold chosen on val",
            )
            plot_per_horizon({cfg.loss.name: metrics}, out / "per_horizon.png", baselines=metrics["baselines"], sub=sub)
            rows = min(n_examples, len(test["index"]))
            plot_prediction_grid(
                {"true": _target_frames(test, rows), cfg.loss.name: test["probs"][:rows]},
                out / "predictions.png",
                inputs=_last_inputs(test_ds, rows),
                sub=sub,
            )
        o = metrics["overall"]
        log.info(
            "test (%d sequences; weights: %s%s): localization error %.2f px, hit@1px %.3f, hit@2px %.3f; "
            "F1@0.5 %.3f, F1@best(%.3g) %.3f, AP %.3f, collapsed frames %.0f%%; last position %.2f px",
            metrics["n_samples"], weights.get("identifier"), " RANDOM INIT" if metrics["random_init"] else "",
            o["loc_error_px"], o["hit@1px"], o["hit@2px"], o["f1@0.5"], threshold, o["f1@best"], o["ap"],
            100 * o["collapsed_fraction"], metrics["baselines"]["last_position"]["overall"]["loc_error_px"],
        )
        if toy:
            log.warning("%s", toy_note(cfg))
    return metrics


def _target_frames(pred: dict[str, np.ndarray], rows: int) -> np.ndarray:
    S = pred["probs"].shape[-1]
    out = np.zeros((rows,) + pred["probs"].shape[1:], dtype=np.float32)
    for i in range(rows):
        for t in np.flatnonzero(pred["valid"][i]):
            r, c = pred["target_pixels"][i, t]
            if 0 <= r < S and 0 <= c < S:
                out[i, t, r, c] = 1.0
    return out


def _last_inputs(dataset: SparseVideoDataset, rows: int) -> np.ndarray:
    """The last input frame of the first ``rows`` sequences, ``(rows, S, S)``."""
    return np.stack([dataset[i]["inputs"][-1, 0].numpy() for i in range(rows)])


def write_per_horizon_csv(metrics: dict[str, Any], path: str | Path) -> Path:
    """One row per horizon of the model, then the same for each baseline (column ``predictor``)."""
    rows = [{"predictor": "model", **r} for r in metrics["per_horizon"]]
    for name, b in metrics["baselines"].items():
        rows += [{"predictor": name, **r} for r in b["per_horizon"]]
    return write_history_csv(rows, path)  # a union-of-columns CSV writer; undefined values stay empty
