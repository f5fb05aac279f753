"""Uncertainty of the go/no-go criteria: paired bootstrap over images, spread over seeds, decisions.

Information gain (IG) of a run on a data set is fixation-weighted, as in ``evaluate``:
``IG = sum_i n_i ig_i / sum_i n_i`` over images i with ``n_i`` fixations and per-fixation gain ``ig_i``
(bits). The baseline and the regularized run are evaluated on the same images, so their difference is
estimated with a *paired* bootstrap: each resample draws images with replacement and computes both runs'
IG on the same draw (with several seeds, every seed's pair on the same draw, then their mean). The
interval is the percentile interval of the resampled statistic at ``confidence`` (95% in the configs),
from a seeded generator; resamples are drawn as one (resamples, images) index matrix, so 2,000 resamples
cost milliseconds.

A criterion with an interval passes when the whole interval lies on the passing side of its threshold,
fails when it lies wholly on the failing side, and is inconclusive when it straddles the threshold.
Criteria measured once per seed (bias-map entropy, stability) use the spread over seeds the same way:
all seeds pass, none passes, or they disagree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

LOG2 = math.log(2.0)
Decision = Literal["PASS", "FAIL", "INCONCLUSIVE"]


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap interval."""

    estimate: float
    low: float
    high: float
    confidence: float
    resamples: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def bootstrap_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) indices drawn with replacement from ``range(n)`` by a seeded generator."""
    if n < 1:
        raise ValueError("the bootstrap needs at least one image")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def percentile_interval(
    statistic: Callable[[np.ndarray], np.ndarray], n: int, *, resamples: int, confidence: float, seed: int
) -> Interval:
    """Percentile bootstrap interval of ``statistic``, which maps an index array (..., n) to values (...).

    The estimate is the statistic on the original sample (indices ``0..n-1``).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    estimate = float(statistic(np.arange(n)[None])[0])
    values = statistic(bootstrap_indices(n, resamples, seed))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return Interval(estimate, float(low), float(high), confidence, resamples)


def weighted_mean(values: np.ndarray, weights: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``sum w v / sum w`` over the images in ``index`` (..., n), for each leading index."""
    return (values[index] * weights[index]).sum(-1) / weights[index].sum(-1)


@dataclass(frozen=True)
class PairedIG:
    """Per-image IG (bits/fixation) of the baseline and the regularized run on the same images, one row
    per seed: ``base``, ``reg`` (K, n); ``n_fixations`` (n,), the same for every seed."""

    base: np.ndarray
    reg: np.ndarray
    n_fixations: np.ndarray

    def __post_init__(self) -> None:
        if self.base.shape != self.reg.shape or self.base.ndim != 2 or self.base.shape[1] != len(self.n_fixations):
            raise ValueError(
                f"paired IG tables must be (seeds, images) with one fixation count per image; got "
                f"{self.base.shape}, {self.reg.shape}, {self.n_fixations.shape}"
            )

    def ig(self, which: Literal["base", "reg"], index: np.ndarray) -> np.ndarray:
        """Mean over seeds of the fixation-weighted IG on the images in ``index`` (..., n)."""
        table = self.base if which == "base" else self.reg
        return np.mean([weighted_mean(row, self.n_fixations, index) for row in table], axis=0)

    def gain(self, index: np.ndarray) -> np.ndarray:
        """IG(regularized) - IG(baseline), bits/fixation."""
        return self.ig("reg", index) - self.ig("base", index)

    def drop_pct(self, index: np.ndarray) -> np.ndarray:
        """100 (IG(baseline) - IG(regularized)) / |IG(baseline)|: the in-domain loss in % of the baseline."""
        base = self.ig("base", index)
        return 100.0 * (base - self.ig("reg", index)) / np.abs(base)

    def per_seed_ig(self, which: Literal["base", "reg"]) -> np.ndarray:
        """(K,) fixation-weighted IG of each seed's run on all images."""
        table = self.base if which == "base" else self.reg
        return table @ self.n_fixations / self.n_fixations.sum()

    def per_seed_gain(self) -> np.ndarray:
        return self.per_seed_ig("reg") - self.per_seed_ig("base")

    def per_seed_drop_pct(self) -> np.ndarray:
        base = self.per_seed_ig("base")
        return 100.0 * (base - self.per_seed_ig("reg")) / np.abs(base)


def decide(low: float, high: float, threshold: float, rule: Literal[">=", ">", "<="]) -> Decision:
    """PASS when [low, high] lies on the passing side of ``threshold``, FAIL when on the failing side,
    INCONCLUSIVE when it straddles it."""
    if rule == ">=":
        return "PASS" if low >= threshold else "FAIL" if high < threshold else "INCONCLUSIVE"
    if rule == ">":
        return "PASS" if low > threshold else "FAIL" if high <= threshold else "INCONCLUSIVE"
    if rule == "<=":
        return "PASS" if high <= threshold else "FAIL" if low > threshold else "INCONCLUSIVE"
    raise ValueError(f"unknown rule {rule!r}")


def seed_spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one seed), min and max over seeds."""
    a = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(a.mean()),
        "sd": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
        "min": float(a.min()),
        "max": float(a.max()),
        "seeds": int(len(a)),
    }


def verdict(decisions: Sequence[Decision]) -> str:
    """GO when every criterion passes, NO-GO when one fails, else INCONCLUSIVE."""
    if any(d == "FAIL" for d in decisions):
        return "NO-GO"
    if all(d == "PASS" for d in decisions):
        return "GO"
    return "INCONCLUSIVE"


def entropy_ceiling_pct(base_entropy_nats: float, height: int, width: int) -> float:
    """The largest possible bias-entropy increase in % of the baseline's: the uniform map's log(H W)."""
    return 100.0 * (math.log(height * width) - base_entropy_nats) / base_entropy_nats
