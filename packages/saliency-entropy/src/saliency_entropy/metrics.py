"""Saliency metrics with the definitions of the MIT/Tuebingen saliency benchmark.

Maps are (H, W) numpy arrays or tensors holding a log-density (natural log, normalized so that
``exp(map).sum() == 1`` over the pixels); fixations are (N, 2) arrays of (x, y) pixel coordinates, x the
column, in the same grid: fixation (x, y) falls on pixel ``[floor(y), floor(x)]`` (pysaliency's
``x_int``/``y_int``). A fixation outside ``0 <= x < W``, ``0 <= y < H`` is an error.

* ``information_gain`` (Kümmerer, Wallis & Bethge, PNAS 2015; pysaliency ``Model.information_gain``):
  mean over fixations of ``log2 p_model(fix) - log2 p_baseline(fix)``, in bits per fixation. Every
  fixation counts, repeated pixels included.
* ``log_likelihood``: the same against the uniform density, bits per fixation (the benchmark's LL).
* ``nss`` (MIT benchmark ``NSS.m``): the saliency map is standardized with its mean and sample standard
  deviation (N-1, MATLAB ``std``) and averaged over the fixated pixels of the binary fixation map, so a
  pixel fixated twice counts once. For a log-density input the map is the density ``exp(map)``: the
  saliency map a probabilistic model gives for NSS (Kümmerer, Wallis & Bethge, ECCV 2018). (pysaliency's
  ``NSS`` divides by the population standard deviation instead: its values are ours times
  ``sqrt((Npixels - 1) / Npixels)``, and it counts a repeated fixation again.)
* ``auc_judd`` (MIT benchmark ``AUC_Judd.m``; pysaliency ``AUC_Judd``): the thresholds are the map's values
  at the fixated pixels of the binary fixation map; at a threshold the true-positive rate is the fraction
  of fixated pixels with a value >= it and the false-positive rate the fraction of the other (non-fixated)
  pixels with a value >= it; the area is the trapezoid rule over (0,0), these points and (1,1). Ties count
  as above the threshold, for the fixated pixels too, as in pysaliency's ``general_roc`` (``AUC_Judd.m``
  instead moves one fixation at a time through tied fixated values, a curve that differs only when two
  fixated pixels hold exactly the same value). ``jitter=True`` adds U(0, 1e-7) first, as the benchmark
  does. AUC only depends on the ordering of the map, so the log-density is used directly. It is exact:
  each pixel is compared with the thresholds, not binned (see ``_count_at_least``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

LOG2 = math.log(2.0)


def _map(x: Any, name: str) -> np.ndarray:
    a = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be an (H, W) map, got shape {a.shape}")
    return a


def fixation_pixels(fixations: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices (``floor(y)``, ``floor(x)``) of (N, 2) fixations on an (H, W) grid."""
    f = (
        fixations.detach().cpu().double().numpy()
        if isinstance(fixations, torch.Tensor)
        else np.asarray(fixations, dtype=np.float64)
    )
    f = f.reshape(-1, 2) if f.size == 0 else f
    if f.ndim != 2 or f.shape[1] != 2:
        raise ValueError(f"fixations must be an (N, 2) array of (x, y), got shape {f.shape}")
    height, width = shape
    bad = ~(np.isfinite(f).all(axis=1) & (f[:, 0] >= 0) & (f[:, 0] < width) & (f[:, 1] >= 0) & (f[:, 1] < height))
    if bad.any():
        x, y = f[np.flatnonzero(bad)[0]]
        raise ValueError(f"fixation (x={x}, y={y}) lies outside the {width}x{height} map")
    return np.floor(f[:, 1]).astype(np.int64), np.floor(f[:, 0]).astype(np.int64)


def log_likelihoods(log_density: Any, fixations: Any) -> np.ndarray:
    """(N,) log-density at each fixation, nats."""
    m = _map(log_density, "log_density")
    rows, cols = fixation_pixels(fixations, m.shape)
    return m[rows, cols]


def information_gains(log_density: Any, fixations: Any, baseline_log_density: Any) -> np.ndarray:
    """(N,) information gain of each fixation over the baseline, bits."""
    m = _map(log_density, "log_density")
    b = _map(baseline_log_density, "baseline_log_density")
    if m.shape != b.shape:
        raise ValueError(f"log_density {m.shape} and baseline_log_density {b.shape} must have the same shape")
    rows, cols = fixation_pixels(fixations, m.shape)
    return (m[rows, cols] - b[rows, cols]) / LOG2


def information_gain(log_density: Any, fixations: Any, baseline_log_density: Any) -> float:
    """Information gain over the baseline, bits per fixation (NaN without fixations)."""
    gains = information_gains(log_density, fixations, baseline_log_density)
    return float(gains.mean()) if len(gains) else float("nan")


def log_likelihood(log_density: Any, fixations: Any) -> float:
    """Log-likelihood relative to the uniform density, bits per fixation (IG over uniform)."""
    m = _map(log_density, "log_density")
    ll = log_likelihoods(m, fixations)
    return float((ll.mean() + math.log(m.size)) / LOG2) if len(ll) else float("nan")


def _fixated_pixels(fixations: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Sorted flat indices of the fixated pixels (the binary fixation map: each pixel once)."""
    rows, cols = fixation_pixels(fixations, shape)
    return np.unique(rows * shape[1] + cols)


def nss(saliency_map: Any, fixations: Any, *, log_density: bool = True) -> float:
    """Normalized scanpath saliency (MIT definition, see the module docstring); NaN for a flat map."""
    m = _map(saliency_map, "saliency_map")
    fixated = _fixated_pixels(fixations, m.shape)
    if fixated.size == 0:
        return float("nan")
    flat = m.ravel()
    if log_density:
        deviation = np.subtract(flat, flat.max())  # the density up to a factor, which NSS ignores
        np.exp(deviation, out=deviation)
        mean = deviation.mean()
        deviation -= mean  # in place: one map-sized buffer in all
    else:
        mean = flat.mean()
        deviation = flat - mean
    std = math.sqrt(float(np.dot(deviation, deviation)) / (flat.size - 1))
    if not std > 0:
        return float("nan")
    return float((deviation[fixated] / std).mean())


# Cells of the value grid in _count_at_least: 2^14 keeps its histogram in the L1/L2 cache.
_GRID_CELLS = 1 << 14
_DIRECT_MAX_THRESHOLDS = 4


def _count_by_search(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(J,) number of ``values`` >= each ascending, distinct threshold: O(N log J), exact."""
    below_or_at = np.searchsorted(thresholds, values, side="right")  # thresholds <= each value
    with_rank = np.bincount(below_or_at, minlength=thresholds.size + 1)
    return np.cumsum(with_rank[::-1])[::-1][1:]


def _count_at_least(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(J,) number of ``values`` >= each of the J ascending, distinct, non-NaN ``thresholds``; exact.

    Sorting all pixels costs O(N log N), a binary search per pixel O(N log J); instead every value
    gets a cell of a uniform grid over [thresholds[0], thresholds[-1]] by arithmetic that is monotone
    (non-decreasing) in the value: a float64 subtraction rounded to float32, a multiplication and an
    addition, a clip and a truncation, each monotone. So a value whose cell lies above a threshold's
    cell is above the threshold, one whose cell lies below is below, and only the values sharing a cell
    with some threshold are compared exactly. Rounding can move values between cells but never across a
    threshold. On log-densities few values share a cell with a threshold; on maps whose values pile up
    at the thresholds (heavy tails, ties) the exact search does most of the work.
    """
    if thresholds.size <= _DIRECT_MAX_THRESHOLDS:
        return np.array([np.count_nonzero(values >= t) for t in thresholds], dtype=np.int64)
    lo, hi = float(thresholds[0]), float(thresholds[-1])
    scale = np.float32((_GRID_CELLS - 1) / (hi - lo)) if math.isfinite(lo) and math.isfinite(hi) else np.float32(0)
    if not (np.isfinite(scale) and scale > 0):  # infinite thresholds or a range float32 cannot scale
        return _count_by_search(values, thresholds)

    def cells_of(x: np.ndarray) -> np.ndarray:
        g = np.empty(x.shape, dtype=np.float32)
        with np.errstate(over="ignore"):  # values far outside the thresholds overflow to +-inf: clipped
            np.subtract(x, lo, out=g)  # computed in float64, rounded once to float32
            g *= scale
        g += np.float32(1.5)  # thresholds[0] lands mid-cell 1: cell 0 holds only values below it
        np.clip(g, 0.0, _GRID_CELLS + 1, out=g)
        return g.astype(np.intp)

    cells = cells_of(values)
    threshold_cells = cells_of(thresholds)
    per_cell = np.bincount(cells, minlength=_GRID_CELLS + 2)
    shared = np.zeros(per_cell.size, dtype=bool)
    shared[threshold_cells] = True
    per_cell[threshold_cells] = 0
    in_cells_above = np.append(np.cumsum(per_cell[::-1])[::-1], 0)  # [c]: other values in cells >= c
    return in_cells_above[threshold_cells + 1] + _count_by_search(values[shared[cells]], thresholds)


def auc_judd(saliency_map: Any, fixations: Any, *, jitter: bool = False, seed: int = 0) -> float:
    """AUC-Judd (MIT definition, see the module docstring); NaN without fixations or for a flat map."""
    m = _map(saliency_map, "saliency_map")
    fixated = _fixated_pixels(fixations, m.shape)
    n_fix, n_pix = fixated.size, m.size
    if n_fix == 0 or n_fix == n_pix:
        return float("nan")
    s = m.ravel()
    if jitter:
        s = s + np.random.default_rng(seed).random(s.shape) / 1e7
    lo, hi = s.min(), s.max()
    if np.isnan(lo) or np.isnan(hi):
        raise ValueError("saliency_map contains NaN")
    if not hi > lo:
        return float("nan")
    thresholds, fixated_at = np.unique(s[fixated], return_counts=True)  # ascending
    pixels_above = _count_at_least(s, thresholds)
    fixated_above = np.cumsum(fixated_at[::-1])[::-1]
    # from the highest threshold down, between (0, 0) and (1, 1)
    tp = np.concatenate([[0.0], fixated_above[::-1] / n_fix, [1.0]])
    fp = np.concatenate([[0.0], (pixels_above - fixated_above)[::-1] / (n_pix - n_fix), [1.0]])
    return float(np.sum(np.diff(fp) * (tp[1:] + tp[:-1]) / 2))  # MATLAB trapz(fp, tp)
