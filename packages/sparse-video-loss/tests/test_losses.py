import math

import numpy as np
import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from sparse_video_loss.losses import LOSSES, get_loss_function, loss_keywords


def sparse_batch(B=2, T=3, H=6, W=5, seed=0, blank_frames=()):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, 1, H, W, generator=g, dtype=torch.float64) * 2
    targets = torch.zeros(B, T, 1, H, W, dtype=torch.float64)
    for b in range(B):
        for t in range(T):
            if (b, t) in blank_frames:
                continue
            r, c = torch.randint(H, (1,), generator=g).item(), torch.randint(W, (1,), generator=g).item()
            targets[b, t, 0, r, c] = 1.0
    return logits, targets


def np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (0.5, 0.0), (0.9, 1.5)])
def test_focal_matches_torchvision(alpha, gamma):
    logits, targets = sparse_batch(seed=1)
    ours = get_loss_function("focal", alpha=alpha, gamma=gamma)(logits, targets)
    ref = sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction="mean")
    assert float(ours) == pytest.approx(float(ref), rel=1e-10)
    default = get_loss_function("focal")(logits, targets)
    assert float(default) == pytest.approx(float(sigmoid_focal_loss(logits, targets, reduction="mean")), rel=1e-10)


def test_mse_bce_sparsity_weighted_against_numpy():
    logits, targets = sparse_batch(seed=2)
    z, y = logits.numpy(), targets.numpy()
    p = np_sigmoid(z)
    assert float(get_loss_function("mse")(logits, targets)) == pytest.approx(np.mean((p - y) ** 2), rel=1e-10)
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert float(get_loss_function("bce")(logits, targets)) == pytest.approx(bce.mean(), rel=1e-9)
    sparsity = np.mean((p - y) ** 2) + 0.1 * np.mean(np.abs(p))
    assert float(get_loss_function("sparsity")(logits, targets)) == pytest.approx(sparsity, rel=1e-10)
    assert float(get_loss_function("sparsity", mse_weight=2.0, l1_weight=0.5)(logits, targets)) == pytest.approx(
        2 * np.mean((p - y) ** 2) + 0.5 * np.mean(p), rel=1e-10
    )
    w = np.where(y > 0, 100.0, 1.0)
    assert float(get_loss_function("weighted_mse")(logits, targets)) == pytest.approx(np.mean(w * (p - y) ** 2), rel=1e-10)
    w7 = np.where(y > 0, 7.0, 1.0)
    assert float(get_loss_function("weighted_mse", pos_weight=7)(logits, targets)) == pytest.approx(np.mean(w7 * (p - y) ** 2), rel=1e-10)


def np_dice(p, y, smooth=1.0):
    losses = []
    for b in range(p.shape[0]):
        for t in range(p.shape[1]):
            pf, yf = p[b, t].ravel(), y[b, t].ravel()
            losses.append(1 - (2 * np.dot(pf, yf) + smooth) / (pf.sum() + yf.sum() + smooth))
    return np.mean(losses)


def np_concentration(p, y):
    B, T, _, H, W = p.shape
    s = max(H, W)
    values = []
    for b in range(B):
        for t in range(T):
            tf = y[b, t, 0]
            if tf.sum() == 0:
                continue
            q = p[b, t, 0] / p[b, t, 0].sum()
            rr, cc = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
            cr, ccol = (tf * rr).sum() / tf.sum(), (tf * cc).sum() / tf.sum()
            values.append(np.sum(q * (((rr - cr) / s) ** 2 + ((cc - ccol) / s) ** 2)))
    return np.mean(values)


def test_dice_against_per_frame_loop():
    logits, targets = sparse_batch(seed=3, blank_frames={(0, 1)})
    p, y = np_sigmoid(logits.numpy()), targets.numpy()
    assert float(get_loss_function("dice")(logits, targets)) == pytest.approx(np_dice(p, y), rel=1e-10)
    assert float(get_loss_function("dice", smooth=0.5)(logits, targets)) == pytest.approx(np_dice(p, y, 0.5), rel=1e-10)


def test_concentration_against_loop_and_ignores_frames_without_target():
    logits, targets = sparse_batch(seed=4, blank_frames={(1, 2), (0, 0)})
    p, y = np_sigmoid(logits.numpy()), targets.numpy()
    assert float(get_loss_function("concentration")(logits, targets)) == pytest.approx(np_concentration(p, y), rel=1e-9)


def test_concentration_is_squared_distance_of_a_point_mass():
    H = W = 8
    logits = torch.full((1, 1, 1, H, W), -60.0, dtype=torch.float64)
    targets = torch.zeros_like(logits)
    targets[0, 0, 0, 2, 3] = 1
    logits[0, 0, 0, 2, 3] = 60.0
    assert float(get_loss_function("concentration")(logits, targets)) == pytest.approx(0.0, abs=1e-12)
    logits[0, 0, 0, 2, 3] = -60.0
    logits[0, 0, 0, 5, 7] = 60.0  # mass 3 rows and 4 columns away: distance 5 pixels
    assert float(get_loss_function("concentration")(logits, targets)) == pytest.approx((5 / 8) ** 2, rel=1e-9)


def test_composite_is_weighted_sum_of_independent_parts():
    logits, targets = sparse_batch(seed=5, blank_frames={(1, 0)})
    z, y = logits.numpy(), targets.numpy()
    p = np_sigmoid(z)
    focal = float(sigmoid_focal_loss(logits, targets, reduction="mean"))
    sparsity = np.mean((p - y) ** 2) + 0.1 * np.mean(p)
    conc = np_concentration(p, y)
    expected = 1.0 * focal + 0.8 * sparsity + 1.5 * conc
    assert float(get_loss_function("composite")(logits, targets)) == pytest.approx(expected, rel=1e-9)
    custom = get_loss_function("composite", focal_weight=2.0, sparsity_weight=0.0, concentration_weight=0.5)
    assert float(custom(logits, targets)) == pytest.approx(2 * focal + 0.5 * conc, rel=1e-9)


@pytest.mark.parametrize("name", list(LOSSES))
def test_mask_leaves_out_invalid_frames(name):
    logits, targets = sparse_batch(B=2, T=4, seed=6)
    mask = torch.tensor([[True, False, True, True], [False, True, True, False]])
    loss = get_loss_function(name)
    masked = loss(logits, targets, mask)
    # The same frames as their own batch of one frame per sample: the mean over valid frames.
    per_frame = [float(loss(logits[b : b + 1, t : t + 1], targets[b : b + 1, t : t + 1])) for b, t in mask.nonzero().tolist()]
    assert float(masked) == pytest.approx(np.mean(per_frame), rel=1e-9)
    garbage = targets.clone()
    garbage[~mask] = 1.0  # whatever the masked frames hold must not matter
    assert float(loss(logits, garbage, mask)) == pytest.approx(float(masked), rel=1e-12)


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("scale", [1.0, 50.0])
def test_gradients_finite_at_all_zero_targets(name, scale):
    logits = (torch.randn(2, 3, 1, 8, 8, generator=torch.Generator().manual_seed(7)) * scale).requires_grad_()
    targets = torch.zeros(2, 3, 1, 8, 8)
    loss = get_loss_function(name)(logits, targets)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()
    masked = logits.detach().clone().requires_grad_()
    out = get_loss_function(name)(masked, targets, torch.zeros(2, 3, dtype=torch.bool))
    out.backward()
    assert float(out.detach()) == 0.0 and torch.isfinite(masked.grad).all()


def test_mse_loses_the_point_that_weighted_losses_keep():
    """The research premise on one frame: blank beats a correct-but-unsure guess under MSE, not under weighted MSE."""
    blank = torch.full((1, 1, 1, 32, 32), -10.0)
    targets = torch.zeros_like(blank)
    targets[0, 0, 0, 5, 5] = 1
    guess = blank.clone()
    guess[0, 0, 0, 4:7, 4:7] = 0.0  # p = 0.5 on a 3x3 patch around the point
    mse, wmse = get_loss_function("mse"), get_loss_function("weighted_mse")
    assert mse(blank, targets) < mse(guess, targets)
    assert wmse(guess, targets) < wmse(blank, targets)


def test_get_loss_function_errors_list_valid_choices():
    with pytest.raises(ValueError, match="unknown loss 'l2'.*mse, bce, focal, sparsity, concentration, composite, dice, weighted_mse"):
        get_loss_function("l2")
    with pytest.raises(ValueError, match=r"unknown keyword\(s\) gama for loss 'focal'; valid keywords: alpha \(default 0.25\), gamma"):
        get_loss_function("focal", gama=2)
    with pytest.raises(ValueError, match="valid keywords: none"):
        get_loss_function("mse", pos_weight=3)
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        get_loss_function("focal", gamma=-1)
    with pytest.raises(ValueError, match="pos_weight must be > 0"):
        get_loss_function("weighted_mse", pos_weight=0)
    with pytest.raises(ValueError, match="must be a number"):
        get_loss_function("dice", smooth="1")
    assert loss_keywords("composite")["concentration_weight"] == 1.5
    assert set(loss_keywords("weighted_mse")) == {"pos_weight"}


def test_shape_errors():
    loss = get_loss_function("bce")
    with pytest.raises(ValueError, match=r"logits must have shape \(B, T, 1, H, W\)"):
        loss(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="does not match"):
        loss(torch.zeros(1, 2, 1, 8, 8), torch.zeros(1, 2, 1, 8, 7))
    with pytest.raises(ValueError, match=r"mask must have shape \(B, T\)"):
        loss(torch.zeros(1, 2, 1, 8, 8), torch.zeros(1, 2, 1, 8, 8), torch.ones(2, 1, dtype=torch.bool))


def test_every_loss_returns_a_scalar_that_prefers_the_right_answer():
    targets = torch.zeros(1, 2, 1, 8, 8)
    targets[0, 0, 0, 3, 4] = 1
    targets[0, 1, 0, 6, 1] = 1
    right = torch.where(targets > 0, 8.0, -8.0)
    wrong = torch.roll(right, shifts=(2, 2), dims=(3, 4))
    for name in LOSSES:
        f = get_loss_function(name)
        assert f(right, targets).ndim == 0
        assert float(f(right, targets)) < float(f(wrong, targets)), name
        assert math.isfinite(float(f(wrong, targets)))


@pytest.mark.parametrize("name", list(LOSSES))
def test_half_precision_logits_are_computed_in_float32(name):
    logits, targets = sparse_batch(seed=8)
    half = logits.to(torch.bfloat16)
    out = get_loss_function(name)(half, targets.float())
    assert out.dtype == torch.float32
    assert float(out) == pytest.approx(float(get_loss_function(name)(half.double(), targets)), rel=1e-5)
