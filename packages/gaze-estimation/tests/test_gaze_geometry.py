import math

import numpy as np
import pytest
import torch

from gaze_estimation.geometry import (
    angular_error,
    angular_error_deg,
    flip_pitchyaw,
    pitchyaw_to_vector,
    vector_to_pitchyaw,
)


def haversine_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Great-circle distance with pitch as latitude and yaw as longitude: an independent formula."""
    dp = b[:, 0] - a[:, 0]
    dy = b[:, 1] - a[:, 1]
    h = np.sin(dp / 2) ** 2 + np.cos(a[:, 0]) * np.cos(b[:, 0]) * np.sin(dy / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0, 1))))


def random_pitchyaw(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pitch = (torch.rand(n, generator=g, dtype=torch.float64) - 0.5) * (math.pi - 1e-3)
    yaw = (torch.rand(n, generator=g, dtype=torch.float64) - 0.5) * (2 * math.pi - 1e-3)
    return torch.stack([pitch, yaw], dim=1)


def test_convention_matches_eve():
    # EVE models/common.py: (cos p sin y, sin p, cos p cos y)
    py = torch.tensor([[0.0, 0.0], [0.3, 0.0], [0.0, 0.4], [-0.2, -0.7]], dtype=torch.float64)
    v = pitchyaw_to_vector(py)
    p, y = py[:, 0], py[:, 1]
    expected = torch.stack([torch.cos(p) * torch.sin(y), torch.sin(p), torch.cos(p) * torch.cos(y)], dim=1)
    torch.testing.assert_close(v, expected)
    torch.testing.assert_close(v[0], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(v.norm(dim=1), torch.ones(4, dtype=torch.float64))


def test_round_trips():
    py = random_pitchyaw(2000, 0)
    torch.testing.assert_close(vector_to_pitchyaw(pitchyaw_to_vector(py)), py, atol=1e-10, rtol=0)
    g = torch.Generator().manual_seed(1)
    vec = torch.randn(2000, 3, generator=g, dtype=torch.float64) * 3.0  # any length
    unit = vec / vec.norm(dim=1, keepdim=True)
    torch.testing.assert_close(pitchyaw_to_vector(vector_to_pitchyaw(vec)), unit, atol=1e-10, rtol=0)


def test_angular_error_matches_haversine():
    a, b = random_pitchyaw(3000, 2), random_pitchyaw(3000, 3)
    ours = angular_error_deg(a, b).numpy()
    np.testing.assert_allclose(ours, haversine_deg(a.numpy(), b.numpy()), atol=1e-9)
    assert ours.max() > 150  # the sample covers large angles, not only small ones


def test_angular_error_small_angles_are_accurate():
    a = random_pitchyaw(500, 4) * 0.5
    delta = torch.tensor([1e-6, -2e-6], dtype=torch.float64)
    ours = angular_error_deg(a, a + delta).numpy()
    ref = haversine_deg(a.numpy(), (a + delta).numpy())
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    assert (angular_error(a, a) == 0).all()


def test_angular_error_known_values_and_shape_check():
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.1, 0.2]])
    b = torch.tensor([[0.0, math.pi / 2], [math.pi / 4, 0.0], [0.1, 0.2]])
    torch.testing.assert_close(angular_error_deg(a, b), torch.tensor([90.0, 45.0, 0.0]), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="shape"):
        angular_error_deg(a, b[:2])


def test_flip_pitchyaw_is_a_mirror_of_the_vector():
    py = random_pitchyaw(100, 5) * 0.5
    v = pitchyaw_to_vector(py)
    mirrored = v * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(pitchyaw_to_vector(flip_pitchyaw(py)), mirrored)
