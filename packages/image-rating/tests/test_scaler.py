"""The target scaler: fitted statistics, exact round trips, JSON persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from image_rating.scaler import TargetScaler
from perception_shared.errors import DataError

DIMS = ("Brightness", "Effort", "Fairness")


def _ratings(n: int = 50) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal([50.0, 3.0, -10.0], [15.0, 0.5, 40.0], size=(n, 3))


def test_fit_matches_numpy_population_statistics():
    r = _ratings()
    s = TargetScaler.fit(r, DIMS)
    np.testing.assert_allclose(s.mean, r.mean(axis=0))
    np.testing.assert_allclose(s.std, r.std(axis=0, ddof=0))
    z = s.transform(r)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1.0)


def test_round_trip_numpy_torch_and_json(tmp_path):
    r = _ratings()
    s = TargetScaler.fit(r, DIMS)
    np.testing.assert_allclose(s.inverse_transform(s.transform(r)), r, rtol=0, atol=1e-12)
    t = torch.as_tensor(r, dtype=torch.float64)
    torch.testing.assert_close(s.inverse_transform(s.transform(t)), t)
    assert s.transform(t.float()).dtype == torch.float32
    path = s.save(tmp_path / "target_scaler.json")
    data = json.loads(path.read_text())
    assert data["dimensions"] == list(DIMS)
    loaded = TargetScaler.load(path)
    assert loaded.dimensions == DIMS
    np.testing.assert_array_equal(loaded.mean, s.mean)  # repr of a float64 round-trips exactly
    np.testing.assert_array_equal(loaded.std, s.std)
    np.testing.assert_array_equal(loaded.inverse_transform(np.zeros((1, 3)))[0], s.mean)


def test_errors_name_the_problem(tmp_path):
    r = _ratings()
    r[:, 1] = 4.0
    with pytest.raises(DataError, match="Effort"):
        TargetScaler.fit(r, DIMS)
    s = TargetScaler.fit(_ratings(), DIMS)
    with pytest.raises(ValueError, match="3 dimensions"):
        s.transform(np.zeros((2, 4)))
    bad = tmp_path / "s.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        TargetScaler.load(bad)
    data = s.to_dict()
    data["std"][0] = 0.0
    bad.write_text(json.dumps(data))
    with pytest.raises(DataError, match="standard deviations positive"):
        TargetScaler.load(bad)
    with pytest.raises(DataError, match="does not exist"):
        TargetScaler.load(tmp_path / "none.json")
