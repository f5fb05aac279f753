"""The center prior: where people look regardless of the image, fitted on the training fixations.

It is both the model's log center bias (weighted in the finalizer) and the baseline of the information
gain. The fit follows pysaliency's ``BaselineModel`` / ``CrossvalidatedBaselineModel``:

* every training fixation is normalized to the unit square, ``(x / width, y / height)``;
* the density is a Gaussian kernel density estimate (isotropic in those units, bandwidth ``h``),
  restricted to the square and renormalized, mixed with a uniform density of weight ``eps``:
  ``p = (1 - eps) * KDE_h + eps``;
* ``h`` and ``eps`` maximize the cross-validated log-likelihood: the images are split into ``folds``
  folds (seeded; leave-one-image-out when there are fewer images), each fold's fixations are scored
  under the prior fitted on the other folds, over a log-spaced grid of ``h`` and the listed ``eps``.

The KDE is computed on a ``grid`` x ``grid`` histogram of the unit square (fixations binned to cell
centers, then a Gaussian filter that drops the mass leaving the square); with the default 128 cells a
cell is 0.008 wide, below the smallest bandwidth searched (0.01). On an image grid of (H, W) pixels the
prior is the density interpolated bilinearly at the pixel centers and renormalized over the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from .config import CenterPriorConfig

CV_SEED = 0


@dataclass
class CenterPrior:
    """A fitted prior: ``density`` (grid, grid), per unit area over the unit square (mean 1)."""

    bandwidth: float
    uniform_weight: float
    density: np.ndarray
    cv_log_likelihood: float  # nats per fixation, per unit area of the unit square
    n_fixations: int
    n_images: int
    cv_table: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "bandwidth": self.bandwidth,
            "uniform_weight": self.uniform_weight,
            "cv_log_likelihood_nats": self.cv_log_likelihood,
            "cv_information_gain_over_uniform_bits": self.cv_log_likelihood / np.log(2),
            "grid": int(self.density.shape[0]),
            "n_fixations": self.n_fixations,
            "n_images": self.n_images,
            "cv_table": self.cv_table,
        }


def _histogram(xy: np.ndarray, grid: int) -> np.ndarray:
    clipped = np.clip(xy, 0.0, np.nextafter(1.0, 0.0))
    hist, _, _ = np.histogram2d(clipped[:, 1], clipped[:, 0], bins=grid, range=[[0, 1], [0, 1]])
    return hist


def _kde(hist: np.ndarray, bandwidth: float) -> np.ndarray:
    """The binned KDE as a density per unit area (mean 1 over the grid)."""
    grid = hist.shape[0]
    smooth = gaussian_filter(hist, sigma=bandwidth * grid, mode="constant", truncate=4.0)
    total = smooth.sum()
    return smooth * (grid * grid / total) if total > 0 else np.ones_like(hist)


def fit_center_prior(xy: np.ndarray, owner: np.ndarray, cfg: CenterPriorConfig, grid: int = 128) -> CenterPrior:
    """Fit the prior to normalized fixations ``xy`` (N, 2) in [0, 1); ``owner`` (N,) gives each one's image."""
    xy = np.asarray(xy, dtype=np.float64)
    owner = np.asarray(owner)
    if len(xy) == 0:
        raise ValueError("cannot fit a center prior without fixations")
    images = np.unique(owner)
    folds = min(cfg.folds, len(images))
    order = np.random.default_rng(CV_SEED).permutation(images)
    fold_of_image = {img: k % folds for k, img in enumerate(order)}
    fold = np.array([fold_of_image[o] for o in owner])
    total = _histogram(xy, grid)
    fold_hists = [_histogram(xy[fold == k], grid) for k in range(folds)]
    cells = [np.clip((xy[fold == k] * grid).astype(np.int64), 0, grid - 1) for k in range(folds)]
    bandwidths = np.geomspace(cfg.bandwidth_min, cfg.bandwidth_max, cfg.bandwidth_steps)
    table = []
    for h in bandwidths:
        kdes = [_kde(total - fold_hists[k], h) for k in range(folds)]
        for eps in cfg.uniform_weights:
            ll = 0.0
            for k in range(folds):
                p = (1 - eps) * kdes[k] + eps
                ll += np.log(p[cells[k][:, 1], cells[k][:, 0]]).sum()
            table.append(
                {"bandwidth": float(h), "uniform_weight": float(eps), "cv_log_likelihood": float(ll / len(xy))}
            )
    best = max(table, key=lambda r: r["cv_log_likelihood"])
    density = (1 - best["uniform_weight"]) * _kde(total, best["bandwidth"]) + best["uniform_weight"]
    return CenterPrior(
        bandwidth=best["bandwidth"],
        uniform_weight=best["uniform_weight"],
        density=density,
        cv_log_likelihood=best["cv_log_likelihood"],
        n_fixations=len(xy),
        n_images=len(images),
        cv_table=table,
    )


def prior_log_density(density: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(H, W) log-probabilities over pixels (nats, ``exp`` sums to 1) of a (G, G) unit-square density."""
    d = density.to(torch.float64 if density.device.type == "cpu" else torch.float32)
    values = F.interpolate(d[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    values = values.clamp_min(torch.finfo(values.dtype).tiny)
    return (values.log() - values.sum().log()).to(density.dtype)
