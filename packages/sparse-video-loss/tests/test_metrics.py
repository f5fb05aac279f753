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
    assert out["by_motion"]["fixation"] == {"n_frames": 4, "loc_error_px": 0.0, "argmax_hit": 1.0, "hit@1px": 1.0,
                                            "hit@2px": 1.0, "recall@best": 1.0}
    assert out["by_motion"]["saccade"]["n_frames"] == 3


def test_hit_rates_count_pixels_within_1_and_2_pixels():
    H = W = 9
    target = np.array([4, 4])
    offsets = [(0, 0), (0, 1), (1, 1), (2, 0), (2, 1), (0, 3)]  # distances 0, 1, 1.41, 2, 2.24, 3
    maps = np.zeros((len(offsets), H, W))
    for k, (dr, dc) in enumerate(offsets):
        maps[k, 4 + dr, 4 + dc] = 0.7
    m = M.frame_metrics(maps, np.tile(target, (len(offsets), 1)), 0.5)
    d = np.hypot(*np.array(offsets).T)
    assert m["argmax_hit"] == pytest.approx(np.mean(d == 0))
    assert m["hit@1px"] == pytest.approx(2 / 6) and m["hit@2px"] == pytest.approx(4 / 6)
    assert m["loc_error_px"] == pytest.approx(d.mean())


def test_a_collapsed_prediction_has_mass_near_3_and_is_flagged_by_peak_to_mean():
    rng = np.random.default_rng(0)
    F, H, W = 20, 32, 32
    targets = rng.integers(0, 32, size=(F, 2))
    # what MSE collapses to: about the base rate 1/1024 ... 0.003 everywhere, with a faint centre bias
    yy, xx = np.mgrid[:H, :W]
    bump = np.exp(-((yy - 15.5) ** 2 + (xx - 15.5) ** 2) / 400)
    collapsed = 0.0025 + 0.001 * bump[None] + rng.uniform(0, 1e-4, size=(F, H, W))
    m = M.frame_metrics(collapsed, targets, 0.5)
    assert 2.5 < m["predicted_mass"] < 4.0  # not near 0: mass does not reveal collapse
    assert m["peak_to_mean"] < 2 and m["collapsed_fraction"] == 1.0
    assert m["f1@0.5"] == 0.0 and m["mse"] == pytest.approx(np.mean((collapsed - M.one_hot_targets(targets, (H, W))) ** 2))
    # a model that commits to a point, even a wrong one, is not collapsed
    committed = np.full((F, H, W), 1e-4)
    committed[np.arange(F), np.where(targets[:, 0] < 31, targets[:, 0] + 1, targets[:, 0] - 1), targets[:, 1]] = 0.6
    c = M.frame_metrics(committed, targets, 0.5)
    assert c["collapsed_fraction"] == 0.0 and c["peak_to_mean"] > 100 and c["hit@1px"] == 1.0 and c["argmax_hit"] == 0.0
    np.testing.assert_allclose(M.peak_to_mean(committed), 0.6 / committed.reshape(F, -1).mean(1))
    assert M.peak_to_mean(np.zeros((1, 4, 4)))[0] == 1.0
