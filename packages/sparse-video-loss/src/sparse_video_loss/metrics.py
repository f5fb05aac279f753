"""Detection and localization metrics for predicted sparse frames, per horizon.

Definitions (one predicted probability map per frame, ``p = sigmoid(logits)``; one target pixel per
frame that has a point; frames without a point (mask False) are left out of every metric):

* a pixel is *predicted active* when ``p >= threshold``; precision, recall and F1 count pixels over all
  counted frames of a horizon; an undefined ratio (no predicted or no true pixel) counts as 0, as
  ``sklearn.metrics.precision_score(zero_division=0)``;
* the *best threshold* is the one that maximizes F1 over every frame of the validation set (all horizons
  pooled); it is then applied unchanged to the test set;
* *average precision* is threshold-free: ``sum_n (R_n - R_{n-1}) P_n`` over decreasing distinct scores,
  the definition of ``sklearn.metrics.average_precision_score``;
* *localization error* is the Euclidean distance in grid pixels between the argmax pixel of the predicted
  map (the first in row-major order on ties) and the target pixel; *argmax hit* is the share of frames
  where they coincide, *hit@1px* and *hit@2px* the share where the argmax lies within 1 and 2 pixels
  (Euclidean, so hit@1px counts the 4-neighbours and hit@2px the 12 pixels within distance 2);
* *mse* is the mean over a frame's pixels of ``(p - y)^2``, the same number whatever loss trained the
  model (the study's test loss was an MSE), so it compares models; each run's own loss on the test
  frames is reported beside it by ``evaluate``;
* *predicted mass* is ``sum p`` over a frame's pixels: 1 for one confident pixel. It does **not** detect
  collapse: a model that collapsed under MSE predicts a small, nearly uniform probability everywhere
  (about 0.003 per pixel on 32x32), so its mass is about ``1024 * 0.003 ~ 3``, not 0;
* *peak-to-mean* is ``max p / mean p`` of a frame: ``H * W`` (1024) for a single active pixel, 1 for a
  uniform map. It is what detects collapse: a frame is *collapsed* when its peak-to-mean ratio is below
  ``COLLAPSE_PEAK_TO_MEAN`` (3: no pixel gets more than three times the average probability, a flat map
  but for a broad bias), and *collapsed_fraction* is the share of such frames. In the demo the models
  that collapsed under MSE and Dice (localization error 23 px, no hit) sit at 1.7-2.0, their faint
  centre bias; the models that localize (focal, weighted MSE, composite) at 5-22, although focal's
  broad background gives it a mass of 35.

Every metric is computed per horizon (frame 1..T after the inputs); the ``overall`` value is the mean
over horizons.

Localization (error, hit@1px, hit@2px) is the headline, F1 a secondary figure: with one true pixel per
frame, F1 at a fixed threshold counts only pixels whose probability crosses it, and a sparsity-penalized
loss keeps pushing probabilities down, so recall at 0.5 can fall from 0.21 to 0.02 within an epoch while
the maximum stays on (or moves closer to) the right pixel. The argmax-based metrics measure where the
model thinks the point is, independent of calibration and threshold.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .sequences import MOTION_NAMES

THRESHOLD = 0.5
HIT_RADII_PX = (1, 2)
COLLAPSE_PEAK_TO_MEAN = 3.0
PIXEL_KEYS = ("precision@0.5", "recall@0.5", "f1@0.5", "precision@best", "recall@best", "f1@best", "ap", "mse")
LOCATION_KEYS = ("loc_error_px", "argmax_hit", "hit@1px", "hit@2px", "predicted_mass", "peak_to_mean", "collapsed_fraction")
HEADLINE_KEYS = ("loc_error_px", "hit@1px", "hit@2px")
# Every per-horizon metric of a model in the order reports show them, headline first; ``loss`` (the
# run's own loss on the test frames) is added by ``evaluate``.
REPORT_KEYS = (
    *HEADLINE_KEYS, "argmax_hit", "f1@best", "precision@best", "recall@best", "f1@0.5", "precision@0.5", "recall@0.5",
    "ap", "loss", "mse", "collapsed_fraction", "peak_to_mean", "predicted_mass",
)


def precision_recall_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at every distinct score used as threshold (predicted positive: ``score >= t``).

    Returns ``(precision, recall, thresholds)`` ordered by decreasing threshold. Needs at least one
    positive label.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if labels.sum() == 0:
        raise ValueError("precision_recall_curve needs at least one positive label")
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of every run of equal scores
    tps = np.cumsum(y)[last_of_run].astype(np.float64)
    fps = (last_of_run + 1) - tps
    return tps / (tps + fps), tps / tps[-1], s[last_of_run]


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """``sum_n (R_n - R_{n-1}) P_n`` (sklearn's ``average_precision_score``); NaN without positives."""
    if np.asarray(labels).sum() == 0:
        return float("nan")
    precision, recall, _ = precision_recall_curve(scores, labels)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def best_f1_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold with the highest F1 (the highest such threshold on ties) and that F1."""
    precision, recall, thresholds = precision_recall_curve(scores, labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    i = int(np.argmax(f1))
    return float(thresholds[i]), float(f1[i])


def prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    """Precision, recall, F1 from counts; an undefined ratio is 0."""
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


def counts_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[int, int, int]:
    """``(tp, fp, fn)`` with ``score >= threshold`` predicted positive."""
    pred = np.asarray(scores) >= threshold
    labels = np.asarray(labels).astype(bool)
    tp = int(np.sum(pred & labels))
    return tp, int(np.sum(pred & ~labels)), int(np.sum(~pred & labels))


def argmax_pixels(maps: np.ndarray) -> np.ndarray:
    """``(F, H, W)`` maps -> ``(F, 2)`` ``(row, col)`` of each map's maximum (first in row-major order on ties)."""
    F, H, W = maps.shape
    flat = np.argmax(maps.reshape(F, H * W), axis=1)
    return np.stack([flat // W, flat % W], axis=1)


def localization_errors(maps: np.ndarray, target_pixels: np.ndarray) -> np.ndarray:
    """``(F,)`` Euclidean distances in pixels between each map's argmax and its ``(row, col)`` target pixel."""
    d = argmax_pixels(maps) - np.asarray(target_pixels)
    return np.sqrt((d.astype(np.float64) ** 2).sum(axis=1))


def peak_to_mean(maps: np.ndarray) -> np.ndarray:
    """``(F, H, W)`` probability maps -> ``(F,)`` ``max p / mean p`` (1 for a uniform map, ``H * W`` for one pixel).

    An all-zero map has no peak: its ratio is 1, as for any other map with nothing standing out.
    """
    flat = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    mean = flat.mean(axis=1)
    peak = flat.max(axis=1)
    return np.where(mean > 0, peak / np.where(mean > 0, mean, 1.0), 1.0)


def collapsed(maps: np.ndarray, ratio: float = COLLAPSE_PEAK_TO_MEAN) -> np.ndarray:
    """``(F,)`` bool: frames whose predicted map has no clear peak (peak-to-mean below ``ratio``)."""
    return peak_to_mean(maps) < ratio


def one_hot_targets(target_pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(F, 2)`` ``(row, col)`` pixels -> ``(F, H, W)`` bool frames with that pixel set."""
    H, W = shape
    out = np.zeros((len(target_pixels), H, W), dtype=bool)
    out[np.arange(len(target_pixels)), target_pixels[:, 0], target_pixels[:, 1]] = True
    return out


def frame_metrics(maps: np.ndarray, target_pixels: np.ndarray, threshold_best: float, *, localization: bool = True) -> dict[str, Any]:
    """Metrics over a set of frames: ``maps (F, H, W)`` probabilities and ``target_pixels (F, 2)``."""
    F = len(maps)
    out: dict[str, Any] = {"n_frames": F}
    if F == 0:
        out.update({k: float("nan") for k in PIXEL_KEYS + (LOCATION_KEYS if localization else ())})
        return out
    labels = one_hot_targets(target_pixels, maps.shape[1:])
    for name, t in (("0.5", THRESHOLD), ("best", threshold_best)):
        p, r, f = prf(*counts_at(maps, labels, t))
        out[f"precision@{name}"], out[f"recall@{name}"], out[f"f1@{name}"] = p, r, f
    out["ap"] = average_precision(maps, labels)
    out["mse"] = float(np.mean((np.asarray(maps, dtype=np.float64) - labels) ** 2))
    if localization:
        err = localization_errors(maps, target_pixels)
        out["loc_error_px"] = float(err.mean())
        out["argmax_hit"] = float(np.mean(err == 0))
        for r in HIT_RADII_PX:
            out[f"hit@{r}px"] = float(np.mean(err <= r + 1e-9))
        out["predicted_mass"] = float(maps.reshape(F, -1).sum(axis=1).mean())
        out["peak_to_mean"] = float(peak_to_mean(maps).mean())
        out["collapsed_fraction"] = float(np.mean(collapsed(maps)))
    return out


def horizon_metrics(
    probs: np.ndarray,
    target_pixels: np.ndarray,
    valid: np.ndarray,
    threshold_best: float,
    *,
    motion: np.ndarray | None = None,
    localization: bool = True,
) -> dict[str, Any]:
    """Per-horizon and overall metrics of predicted sequences.

    Args:
        probs: ``(N, T, H, W)`` predicted probabilities.
        target_pixels: ``(N, T, 2)`` ``(row, col)`` of the true point (ignored where not ``valid``).
        valid: ``(N, T)`` bool, frames that have a point.
        threshold_best: the threshold chosen on validation data.
        motion: optional ``(N, T)`` motion codes (0 fixation, 1 pursuit, 2 saccade, -1 unknown) for a
            breakdown of localization by how the point moved.
        localization: also compute the argmax-based metrics (off for predictors without a maximum).

    Returns:
        ``{"n_frames", "overall": {...}, "per_horizon": [{"horizon": 1, ...}, ...], "by_motion": {...}}``.
    """
    N, T = valid.shape
    per_horizon = []
    for h in range(T):
        v = valid[:, h]
        row = {"horizon": h + 1}
        row.update(frame_metrics(probs[v, h], target_pixels[v, h], threshold_best, localization=localization))
        per_horizon.append(row)
    keys = PIXEL_KEYS + (LOCATION_KEYS if localization else ())
    overall = {k: _nanmean([r[k] for r in per_horizon]) for k in keys}
    out: dict[str, Any] = {"n_frames": int(valid.sum()), "overall": overall, "per_horizon": per_horizon}
    if motion is not None and localization:
        by_motion = {}
        for code, name in MOTION_NAMES.items():
            sel = valid & (motion == code)
            if not sel.any():
                continue
            maps, px = probs[sel], target_pixels[sel]
            err = localization_errors(maps, px)
            hit_prob = maps[np.arange(len(px)), px[:, 0], px[:, 1]]
            by_motion[name] = {
                "n_frames": int(sel.sum()),
                "loc_error_px": float(err.mean()),
                "argmax_hit": float(np.mean(err == 0)),
                **{f"hit@{r}px": float(np.mean(err <= r + 1e-9)) for r in HIT_RADII_PX},
                "recall@best": float(np.mean(hit_prob >= threshold_best)),
            }
        out["by_motion"] = by_motion
    return out


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")
