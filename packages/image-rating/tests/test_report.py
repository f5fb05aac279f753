"""Per-dimension metrics against scipy and scikit-learn, bootstrap intervals and the noise ceiling."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import mean_absolute_error, mean_squared_error

from image_rating.report import noise_ceiling_r, per_dimension_metrics, plot_per_dimension, plot_scatter, summary_means
from image_rating.synthetic import achievable_r

DIMS = ["A", "B", "C", "D"]


def _data(n: int = 80, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.normal(50, 15, (n, 4))
    pred = target * [1.0, 0.5, -0.2, 0.0] + rng.normal(0, [5, 10, 15, 20], (n, 4)) + 3.0
    return pred, target


def test_per_dimension_metrics_match_scipy_and_sklearn():
    pred, target = _data()
    sds = np.full_like(target, 12.0)
    df = per_dimension_metrics(pred, target, DIMS, rater_sd=sds, n_boot=200, seed=1)
    assert df["dimension"].tolist() == DIMS and (df["n"] == 80).all()
    for j, _ in enumerate(DIMS):
        np.testing.assert_allclose(df["pearson_r"][j], stats.pearsonr(pred[:, j], target[:, j]).statistic, rtol=1e-10)
        np.testing.assert_allclose(df["mae"][j], mean_absolute_error(target[:, j], pred[:, j]), rtol=1e-12)
        np.testing.assert_allclose(df["rmse"][j], np.sqrt(mean_squared_error(target[:, j], pred[:, j])), rtol=1e-12)
        assert df["r_ci_low"][j] < df["pearson_r"][j] < df["r_ci_high"][j]
    np.testing.assert_allclose(df["target_sd"], target.std(axis=0))
    np.testing.assert_allclose(df["rater_sd_mean"], 12.0)
    assert "noise_ceiling_r" not in df  # only with a known number of raters
    means = summary_means(df)
    np.testing.assert_allclose(means["pearson_r"], df["pearson_r"].mean())


def test_bootstrap_interval_covers_the_population_r():
    """Over repeated samples, a 90% interval holds the population r about 90% of the time."""
    rho, hits, trials = 0.6, 0, 60
    cov = [[1, rho], [rho, 1]]
    for k in range(trials):
        xy = np.random.default_rng(100 + k).multivariate_normal([0, 0], cov, size=60)
        df = per_dimension_metrics(xy[:, :1], xy[:, 1:], ["x"], n_boot=300, confidence=0.9, seed=k)
        hits += df["r_ci_low"][0] <= rho <= df["r_ci_high"][0]
    assert 0.75 <= hits / trials <= 0.99


def test_noise_ceiling_recovers_the_known_achievable_r():
    rng = np.random.default_rng(3)
    n_images, n_raters = 4000, 10
    true = rng.normal(50, 15, (n_images, 2))
    rater_sd = np.array([10.0, 60.0])
    ratings = true[None] + rng.normal(size=(n_raters, n_images, 2)) * rater_sd
    mean, sd = ratings.mean(axis=0), ratings.std(axis=0, ddof=1)
    ceiling = noise_ceiling_r(mean, sd, n_raters)
    expected = [achievable_r(15.0, s, n_raters) for s in rater_sd]
    np.testing.assert_allclose(ceiling, expected, atol=0.01)
    np.testing.assert_allclose(ceiling, [stats.pearsonr(true[:, j], mean[:, j]).statistic for j in range(2)], atol=0.01)


def test_constant_prediction_gives_nan_r_and_plots_still_render(tmp_path):
    pred, target = _data(30)
    pred[:, 3] = 7.0
    df = per_dimension_metrics(pred, target, DIMS, rater_sd=np.full_like(target, 5.0), n_raters=8, n_boot=50)
    assert np.isnan(df["pearson_r"][3]) and np.isfinite(df["pearson_r"][:3]).all()
    assert np.isfinite(summary_means(df)["pearson_r"])
    df.loc[0, "r_ci_low"] = df.loc[0, "pearson_r"] + 0.01  # a percentile interval may miss the estimate
    png = plot_per_dimension(df, tmp_path / "p.png")
    scatter = plot_scatter(pred, target, DIMS, tmp_path / "s.png")
    assert png.stat().st_size > 5000 and scatter.stat().st_size > 5000
    df.to_csv(tmp_path / "p.csv", index=False)
    assert pd.read_csv(tmp_path / "p.csv").shape == df.shape
