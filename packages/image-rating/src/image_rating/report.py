"""Per-dimension accuracy in rating units: table, bar chart and scatter plots.

Columns of the per-dimension table (one row per dimension, all in rating units unless noted):

* ``pearson_r`` with its percentile-bootstrap interval ``r_ci_low`` / ``r_ci_high`` (images resampled);
* ``mae``, ``rmse``; ``target_sd`` (sd of the observed means: the RMSE of always predicting their mean);
* ``pred_sd`` (sd of the predictions; much below ``target_sd`` means the model hedges toward the mean);
* ``rater_sd_mean``: the mean over images of the raters' sd (the CSV's sd column);
* ``noise_ceiling_r`` (only with ``n_raters``): the correlation a perfect model of the true (infinitely
  many raters) mean rating would reach against these observed means,
  ``sqrt(1 - mean(sd**2 / n_raters) / var(means))``, assuming independent rater noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perception_shared.metrics import bootstrap_ci, mae, pearson_r, rmse
from perception_shared.plotting import plt
from perception_shared.pretrained import WeightsSource

TOY_NOTE = "TOY SETTINGS (demo/test config, not a research result)"


def describe_weights(weights: dict[str, Any] | WeightsSource) -> str:
    """One line for logs and reports: the identifier, where the file came from and its sha256, or RANDOM INIT."""
    w = weights.to_dict() if isinstance(weights, WeightsSource) else weights
    if not w.get("pretrained", w.get("kind") != "random"):
        return f"{w['identifier']}: RANDOM INIT (pretrained: false; no ImageNet weights)"
    return f"{w['identifier']} from {w['kind']} {w['path']} (sha256 {w['sha256']})"


def noise_ceiling_r(means: np.ndarray, sds: np.ndarray, n_raters: int) -> np.ndarray:
    """Per-column ceiling of Pearson r from rater noise: ``(N, D)`` means and sds -> ``(D,)``."""
    total = np.var(means, axis=0, ddof=1)
    noise = np.nanmean(sds**2, axis=0) / n_raters
    with np.errstate(invalid="ignore", divide="ignore"):
        reliability = 1.0 - noise / total
    return np.sqrt(np.clip(reliability, 0.0, 1.0))


def per_dimension_metrics(
    pred: np.ndarray,
    target: np.ndarray,
    dimensions: Sequence[str],
    *,
    rater_sd: np.ndarray | None = None,
    n_raters: int | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Metrics of ``pred`` against ``target``, both ``(N, D)`` in rating units (see the module docstring)."""
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape or pred.ndim != 2 or pred.shape[1] != len(dimensions):
        raise ValueError(f"pred {pred.shape} and target {target.shape} must both be (N, {len(dimensions)})")
    df = pd.DataFrame({"dimension": list(dimensions), "n": len(pred)})
    df["pearson_r"] = pearson_r(pred, target)
    if n_boot > 0 and len(pred) >= 3:
        lo, hi = bootstrap_ci(pearson_r, pred, target, n_boot=n_boot, confidence=confidence, seed=seed)
    else:
        lo = hi = np.full(len(dimensions), np.nan)
    df["r_ci_low"], df["r_ci_high"] = lo, hi
    df.attrs["confidence"] = confidence
    df["mae"] = mae(pred, target)
    df["rmse"] = rmse(pred, target)
    df["target_mean"] = target.mean(axis=0)
    df["target_sd"] = target.std(axis=0)
    df["pred_sd"] = pred.std(axis=0)
    if rater_sd is not None:
        with np.errstate(invalid="ignore"):
            df["rater_sd_mean"] = np.nanmean(np.asarray(rater_sd, dtype=np.float64), axis=0)
        if n_raters is not None and len(pred) >= 2:
            df["noise_ceiling_r"] = noise_ceiling_r(target, np.asarray(rater_sd, dtype=np.float64), n_raters)
    return df


def summary_means(df: pd.DataFrame) -> dict[str, float]:
    """Unweighted means over dimensions of r, MAE and RMSE (NaN r of constant columns ignored)."""
    r = df["pearson_r"].to_numpy(dtype=np.float64)
    return {
        "pearson_r": float(np.nanmean(r)) if np.isfinite(r).any() else float("nan"),
        "mae": float(df["mae"].mean()),
        "rmse": float(df["rmse"].mean()),
    }


def plot_per_dimension(df: pd.DataFrame, path: str | Path, title: str = "per-dimension performance") -> Path:
    """Bars of r (with bootstrap interval and, if known, the noise ceiling), MAE and RMSE per dimension."""
    dims = df["dimension"].tolist()
    x = np.arange(len(dims))
    fig, axes = plt.subplots(1, 3, figsize=(max(10.0, 0.9 * len(dims) * 1.6), 4.2))
    r = df["pearson_r"].to_numpy()
    lo, hi = df["r_ci_low"].to_numpy(), df["r_ci_high"].to_numpy()
    has_ci = np.isfinite(lo).any()
    axes[0].bar(x, r, color="tab:blue")
    if has_ci:  # drawn from its ends: a percentile interval need not contain the estimate
        axes[0].vlines(x, lo, hi, color="black", lw=1)
        axes[0].scatter(np.r_[x, x], np.r_[lo, hi], marker="_", s=30, color="black", lw=1)
    r_title = "Pearson r" + (f" ({_percent(df)} bootstrap CI)" if has_ci else "")
    if "noise_ceiling_r" in df:
        axes[0].scatter(x, df["noise_ceiling_r"], marker="_", s=200, color="tab:red", zorder=3)
        r_title += "; red \u2014 noise ceiling"
    low = np.nanmin(np.r_[r, lo if has_ci else r, 0.0])
    axes[0].set_ylim(min(-0.1, float(low) - 0.05), 1.0)
    axes[0].axhline(0, color="grey", lw=0.8)
    axes[0].set_title(r_title, fontsize=10)
    axes[1].bar(x, df["mae"], color="tab:orange")
    axes[1].set_title("MAE (rating units)", fontsize=10)
    axes[2].bar(x, df["rmse"], color="tab:red")
    axes[2].scatter(x, df["target_sd"], marker="_", s=200, color="black", zorder=3)
    axes[2].set_title("RMSE (rating units); \u2014 sd of the targets", fontsize=10)
    for ax in axes:
        ax.set_xticks(x)
        ax.set_xticklabels(dims, rotation=60, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p, dpi=100)
    plt.close(fig)
    return p


def _percent(df: pd.DataFrame) -> str:
    return f"{100 * df.attrs.get('confidence', 0.95):g}%"


def plot_scatter(
    pred: np.ndarray, target: np.ndarray, dimensions: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """Predicted against observed mean rating, one panel per dimension, with the identity line."""
    n = len(dimensions)
    cols = min(n, 5)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.5 * rows), squeeze=False)
    for j, (ax, d) in enumerate(zip(axes.flat, dimensions)):
        t, p = target[:, j], pred[:, j]
        ax.scatter(t, p, s=6, alpha=0.6)
        lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
        ax.set_title(f"{d} (r={float(pearson_r(p, t)):.2f})", fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.supxlabel("observed mean rating", fontsize=9)
    fig.supylabel("predicted", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p, dpi=100)
    plt.close(fig)
    return p


def predictions_frame(
    names: Sequence[str], pred: np.ndarray, dimensions: Sequence[str], target: np.ndarray | None = None
) -> pd.DataFrame:
    """One row per image: ``image``, then ``<dim>_pred`` (and ``<dim>_true`` when targets are given)."""
    out = {"image": list(names)}
    for j, d in enumerate(dimensions):
        if target is not None:
            out[f"{d}_true"] = target[:, j]
        out[f"{d}_pred"] = pred[:, j]
    return pd.DataFrame(out)
