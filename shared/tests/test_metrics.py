import numpy as np
import pytest
import torch
from scipy import stats

from perception_shared.metrics import MeanDict, RunningMean, bootstrap_ci, mae, pearson_r, rmse


def test_pearson_matches_scipy_per_column():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = 0.5 * x + rng.normal(size=(200, 5)) * np.arange(1, 6)
    r = pearson_r(x, y)
    expected = [stats.pearsonr(x[:, d], y[:, d])[0] for d in range(5)]
    np.testing.assert_allclose(r, expected, rtol=1e-10)
    assert pearson_r(torch.tensor(x[:, 0]), torch.tensor(y[:, 0])) == pytest.approx(expected[0])


def test_pearson_constant_column_is_nan_not_an_error():
    r = pearson_r(np.c_[np.ones(10), np.arange(10)], np.c_[np.arange(10), np.arange(10)])
    assert np.isnan(r[0]) and r[1] == pytest.approx(1.0)


def test_mae_rmse_against_explicit_formulas():
    p = np.array([[1.0, 2.0], [3.0, 5.0], [0.0, -1.0]])
    t = np.array([[2.0, 2.0], [1.0, 1.0], [0.0, 2.0]])
    np.testing.assert_allclose(mae(p, t), [(1 + 2 + 0) / 3, (0 + 4 + 3) / 3])
    np.testing.assert_allclose(rmse(p, t), [np.sqrt((1 + 4 + 0) / 3), np.sqrt((0 + 16 + 9) / 3)])
    with pytest.raises(ValueError, match="shape"):
        mae(p, t[:2])


def test_running_means_weight_uneven_batches_exactly():
    values = np.arange(10, dtype=float)
    rm, md = RunningMean(), MeanDict()
    for batch in (values[:4], values[4:7], values[7:]):  # 4, 3, 3 items
        rm.update(batch.mean(), n=len(batch))
        md.update({"v": torch.tensor(batch.mean()), "sq": (batch**2).mean()}, n=len(batch))
    assert rm.compute() == pytest.approx(values.mean())
    assert rm.reduce() == pytest.approx(values.mean())
    out = md.reduce()
    assert out["v"] == pytest.approx(values.mean()) and out["sq"] == pytest.approx((values**2).mean())


def test_bootstrap_ci_brackets_the_statistic_and_narrows_with_n():
    rng = np.random.default_rng(1)
    x = rng.normal(size=400)
    y = x + rng.normal(size=400)
    lo, hi = bootstrap_ci(pearson_r, x, y, n_boot=300, seed=0)
    r = pearson_r(x, y)
    assert lo < r < hi
    lo2, hi2 = bootstrap_ci(pearson_r, x[:50], y[:50], n_boot=300, seed=0)
    assert (hi2 - lo2) > (hi - lo)
    # the textbook normal-theory interval (Fisher z) for r is close to the bootstrap one
    z, se = np.arctanh(r), 1 / np.sqrt(len(x) - 3)
    assert lo == pytest.approx(np.tanh(z - 1.96 * se), abs=0.03)
    assert hi == pytest.approx(np.tanh(z + 1.96 * se), abs=0.03)
