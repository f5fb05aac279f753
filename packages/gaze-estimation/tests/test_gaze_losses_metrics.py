import numpy as np
import torch
from test_gaze_geometry import haversine_deg, random_pitchyaw

from gaze_estimation.losses import gaze_loss
from gaze_estimation.metrics import mean_predictor_errors, per_sample_errors, summarize_errors


def test_loss_matches_independent_formula():
    pred, target = random_pitchyaw(64, 10) * 0.3, random_pitchyaw(64, 11) * 0.3
    expected = np.radians(haversine_deg(pred.numpy(), target.numpy())).mean() + 0.1 * ((pred - target) ** 2).mean().item()
    got = gaze_loss(pred.float(), target.float())
    assert got.dtype == torch.float32
    assert abs(got.item() - expected) < 1e-5


def test_loss_is_zero_with_finite_gradient_at_zero_error():
    target = random_pitchyaw(16, 12).float() * 0.3
    pred = target.clone().requires_grad_(True)
    loss = gaze_loss(pred, target)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(pred.grad).all()
    # and just next to zero error
    pred2 = (target + 1e-7).requires_grad_(True)
    gaze_loss(pred2, target).backward()
    assert torch.isfinite(pred2.grad).all()


def test_loss_is_fp32_under_bf16_autocast():
    pred = (random_pitchyaw(32, 13) * 0.3).float()
    target = (random_pitchyaw(32, 14) * 0.3).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = pred.bfloat16().requires_grad_(True)
        loss = gaze_loss(low, target)
    assert loss.dtype == torch.float32
    ref = gaze_loss(low.detach().float(), target)
    assert abs(loss.item() - ref.item()) < 1e-6
    loss.backward()
    assert torch.isfinite(low.grad.float()).all()


def test_summary_per_participant_and_baseline():
    rng = np.random.default_rng(0)
    errors = rng.uniform(0, 10, 30)
    ids = ["b"] * 10 + ["a"] * 20
    s = summarize_errors(errors, ids)
    assert s["n_samples"] == 30
    assert np.isclose(s["mean_angular_error_deg"], errors.mean())
    assert np.isclose(s["median_angular_error_deg"], np.median(errors))
    assert list(s["per_participant"]) == ["a", "b"]
    assert np.isclose(s["per_participant"]["b"]["mean_deg"], errors[:10].mean())
    assert np.isclose(s["per_participant"]["a"]["median_deg"], np.median(errors[10:]))
    assert np.isclose(s["mean_of_participants_deg"], (errors[:10].mean() + errors[10:].mean()) / 2)

    target = random_pitchyaw(50, 15).numpy() * 0.3
    mean = target.mean(axis=0)
    np.testing.assert_allclose(mean_predictor_errors(mean, target), haversine_deg(np.tile(mean, (50, 1)), target), atol=1e-9)
    np.testing.assert_allclose(per_sample_errors(target, target), 0.0, atol=1e-12)
