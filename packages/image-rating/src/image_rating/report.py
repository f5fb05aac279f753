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

from perception_shared.figures import Quantity, plt, run_status, save_figure, set_header, set_title, subtitle
from perception_shared.metrics import bootstrap_ci, mae, pearson_r, rmse
from perception_shared.plotting import Series
from perception_shared.pretrained import WeightsSource

TOY_NOTE = "TOY SETTINGS (demo/test config, not a research result)"


def describe_weights(weights: dict[str, Any] | WeightsSource) -> str:
    """One line for logs and reports: the identifier, where the file came from and its sha256, or RANDOM INIT."""
    w = weights.to_dict() if isinstance(weights, WeightsSource) else weights
    if not is_pretrained(w):
        return f"{w['identifier']}: RANDOM INIT (pretrained: false; no ImageNet weights)"
    return f"{w['identifier']} from {w['kind']} {w['path']} (sha256 {w['sha256']})"


def is_pretrained(weights: dict[str, Any] | WeightsSource) -> bool:
    w = weights.to_dict() if isinstance(weights, WeightsSource) else weights
    return bool(w.get("pretrained", w.get("kind") != "random"))


def figure_sub(run_name: str, toy: bool, weights: dict[str, Any] | WeightsSource, shown: str) -> str:
    """A figure's subtitle: run, TOY / RANDOM INIT status, the split shown (``split_note``), the weights."""
    status = run_status(toy=toy, random_init=not is_pretrained(weights))
    return subtitle(run_name, status, f"{shown}\nbackbone {describe_weights(weights)}")


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


# Axis labels of image-rating's metric keys (beside perception_shared.figures.QUANTITIES)
LABELS = {
    "loss": Quantity("training objective: MSE", "standardized rating\u00b2"),
    "mae": Quantity("MAE", "rating units"),
    "rmse": Quantity("RMSE", "rating units"),
    "pearson_r": Quantity("Pearson r (mean over dimensions)"),
}


def split_note(shown: str, n: int, n_val: int | None = None, source: str = "") -> str:
    """What a report shows and what chose the model: ``test split (n=45, held out) · best epoch chosen on val``."""
    chosen = f"val split (n={n_val})" if n_val else "the val split"
    if shown == "test":
        return f"test split (n={n}, held out: not used for training or selection) \u00b7 best epoch chosen on {chosen}"
    if shown == "val":
        return f"val split (n={n}), which also chose the best epoch: optimistic, not a held-out result"
    if shown == "train":
        return f"train split (n={n}): the images the model was fit on"
    return f"every row of {source or 'the data set'} (n={n}) \u00b7 best epoch chosen on the run's {chosen}"


def history_plot(toy: bool, weights: dict[str, Any] | WeightsSource) -> dict[str, Any]:
    """How ``training_history.png`` shows an image-rating run (``Trainer(history_plot=...)``): image-rating's
    labels, the mean predictor as reference lines, the run's TOY / RANDOM INIT status."""
    return {
        "title": "Training history (means over dimensions; val: the split that chooses the best epoch)",
        "status": run_status(toy=toy, random_init=not is_pretrained(weights)),
        "labels": LABELS,
        "series": {
            "val/mean_predictor_mae": Series("mae", "mean predictor (training means)"),
            "val/mean_predictor_rmse": Series("rmse", "mean predictor (training means)"),
        },
        "constants": ["val/mean_predictor_mae", "val/mean_predictor_rmse"],
    }


def plot_per_dimension(df: pd.DataFrame, path: str | Path, title: str = "per-dimension performance", sub: str = "") -> Path:
    """Pearson r per dimension (bootstrap interval, noise ceiling if known), MAE and RMSE (with the sd of the
    observed means: the RMSE of always predicting their mean), one panel each, dimensions shared."""
    dims = df["dimension"].tolist()
    x = np.arange(len(dims))
    fig, axes = plt.subplots(3, 1, figsize=(max(8.0, 0.55 * len(dims) + 2.0), 9.0), sharex=True, layout="constrained")
    r = df["pearson_r"].to_numpy()
    lo, hi = df["r_ci_low"].to_numpy(), df["r_ci_high"].to_numpy()
    has_ci = np.isfinite(lo).any()
    axes[0].bar(x, r, color="tab:blue", label="Pearson r")
    if has_ci:  # drawn from its ends: a percentile interval need not contain the estimate
        axes[0].vlines(x, lo, hi, color="black", lw=1, label=f"{_percent(df)} bootstrap interval")
        axes[0].scatter(np.r_[x, x], np.r_[lo, hi], marker="_", s=30, color="black", lw=1)
    if "noise_ceiling_r" in df:
        axes[0].scatter(x, df["noise_ceiling_r"], marker="_", s=250, color="tab:red", zorder=3, lw=2,
                        label="noise ceiling (rater noise)")
    low = np.nanmin(np.r_[r, lo if has_ci else r, 0.0])
    axes[0].set_ylim(min(-0.1, float(low) - 0.05), 1.05)
    axes[0].axhline(0, color="grey", lw=0.8)
    axes[0].set_ylabel("Pearson r")
    axes[1].bar(x, df["mae"], color="tab:orange", label="MAE")
    axes[1].set_ylabel("MAE (rating units)")
    axes[2].bar(x, df["rmse"], color="tab:red", label="RMSE")
    axes[2].scatter(x, df["target_sd"], marker="_", s=250, color="black", zorder=3, lw=2,
                    label="sd of observed means (RMSE of predicting their mean)")
    axes[2].set_ylabel("RMSE (rating units)")
    for ax, name in zip(axes, ("Correlation with the observed mean rating", "Mean absolute error", "Root-mean-square error")):
        set_title(ax, name)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes[2].set_xticks(x)
    axes[2].set_xticklabels(dims, rotation=45, ha="right", fontsize=8)
    fig.supxlabel("dimension", fontsize=9)
    set_header(fig, title, sub)
    return save_figure(fig, path)


def _percent(df: pd.DataFrame) -> str:
    return f"{100 * df.attrs.get('confidence', 0.95):g}%"


def plot_scatter(
    pred: np.ndarray, target: np.ndarray, dimensions: Sequence[str], path: str | Path, title: str = "", sub: str = ""
) -> Path:
    """Predicted against observed mean rating, one panel per dimension (same scale on both axes), with the
    identity line; each panel's title gives its Pearson r."""
    n = len(dimensions)
    cols = min(n, 5)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.5 * cols + 0.6, 2.5 * rows + 1.2), squeeze=False, layout="constrained")
    for j, (ax, d) in enumerate(zip(axes.flat, dimensions)):
        t, p = target[:, j], pred[:, j]
        ax.scatter(t, p, s=6, alpha=0.6, color="tab:blue")
        lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="grey", lw=0.8)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal")
        set_title(ax, f"{d} (r = {float(pearson_r(p, t)):.2f})", fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.supxlabel("observed mean rating (rating units)", fontsize=9)
    fig.supylabel("predicted mean rating (rating units)", fontsize=9)
    set_header(fig, title or "Predicted against observed mean rating (grey: identity)", sub)
    return save_figure(fig, path)


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
