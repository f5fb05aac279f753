"""The verdict's statistics: the paired bootstrap covers the true difference at about its nominal rate,
decisions follow the interval, the entropy ceiling follows log(H W)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from saliency_entropy.stats import (
    PairedIG,
    bootstrap_indices,
    decide,
    entropy_ceiling_pct,
    percentile_interval,
    seed_spread,
    verdict,
)


def _simulated_pair(rng: np.random.Generator, n_images: int, delta: float) -> PairedIG:
    """Per-image IG of two models on the same images: a shared image effect (what pairing removes),
    a model difference ``delta`` bits/fixation on average, and per-image noise shrinking with fixations."""
    n = rng.integers(5, 40, size=n_images).astype(float)
    image = rng.normal(1.0, 0.8, size=n_images)
    base = image + rng.normal(0, 0.6, size=n_images) / np.sqrt(n)
    reg = image + delta + rng.normal(0, 0.3, size=n_images) + rng.normal(0, 0.6, size=n_images) / np.sqrt(n)
    return PairedIG(base[None], reg[None], n)


def test_paired_bootstrap_covers_the_true_difference_at_its_nominal_rate() -> None:
    """200 simulated evaluations of 80 images: the 95% interval of the IG gain contains the true gain
    (0.05 bits/fixation; the image-level differences have mean 0.05 whatever the fixation weights) in
    about 95% of them (binomial sd 1.5%; percentile intervals run slightly under their level)."""
    rng = np.random.default_rng(0)
    delta, repetitions = 0.05, 200
    covered = 0
    for r in range(repetitions):
        pair = _simulated_pair(rng, 80, delta)
        iv = percentile_interval(pair.gain, 80, resamples=1000, confidence=0.95, seed=r)
        covered += iv.low <= delta <= iv.high
    assert 0.90 <= covered / repetitions <= 0.99


def test_pairing_narrows_the_interval_of_a_difference() -> None:
    """The same data bootstrapped unpaired (independent draws for each model) gives a far wider
    interval: the shared image effect cancels only when both models see the same resampled images."""
    rng = np.random.default_rng(1)
    pair = _simulated_pair(rng, 100, 0.05)
    paired = percentile_interval(pair.gain, 100, resamples=2000, confidence=0.95, seed=0)
    i, j = bootstrap_indices(100, 2000, 1), bootstrap_indices(100, 2000, 2)
    unpaired = pair.ig("reg", i) - pair.ig("base", j)
    low, high = np.quantile(unpaired, [0.025, 0.975])
    assert (high - low) > 2 * (paired.high - paired.low)
    assert paired.estimate == pytest.approx(pair.per_seed_gain()[0])


def test_the_estimate_is_the_fixation_weighted_information_gain() -> None:
    pair = PairedIG(np.array([[1.0, 3.0]]), np.array([[2.0, 2.0]]), np.array([1.0, 3.0]))
    iv = percentile_interval(pair.gain, 2, resamples=200, confidence=0.9, seed=0)
    assert iv.estimate == pytest.approx((1 * 2 + 3 * 2) / 4 - (1 * 1 + 3 * 3) / 4)
    assert iv.low <= iv.estimate <= iv.high
    assert pair.drop_pct(np.arange(2)[None])[0] == pytest.approx(100 * (2.5 - 2.0) / 2.5)


def test_decisions_pass_fail_or_straddle() -> None:
    assert decide(0.1, 0.3, 0.0, ">") == "PASS"
    assert decide(-0.3, -0.1, 0.0, ">") == "FAIL"
    assert decide(-0.1, 0.2, 0.0, ">") == "INCONCLUSIVE"
    assert decide(0.0, 0.2, 0.0, ">") == "INCONCLUSIVE" and decide(0.0, 0.2, 0.0, ">=") == "PASS"
    assert decide(-3.0, 1.5, 2.0, "<=") == "PASS" and decide(2.5, 4.0, 2.0, "<=") == "FAIL"
    assert decide(1.0, 3.0, 2.0, "<=") == "INCONCLUSIVE"
    assert verdict(["PASS", "PASS"]) == "GO"
    assert verdict(["PASS", "INCONCLUSIVE"]) == "INCONCLUSIVE"
    assert verdict(["INCONCLUSIVE", "FAIL"]) == "NO-GO"


def test_entropy_ceiling_and_seed_spread() -> None:
    # a baseline bias map at 12 nats on a 768x1024 grid can rise at most to log(786432) = 13.575 nats
    assert entropy_ceiling_pct(12.0, 768, 1024) == pytest.approx(100 * (math.log(768 * 1024) - 12) / 12)
    assert entropy_ceiling_pct(12.0, 768, 1024) < 13.2
    spread = seed_spread([1.0, 2.0, 4.0])
    assert spread == {"mean": pytest.approx(7 / 3), "sd": pytest.approx(np.std([1, 2, 4], ddof=1)), "min": 1.0, "max": 4.0, "seeds": 3}
    assert seed_spread([2.5])["sd"] == 0.0
