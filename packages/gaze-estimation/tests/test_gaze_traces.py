import csv
import math

import numpy as np
import pytest
import torch

from gaze_estimation.geometry import pitchyaw_to_vector
from gaze_estimation.traces import pitchyaw_to_screen, write_trace_csv


def test_screen_point_is_where_the_gaze_ray_meets_the_screen_plane():
    """Independent check: intersect the ray eye + t * g (g = -pitchyaw_to_vector) with the plane z = 0."""
    rng = np.random.default_rng(0)
    pitchyaw = rng.uniform(-0.6, 0.6, size=(50, 2))
    distance, width, height = 2000.0, 1920.0, 1080.0
    points = pitchyaw_to_screen(pitchyaw, width_px=width, height_px=height, distance_px=distance)
    eye = np.array([0.0, 0.0, distance])
    g = -pitchyaw_to_vector(torch.tensor(pitchyaw)).numpy()
    t = -eye[2] / g[:, 2]
    hit = eye + t[:, None] * g  # camera coordinates: x to the image's right, y down
    # the viewer faces the camera, so the viewer's right is the image's left
    np.testing.assert_allclose(points[:, 0], width / 2 - hit[:, 0], atol=1e-6)
    np.testing.assert_allclose(points[:, 1], height / 2 + hit[:, 1], atol=1e-6)


def test_directions_in_words():
    (cx, cy), (up_x, up_y), (right_x, _) = pitchyaw_to_screen(
        np.array([[0.0, 0.0], [0.2, 0.0], [0.0, 0.2]]), width_px=100, height_px=50, distance_px=100
    )
    assert (cx, cy) == (50, 25)
    assert up_y < cy and up_x == pytest.approx(cx)  # pitch > 0 looks up
    assert right_x > cx  # yaw > 0 looks to the viewer's right (the subject's right)


def test_trace_csv_skips_directions_away_from_the_screen(tmp_path):
    points = pitchyaw_to_screen(np.array([[0.0, 0.0], [0.0, math.pi * 0.75], [0.1, 0.1]]),
                                width_px=100, height_px=100, distance_px=50)
    assert np.isnan(points[1]).all()
    path = write_trace_csv(tmp_path / "t.csv", [("p01", points), ("p02", points[:1])], fps=10)
    rows = list(csv.DictReader(open(path)))
    assert [(r["sequence"], r["t"]) for r in rows] == [("p01", "0.000000"), ("p01", "0.200000"), ("p02", "0.000000")]
    with pytest.raises(ValueError, match="fps"):
        write_trace_csv(tmp_path / "u.csv", [("p01", points)], fps=0)
