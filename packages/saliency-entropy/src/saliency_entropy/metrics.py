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
  saliency map a probabilistic model gives for NSS (Kümmerer, Wallis & Bethge, ECCV 2018).
* ``auc_judd`` (MIT benchmark ``AUC_Judd.m``): the map is min-max normalized; the thresholds are its
  values at the fixated pixels (binary fixation map); at the i-th highest threshold the true-positive
  rate is i / Nfix and the false-positive rate is (#pixels >= threshold - i) / (Npixels - Nfix), i.e. all
  non-fixated pixels are the negatives; the area is the trapezoid rule over (0,0), these points and
  (1,1). Ties count as above the threshold; ``jitter=True`` adds U(0, 1e-7) first, as the benchmark does.
  AUC only depends on the ordering of the map, so the log-density is used directly.
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


def _binary_fixation_map(fixations: Any, shape: tuple[int, int]) -> np.ndarray:
    rows, cols = fixation_pixels(fixations, shape)
    fmap = np.zeros(shape, dtype=bool)
    fmap[rows, cols] = True
    return fmap


def nss(saliency_map: Any, fixations: Any, *, log_density: bool = True) -> float:
    """Normalized scanpath saliency (MIT definition, see the module docstring); NaN for a flat map."""
    m = _map(saliency_map, "saliency_map")
    fmap = _binary_fixation_map(fixations, m.shape)
    if not fmap.any():
        return float("nan")
    s = np.exp(m - m.max()) if log_density else m  # the density up to a factor, which NSS ignores
    std = s.std(ddof=1)
    if not std > 0:
        return float("nan")
    return float(((s[fmap] - s.mean()) / std).mean())


def auc_judd(saliency_map: Any, fixations: Any, *, jitter: bool = False, seed: int = 0) -> float:
    """AUC-Judd (MIT definition, see the module docstring); NaN without fixations or for a flat map."""
    m = _map(saliency_map, "saliency_map")
    fmap = _binary_fixation_map(fixations, m.shape).ravel()
    s = m.ravel().copy()
    n_fix = int(fmap.sum())
    if n_fix == 0:
        return float("nan")
    if jitter:
        s += np.random.default_rng(seed).random(s.shape) / 1e7
    lo, hi = s.min(), s.max()
    if not hi > lo:
        return float("nan")
    s = (s - lo) / (hi - lo)
    n_pix = s.size
    thresholds = np.sort(s[fmap])[::-1]
    above = n_pix - np.searchsorted(np.sort(s), thresholds, side="left")  # pixels with value >= threshold
    i = np.arange(1, n_fix + 1)
    tp = np.concatenate([[0.0], i / n_fix, [1.0]])
    fp = np.concatenate([[0.0], (above - i) / (n_pix - n_fix), [1.0]])
    return float(np.sum(np.diff(fp) * (tp[1:] + tp[:-1]) / 2))  # MATLAB trapz(fp, tp)
