"""The chain pitch/yaw <-> 3D vector <-> point on the screen, against EVE's formulas re-derived here.

EVE (swook/EVE ``src/models/common.py``): ``to_screen_coordinates`` negates ``pitchyaw_to_vector(g)``,
de-rotates it by ``R^T``, takes direction and origin into screen coordinates with
``inv_camera_transformation`` and intersects with ``z = 0`` (``get_intersect_with_zero``), then scales mm to
pixels by ``pixels_per_millimeter``; ``calculate_combined_gaze_direction`` goes back: the PoG in mm
(z = 0) into camera coordinates with ``camera_transformation``, minus the origin, rotated by ``R``,
negated, and ``vector_to_pitchyaw`` (``asin`` of y, ``atan2(x, z)``). Both are written out below in
numpy, independently of the package.
"""

import json

import h5py
import numpy as np
import pytest

from gaze_estimation.normalization import denormalize_gaze, normalize_gaze, normalizing_rotation
from gaze_estimation.screen import Calibration, gaze_to_screen, load_calibration, on_screen, screen_to_gaze
from gaze_estimation.synthetic import synthetic_calibration
from perception_shared.errors import DataError

K = np.array([[600.0, 0.0, 319.5], [0.0, 600.0, 239.5], [0.0, 0.0, 1.0]])


def eve_pitchyaw_to_vector(a: np.ndarray) -> np.ndarray:
    sin, cos = np.sin(a), np.cos(a)
    return np.stack([cos[:, 0] * sin[:, 1], sin[:, 0], cos[:, 0] * cos[:, 1]], axis=1)


def eve_vector_to_pitchyaw(a: np.ndarray) -> np.ndarray:
    n = a / (np.linalg.norm(a, axis=1, keepdims=True) + 1e-7)
    return np.stack([np.arcsin(n[:, 1]), np.arctan2(n[:, 0], n[:, 2])], axis=1)


def eve_to_screen(origin, g_norm, rot, inv_t, ppm):
    d = -eve_pitchyaw_to_vector(g_norm)
    d = np.einsum("nji,nj->ni", rot, d)  # R^T d
    d = d @ inv_t[:3, :3].T
    o = origin @ inv_t[:3, :3].T + inv_t[:3, 3]
    t = (0.0 - o[:, 2]) / (d[:, 2] + 1e-7)  # plane z = 0 through (1, 0, 0) with normal (0, 0, 1)
    mm = o[:, :2] + t[:, None] * d[:, :2]
    return mm, mm * ppm


def eve_combined_gaze(origin, pog_mm, rot, t):
    p = np.concatenate([pog_mm, np.zeros((len(pog_mm), 1))], axis=1) @ t[:3, :3].T + t[:3, 3]
    d = np.einsum("nij,nj->ni", rot, p - origin)
    return eve_vector_to_pitchyaw(-d)


@pytest.fixture
def setup():
    rng = np.random.default_rng(0)
    n = 200
    calib_fields = synthetic_calibration(K)
    calib = Calibration(K, np.array(calib_fields["camera_transformation"]), np.array(calib_fields["pixels_per_millimeter"]),
                        screen_size_px=(1920.0, 1080.0))
    origin = np.stack([rng.uniform(-150, 150, n), rng.uniform(-50, 150, n), rng.uniform(450, 750, n)], axis=1)
    head_x = np.stack([np.ones(n), rng.normal(0, 0.2, n), rng.normal(0, 0.2, n)], axis=1)
    rot = normalizing_rotation(origin, head_x)
    g_norm = np.stack([rng.uniform(-0.5, 0.3, n), rng.uniform(-0.6, 0.6, n)], axis=1)
    return calib, origin, rot, g_norm


def test_screen_point_equals_eves_to_screen_coordinates(setup):
    calib, origin, rot, g_norm = setup
    mm, px = gaze_to_screen(origin, denormalize_gaze(g_norm, rot), calib)
    want_mm, want_px = eve_to_screen(origin, g_norm, rot, calib.inv_camera_transformation, calib.pixels_per_millimeter)
    hit = np.isfinite(mm).all(axis=1)
    assert hit.mean() > 0.9
    np.testing.assert_allclose(mm[hit], want_mm[hit], atol=1e-3)
    np.testing.assert_allclose(px[hit], want_px[hit], atol=1e-2)


def test_gaze_from_a_screen_point_equals_eves_combined_gaze_and_round_trips(setup):
    calib, origin, rot, g_norm = setup
    mm, px = gaze_to_screen(origin, denormalize_gaze(g_norm, rot), calib)
    hit = np.isfinite(mm).all(axis=1)
    back = normalize_gaze(screen_to_gaze(origin[hit], px[hit], calib), rot[hit])
    np.testing.assert_allclose(back, eve_combined_gaze(origin[hit], mm[hit], rot[hit], calib.camera_transformation), atol=1e-6)
    np.testing.assert_allclose(back, g_norm[hit], atol=1e-9)
    # and the vector round trip on its own
    np.testing.assert_allclose(eve_vector_to_pitchyaw(eve_pitchyaw_to_vector(g_norm)), g_norm, atol=1e-6)


def test_sign_conventions_on_the_synthetic_screen(setup):
    calib = setup[0]
    eye = np.array([[0.0, 120.0, 600.0]])  # below the camera, which sits above the screen's top edge
    centre = np.array([[960.0, 540.0]])
    g = screen_to_gaze(eye, centre, calib)
    assert g[0, 0] < 0  # the screen centre is below the eyes: pitch < 0 looks down
    # a point further to the viewer's right on the screen is the image's left: larger yaw
    right = screen_to_gaze(eye, centre + [400.0, 0.0], calib)
    up = screen_to_gaze(eye, centre - [0.0, 300.0], calib)
    assert right[0, 1] > g[0, 1] and up[0, 0] > g[0, 0]
    assert on_screen(np.array([[10.0, 10.0], [1920.0, 5.0], [np.nan, 1.0]]), calib).tolist() == [True, False, False]
    # a ray pointing away from the screen plane has no point
    away = np.stack([-g[:, 0], g[:, 1] + np.pi], axis=1)  # the opposite direction
    mm, _ = gaze_to_screen(eye, away, calib)
    assert np.isnan(mm).all()


def test_calibration_files_json_yaml_and_eve_h5(tmp_path):
    fields = synthetic_calibration(K)
    (tmp_path / "c.json").write_text(json.dumps(fields))
    a = load_calibration(tmp_path / "c.json")
    np.testing.assert_allclose(a.camera_matrix, K)
    assert a.screen_size_px == (1920.0, 1080.0) and a.dist_coeffs is None
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**fields, "dist_coeffs": [0.1, -0.2, 0.0, 0.0, 0.05]}))
    assert load_calibration(tmp_path / "c.yaml").dist_coeffs is not None
    with h5py.File(tmp_path / "basler.h5", "w") as f:  # the top-level datasets of EVE's <camera>.h5
        for key in ("camera_matrix", "camera_transformation", "inv_camera_transformation", "pixels_per_millimeter", "millimeters_per_pixel"):
            f[key] = np.asarray(fields[key])
        f.create_group("face_g_tobii")
    b = load_calibration(tmp_path / "basler.h5")
    np.testing.assert_allclose(b.camera_transformation, a.camera_transformation)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"camera_matrix": None}, "missing key.*camera_matrix"),
        ({"camera_matrix": [[1, 0], [0, 1]]}, "'camera_matrix' has shape"),
        ({"camera_transformation": np.diag([2.0, 1, 1, 1]).tolist()}, "'camera_transformation' is not a rigid"),
        ({"pixels_per_millimeter": [3.0, -1.0]}, "'pixels_per_millimeter' must be positive"),
        ({"millimeters_per_pixel": [1.0, 1.0]}, "'millimeters_per_pixel'.*not the inverse"),
    ],
)
def test_calibration_errors_name_the_file_and_key(tmp_path, change, message):
    fields = {**synthetic_calibration(K), **change}
    fields = {k: v for k, v in fields.items() if v is not None}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(fields))
    with pytest.raises(DataError, match=message) as e:
        load_calibration(path)
    assert str(path) in str(e.value)
