"""What model selection (``train``) and ``evaluate`` both do with a model: run it over a loader, score
its predictions against the labels, and draw some of them.

Loaders give either single frames (``GazeH5Dataset``: crops ``(B, 3, H, W)``) or windows of frames
(``SequenceDataset``: crops ``(B, T, 3, H, W)`` with ``frames`` and ``valid``); either way predictions
come back per frame, indexed into the frame dataset, so single-frame and temporal runs are scored by
the same code and give the same metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from perception_shared.badinput import BadInputPolicy
from perception_shared.samplers import eval_indices

from .augment import AugmentConfig
from .config import TrainConfig
from .data import GazeH5Dataset, to_float
from .figures import gaze_figure
from .metrics import mean_predictor_errors, per_sample_errors, summarize_errors
from .sequences import SequenceDataset

CROP_KEYS = ("face", "leye", "reye")


def dataset_for(
    cfg: TrainConfig, files: Sequence[str | Path], *, training: bool, augment: AugmentConfig | None = None, policy: BadInputPolicy | None = None
) -> GazeH5Dataset | SequenceDataset:
    """The dataset a run of ``cfg`` reads: frames, or for ``gazetr_temporal`` windows of ``data.sequence_length``.

    Training windows overlap by ``data.window_stride``; evaluation windows cover every frame once.
    """
    if not cfg.model.is_temporal:
        return GazeH5Dataset(files, augment=augment, policy=policy)
    stride = cfg.data.window_stride if training else None
    return SequenceDataset(files, length=cfg.data.sequence_length, stride=stride, augment=augment, policy=policy)


def frame_dataset(dataset: GazeH5Dataset | SequenceDataset) -> GazeH5Dataset:
    """The frames behind a dataset (its labels, participants and crops, indexed as predictions are)."""
    return dataset.frames if isinstance(dataset, SequenceDataset) else dataset


def describe_windows(dataset: GazeH5Dataset | SequenceDataset) -> str:
    """For logs: how many windows of how many frames, or nothing for single frames."""
    if isinstance(dataset, SequenceDataset):
        return f" in {len(dataset)} windows of up to {dataset.length} consecutive frames"
    return ""


def forward_batch(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Run ``model`` on collated uint8 crops: ``(B, 2)`` pitch/yaw radians, or ``(B, T, 2)`` for windows."""
    return model(to_float(batch["face"]), to_float(batch["leye"]), to_float(batch["reye"]))


@torch.no_grad()
def predict_loader(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame predictions of this rank's share of ``loader``: ``(frame indices (M,), pitch/yaw (M, 2) float64)``.

    For a loader of windows, every valid frame of every window is one prediction (evaluation windows
    cover each frame once). Follow with ``gather_by_index`` to get every frame over all ranks.
    """
    preds, frames = [], []
    for batch in loader:
        out = forward_batch(model, {k: batch[k].to(device, non_blocking=True) for k in CROP_KEYS}).float().cpu()
        if "valid" in batch:
            preds.append(out[batch["valid"]])
            frames.append(batch["frames"][batch["valid"]])
        else:
            preds.append(out)
    pred = torch.cat(preds).double().numpy() if preds else np.zeros((0, 2))
    if frames:
        return torch.cat(frames).numpy().astype(np.int64), pred
    return np.asarray(eval_indices(loader), dtype=np.int64), pred


def evaluate_predictions(dataset: GazeH5Dataset, indices: np.ndarray, pred: np.ndarray, train_mean: np.ndarray | None) -> dict[str, Any]:
    """Metrics of gathered predictions (all frames, dataset order), plus the mean-predictor baseline."""
    target = dataset.gaze[indices].astype(np.float64)
    errors = per_sample_errors(pred, target)
    summary = summarize_errors(errors, dataset.participant_of(indices))
    if train_mean is not None:
        summary["mean_predictor_error_deg"] = float(mean_predictor_errors(train_mean, target).mean())
    return summary


def figure_indices(n: int, k: int) -> np.ndarray:
    """``k`` evenly spread indices of ``n`` samples (the same every epoch)."""
    return np.unique(np.linspace(0, n - 1, num=min(k, n)).round().astype(np.int64))


def draw_predictions(dataset: GazeH5Dataset, indices: np.ndarray, pred: np.ndarray, sub: str) -> Any:
    """A gaze figure of dataset ``indices`` with ``pred`` ``(K, 2)`` (``sub``: run, status, data); reads the crops from disk."""
    crops = [dataset.read(int(i)) for i in indices]
    dataset.close()  # the main process keeps no handle open across the workers' fork
    titles = [f"{p} #{int(i)}" for p, i in zip(dataset.participant_of(indices), indices)]
    return gaze_figure([c[0] for c in crops], [c[1] for c in crops], [c[2] for c in crops], pred, dataset.gaze[indices], titles, sub=sub)
