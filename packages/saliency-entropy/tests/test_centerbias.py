"""The center prior: binned KDE vs direct Gaussian sums, cross-validated fit, normalization."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from saliency_entropy.centerbias import _histogram, _kde, fit_center_prior, prior_log_density
from saliency_entropy.config import CenterPriorConfig


def test_binned_kde_equals_the_direct_sum_of_gaussians_restricted_to_the_square() -> None:
    rng = np.random.default_rng(0)
    grid, h = 32, 0.08
    xy = np.clip(rng.normal(0.5, 0.15, (200, 2)), 0, 0.999)
    ours = _kde(_histogram(xy, grid), h)
    centers = (np.arange(grid) + 0.5) / grid
    cells = (np.floor(xy * grid) + 0.5) / grid  # the KDE is of the binned fixations
    gx = np.exp(-((centers[None, :] - cells[:, 0:1]) ** 2) / (2 * h**2))
    gy = np.exp(-((centers[None, :] - cells[:, 1:2]) ** 2) / (2 * h**2))
    direct = gy.T @ gx  # (rows = y, cols = x)
    direct *= grid * grid / direct.sum()
    np.testing.assert_allclose(ours, direct, rtol=2e-3, atol=1e-3)
    assert ours.mean() == pytest.approx(1.0)


def test_cross_validation_finds_the_generating_bandwidth_and_prefers_little_uniform_mass() -> None:
    rng = np.random.default_rng(1)
    owner = np.repeat(np.arange(60), 40)
    xy = np.clip(rng.normal(0.5, 0.12, (len(owner), 2)), 0, 0.9999)
    cfg = CenterPriorConfig(folds=5, bandwidth_min=0.005, bandwidth_max=0.5, bandwidth_steps=30)
    prior = fit_center_prior(xy, owner, cfg, grid=64)
    # For 2400 points from N(0.5, 0.12^2) Silverman's rule gives about 0.12 * 2400^(-1/6) = 0.033.
    assert 0.015 < prior.bandwidth < 0.08
    assert prior.uniform_weight <= 0.01
    assert len(prior.cv_table) == 30 * len(cfg.uniform_weights)
    best = max(r["cv_log_likelihood"] for r in prior.cv_table)
    assert prior.cv_log_likelihood == best > 0  # better than uniform (0 nats per unit area)
    assert prior.density.mean() == pytest.approx(1.0)


def test_outliers_raise_the_uniform_weight() -> None:
    rng = np.random.default_rng(2)
    owner = np.repeat(np.arange(40), 50)
    xy = np.clip(rng.normal(0.5, 0.05, (len(owner), 2)), 0, 0.9999)
    clean = fit_center_prior(xy, owner, CenterPriorConfig(folds=4), grid=64)
    noisy_xy = xy.copy()
    noisy_xy[::5] = rng.uniform(0, 1, (len(xy[::5]), 2))  # 20% uniform fixations
    noisy = fit_center_prior(noisy_xy, owner, CenterPriorConfig(folds=4), grid=64)
    assert noisy.uniform_weight > clean.uniform_weight
    assert noisy.uniform_weight >= 0.1


@pytest.mark.parametrize("size", [(7, 9), (96, 128), (64, 64)])
def test_prior_log_density_is_normalized_on_any_grid(size: tuple[int, int]) -> None:
    density = torch.from_numpy(np.random.default_rng(3).uniform(0.2, 2.0, (16, 16)))
    logp = prior_log_density(density, size)
    assert logp.shape == size
    assert float(logp.exp().sum()) == pytest.approx(1.0, abs=1e-9)
    flat = prior_log_density(torch.ones(16, 16), size)
    assert torch.allclose(flat, torch.full(size, -math.log(size[0] * size[1]), dtype=flat.dtype))
