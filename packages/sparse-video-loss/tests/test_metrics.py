import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve, precision_recall_fscore_support

from sparse_video_loss import metrics as M


def random_scores(n=2000, seed=0, levels=None):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.05
    scores = np.clip(rng.normal(0.3 + 0.4 * labels, 0.2), 0, 1)
    if levels:  # quantize to create ties between positives and negatives
        scores = np.round(scores * levels) / levels
    return scores, labels


@pytest.mark.parametrize("levels", [None, 10])
def test_pr_curve_and_ap_match_sklearn(levels):
    scores, labels = random_scores(levels=levels)
    precision, recall, thresholds = M.precision_recall_curve(scores, labels)
    sk_p, sk_r, sk_t = precision_recall_curve(labels, scores)
    # sklearn orders by increasing threshold and appends (precision 1, recall 0); it also stops at full recall.
    k = len(sk_t)
    np.testing.assert_allclose(precision[::-1][-k:], sk_p[:-1])
    np.testing.assert_allclose(recall[::-1][-k:], sk_r[:-1])
    np.testing.assert_allclose(thresholds[::-1][-k:], sk_t)
    assert M.average_precision(scores, labels) == pytest.approx(average_precision_score(labels, scores), rel=1e-12)


def test_ap_of_constant_scores_is_the_positive_rate_and_nan_without_positives():
    labels = np.zeros(1024, bool)
    labels[[3, 700]] = True
    assert M.average_precision(np.zeros(1024), labels) == pytest.approx(2 / 1024)
    assert np.isnan(M.average_precision(np.random.rand(10), np.zeros(10, bool)))


def test_best_threshold_maximizes_f1_by_brute_force():
    scores, labels = random_scores(n=600, seed=1, levels=20)
    thr, f1 = M.best_f1_threshold(scores, labels)
    brute = {}
    for t in np.unique(scores):
        _, _, f, _ = precision_recall_fscore_support(labels, scores >= t, average="binary", zero_division=0)
        brute[t] = f
    best = max(brute.values())
    assert f1 == pytest.approx(best)
    assert brute[thr] == pytest.approx(best)
    assert thr == max(t for t, f in brute.items() if f == pytest.approx(best))


@pytest.mark.parametrize("threshold", [0.5, 0.2, 0.95])
def test_counts_and_prf_match_sklearn(threshold):
    scores, labels = random_scores(n=500, seed=2)
    p, r, f = M.prf(*M.counts_at(scores, labels, threshold))
    sk = precision_recall_fscore_support(labels, scores >= threshold, average="binary", zero_division=0)
    assert (p, r, f) == pytest.approx(sk[:3])


def test_prf_of_no_prediction_is_zero():
    assert M.prf(0, 0, 5) == (0.0, 0.0, 0.0)


def test_localization_error_and_argmax_ties():
    maps = np.zeros((3, 4, 5))
    maps[0, 1, 2] = 0.9
    maps[1, 3, 4] = 0.2
    maps[1, 0, 0] = 0.1
    # map 2 is blank: every pixel ties, the first in row-major order wins
    targets = np.array([[1, 2], [0, 0], [3, 4]])
    np.testing.assert_array_equal(M.argmax_pixels(maps), [[1, 2], [3, 4], [0, 0]])
    np.testing.assert_allclose(M.localization_errors(maps, targets), [0.0, 5.0, 5.0])


def test_horizon_metrics_per_horizon_and_invalid_frames():
    N, T, H, W = 4, 3, 6, 6
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 6, size=(N, T, 2))
    valid = np.ones((N, T), bool)
    valid[1, 2] = False
    probs = np.zeros((N, T, H, W))
    for i in range(N):
        probs[i, 0, pixels[i, 0, 0], pixels[i, 0, 1]] = 0.9  # horizon 1: perfect
        r, c = (pixels[i, 1] + 3) % 6
        probs[i, 1, r, c] = 0.9  # horizon 2: one wrong pixel per frame
    probs[1, 2] = 1.0  # an invalid frame full of false positives must not count
    motion = np.array([[0, 1, 2]] * N)
    out = M.horizon_metrics(probs, pixels, valid, threshold_best=0.5, motion=motion)
    h1, h2, h3 = out["per_horizon"]
    assert h1["f1@0.5"] == 1.0 and h1["ap"] == pytest.approx(1.0) and h1["loc_error_px"] == 0.0 and h1["argmax_hit"] == 1.0
    assert h2["f1@0.5"] == 0.0 and h2["precision@0.5"] == 0.0 and h2["loc_error_px"] == pytest.approx(np.sqrt(18))
    assert h3["n_frames"] == 3 and h3["f1@0.5"] == 0.0 and h3["predicted_mass"] == 0.0
    assert out["overall"]["f1@0.5"] == pytest.approx(1 / 3)
    assert out["overall"]["loc_error_px"] == pytest.approx(np.mean([h1["loc_error_px"], h2["loc_error_px"], h3["loc_error_px"]]))
    assert out["n_frames"] == 11
    assert out["by_motion"]["fixation"] == {"n_frames": 4, "loc_error_px": 0.0, "argmax_hit": 1.0, "recall@best": 1.0}
    assert out["by_motion"]["saccade"]["n_frames"] == 3
