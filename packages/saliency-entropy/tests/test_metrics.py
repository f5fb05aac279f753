"""Metrics against independent computations: AUC_Judd.m and pysaliency's ROC loop, sklearn, scipy z-scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import zscore
from sklearn.metrics import roc_auc_score

from saliency_entropy.metrics import auc_judd, information_gain, information_gains, log_likelihood, nss


def _log_density(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    raw = rng.normal(size=shape) * 2
    return raw - np.log(np.exp(raw).sum())


def _fixations(rng: np.random.Generator, n: int, shape: tuple[int, int]) -> np.ndarray:
    return np.stack([rng.uniform(0, shape[1], n), rng.uniform(0, shape[0], n)], axis=1)


def _fixation_map(fix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Binary fixation map: pixel [floor(y), floor(x)] of each (x, y) fixation."""
    fmap = np.zeros(shape, dtype=bool)
    fmap[np.floor(fix[:, 1]).astype(int), np.floor(fix[:, 0]).astype(int)] = True
    return fmap


def auc_judd_loop(saliency: np.ndarray, fixmap: np.ndarray) -> float:
    """AUC_Judd.m (MIT saliency benchmark, jitter off) transcribed loop by loop."""
    s = saliency.ravel()
    s = (s - s.min()) / (s.max() - s.min())
    f = fixmap.ravel()
    sth = s[f > 0]
    n_fix, n_pix = len(sth), len(s)
    thresholds = sorted(sth, reverse=True)
    tp, fp = [0.0], [0.0]
    for i, t in enumerate(thresholds, start=1):
        above = int((s >= t).sum())
        tp.append(i / n_fix)
        fp.append((above - i) / (n_pix - n_fix))
    tp.append(1.0)
    fp.append(1.0)
    return sum((fp[k + 1] - fp[k]) * (tp[k + 1] + tp[k]) / 2 for k in range(len(tp) - 1))


def auc_judd_roc_loop(saliency: np.ndarray, fixmap: np.ndarray) -> float:
    """pysaliency's ``general_roc(positives, negatives, judd=1)`` written out: at each fixated value t,
    hit rate = fixated pixels >= t / fixated pixels, false-positive rate = other pixels >= t / other pixels."""
    s, f = saliency.ravel(), fixmap.ravel() > 0
    pos, neg = s[f], s[~f]
    points = [(0.0, 0.0)]
    for t in sorted(set(pos.tolist()), reverse=True):
        points.append((float((neg >= t).sum()) / len(neg), float((pos >= t).sum()) / len(pos)))
    points.append((1.0, 1.0))
    return sum((x1 - x0) * (y1 + y0) / 2 for (x0, y0), (x1, y1) in zip(points, points[1:]))


def test_information_gain_is_the_mean_log2_ratio_at_the_fixated_pixels() -> None:
    rng = np.random.default_rng(0)
    shape = (24, 32)
    model, base = _log_density(rng, shape), _log_density(rng, shape)
    fix = _fixations(rng, 50, shape)
    fix = np.concatenate([fix, fix[:5]])  # repeated fixations count every time
    rows, cols = np.floor(fix[:, 1]).astype(int), np.floor(fix[:, 0]).astype(int)
    expected = np.mean([math.log2(math.exp(model[r, c])) - math.log2(math.exp(base[r, c])) for r, c in zip(rows, cols)])
    assert information_gain(model, fix, base) == pytest.approx(expected, rel=1e-12)
    assert information_gain(torch.from_numpy(model), torch.from_numpy(fix), torch.from_numpy(base)) == pytest.approx(
        expected, rel=1e-12
    )
    assert len(information_gains(model, fix, base)) == 55
    assert information_gain(base, fix, base) == 0.0


def test_log_likelihood_is_information_gain_over_uniform() -> None:
    rng = np.random.default_rng(1)
    shape = (16, 20)
    model = _log_density(rng, shape)
    fix = _fixations(rng, 30, shape)
    uniform = np.full(shape, -math.log(shape[0] * shape[1]))
    assert log_likelihood(model, fix) == pytest.approx(information_gain(model, fix, uniform), rel=1e-12)
    assert log_likelihood(uniform, fix) == pytest.approx(0.0, abs=1e-12)


def test_nss_matches_scipy_zscore_of_the_density_on_unique_fixated_pixels() -> None:
    rng = np.random.default_rng(2)
    shape = (30, 40)
    logp = _log_density(rng, shape)
    fix = _fixations(rng, 40, shape)
    fix = np.concatenate([fix, fix[:10] + 0.01])  # same pixels again: counted once (binary fixation map)
    z = zscore(np.exp(logp), axis=None, ddof=1)
    fmap = _fixation_map(fix, shape)
    assert nss(logp, fix) == pytest.approx(z[fmap].mean(), rel=1e-10)
    assert nss(logp + 3.0, fix) == pytest.approx(nss(logp, fix), rel=1e-10)  # unnormalized log-density
    assert nss(np.exp(logp), fix, log_density=False) == pytest.approx(nss(logp, fix), rel=1e-10)
    assert math.isnan(nss(np.zeros(shape), fix))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_judd_matches_the_benchmark_loop_and_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (20, 25)
    logp = _log_density(rng, shape)
    fix = _fixations(rng, 35, shape)
    fmap = _fixation_map(fix, shape)
    ours = auc_judd(logp, fix)
    assert ours == pytest.approx(auc_judd_loop(logp, fmap), abs=1e-12)
    # sklearn: positives = fixated pixels, negatives = all other pixels. Judd's curve only has points at
    # the positives' values; its trapezoids add exactly fp(last threshold) / (2 Nfix) to the exact AUC.
    exact = roc_auc_score(fmap.ravel(), logp.ravel())
    n_fix = int(fmap.sum())
    lowest = np.sort(logp[fmap])[0]
    fp_last = ((logp >= lowest) & ~fmap).sum() / (fmap.size - n_fix)
    assert ours == pytest.approx(exact + fp_last / (2 * n_fix), abs=1e-12)
    assert auc_judd(np.exp(logp), fix) == pytest.approx(ours, abs=1e-9)  # only the ordering matters


def test_auc_judd_extremes_ties_and_jitter() -> None:
    shape = (10, 10)
    fix = np.array([[2.5, 3.5], [7.2, 1.1], [5.0, 5.0]])
    perfect = np.zeros(shape)
    perfect[np.floor(fix[:, 1]).astype(int), np.floor(fix[:, 0]).astype(int)] = [1.0, 2.0, 3.0]
    assert auc_judd(perfect, fix) == pytest.approx(1.0, abs=1e-12)
    # tied fixated pixels cross a threshold together (pysaliency's rule): a binary map of exactly the
    # fixated pixels is perfect; AUC_Judd.m's one-fixation-at-a-time curve would give 0.9897 here
    tied_top = (perfect > 0).astype(float)
    assert auc_judd(tied_top, fix) == pytest.approx(1.0, abs=1e-12)
    assert auc_judd(tied_top, fix) == pytest.approx(auc_judd_roc_loop(tied_top, perfect > 0), abs=1e-12)
    assert auc_judd(-perfect, fix) == pytest.approx(auc_judd_loop(-perfect, perfect > 0), abs=1e-12)
    assert math.isnan(auc_judd(np.ones(shape), fix))
    tied = np.ones(shape)
    tied[0, 0] = 0.0
    jittered = auc_judd(tied, fix, jitter=True, seed=5)
    noise = np.random.default_rng(5).random(shape) / 1e7  # AUC_Judd.m: rand(size(map)) / 10000000
    assert jittered == pytest.approx(auc_judd_loop(tied + noise, perfect > 0), abs=1e-12)
    assert jittered != auc_judd(tied, fix)
    with pytest.raises(ValueError, match="NaN"):
        auc_judd(np.where(perfect > 2, np.nan, perfect), fix)


@pytest.mark.parametrize("seed", [0, 1])
def test_auc_judd_is_exact_for_values_one_ulp_from_the_thresholds(seed: int) -> None:
    """Pixels equal to a fixated value or one float64 step above/below it, ties among fixated pixels,
    -inf (zero density) and a heavy tail: every comparison with a threshold must still be exact."""
    rng = np.random.default_rng(seed)
    shape = (60, 80)
    logp = _log_density(rng, shape)
    fix = _fixations(rng, 40, shape)
    fmap = _fixation_map(fix, shape)
    values = logp[fmap]
    others = np.flatnonzero(~fmap.ravel())
    flat = logp.ravel()
    pick = rng.choice(others, 3 * len(values), replace=False).reshape(3, -1)
    flat[pick[0]] = values
    flat[pick[1]] = np.nextafter(values, np.inf)
    flat[pick[2]] = np.nextafter(values, -np.inf)
    fixated = np.flatnonzero(fmap.ravel())
    flat[fixated[:4]] = flat[fixated[4]]  # tied fixated pixels
    flat[rng.choice(others, 50, replace=False)] = -np.inf
    flat[rng.choice(others, 5, replace=False)] = 1e300
    assert auc_judd(logp, fix) == pytest.approx(auc_judd_roc_loop(logp, fmap), abs=1e-12)
    tiny_range = 1e6 + logp * 1e-25  # a range float32 cannot scale: the exact fallback
    assert auc_judd(tiny_range, fix) == pytest.approx(auc_judd_roc_loop(tiny_range, fmap), abs=1e-12)


def test_fixations_outside_the_map_are_an_error() -> None:
    with pytest.raises(ValueError, match=r"fixation \(x=10.0, y=2.0\) lies outside the 10x5 map"):
        information_gain(np.zeros((5, 10)), np.array([[10.0, 2.0]]), np.zeros((5, 10)))
    with pytest.raises(ValueError, match="outside"):
        nss(np.zeros((5, 10)), np.array([[1.0, float("nan")]]))
