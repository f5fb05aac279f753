"""Angular-error summaries: mean, median, and per participant (degrees)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .geometry import angular_error_deg


@dataclass(frozen=True)
class ParticipantError:
    participant: str
    n_samples: int
    mean_deg: float
    median_deg: float


def _as_double(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double()
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def per_sample_errors(pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(N, 2)`` pitch/yaw predictions and targets in radians -> ``(N,)`` angular errors in degrees (float64)."""
    return angular_error_deg(_as_double(pred), _as_double(target)).numpy()


def summarize_errors(errors_deg: np.ndarray, participants: Sequence[str]) -> dict[str, object]:
    """Mean and median over all samples, and per participant, of ``(N,)`` errors in degrees.

    ``participants`` names the participant of each sample. ``mean_of_participants_deg`` weights every
    participant equally (the overall mean weights every sample equally).
    """
    errors = np.asarray(errors_deg, dtype=np.float64)
    if errors.ndim != 1 or len(errors) != len(participants):
        raise ValueError(f"summarize_errors: {errors.shape} errors for {len(participants)} participant ids")
    if len(errors) == 0:
        raise ValueError("summarize_errors: no samples")
    ids = np.asarray(participants)
    per = []
    for pid in sorted(set(ids.tolist())):
        e = errors[ids == pid]
        per.append(ParticipantError(str(pid), int(len(e)), float(e.mean()), float(np.median(e))))
    return {
        "n_samples": int(len(errors)),
        "mean_angular_error_deg": float(errors.mean()),
        "median_angular_error_deg": float(np.median(errors)),
        "std_angular_error_deg": float(errors.std()),
        "mean_of_participants_deg": float(np.mean([p.mean_deg for p in per])),
        "per_participant": {p.participant: {"n_samples": p.n_samples, "mean_deg": p.mean_deg, "median_deg": p.median_deg} for p in per},
    }


def mean_predictor_errors(train_mean: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> np.ndarray:
    """Errors in degrees of the baseline that always predicts ``train_mean`` ``(2,)`` for ``(N, 2)`` targets."""
    t = np.asarray(target, dtype=np.float64)
    m = np.tile(np.asarray(train_mean, dtype=np.float64).reshape(1, 2), (len(t), 1))
    return per_sample_errors(m, t)


def error_by_position(errors_deg: np.ndarray, positions: np.ndarray) -> list[dict[str, float]]:
    """Mean and median error (degrees) of the frames at each position of their window.

    ``positions`` ``(N,)`` counts the frames before each one in its window (0: no context);
    ``context_frames`` is that plus one, the frames the prediction saw.
    """
    errors, positions = np.asarray(errors_deg, dtype=np.float64), np.asarray(positions)
    out = []
    for p in sorted(set(positions.tolist())):
        e = errors[positions == p]
        out.append({"position": int(p), "context_frames": int(p) + 1, "n_frames": int(len(e)), "mean_deg": float(e.mean()), "median_deg": float(np.median(e))})
    return out
