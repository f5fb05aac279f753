"""The point of gaze on a screen: a gaze ray in camera coordinates meets the screen plane (EVE's setup).

A calibration holds the fields of EVE's per-camera ``.h5`` files (``DATASET.md`` of swook/EVE):

=============================  ======  ==================================================================
key                            shape   meaning
=============================  ======  ==================================================================
``camera_matrix``              (3, 3)  pinhole intrinsics of the (undistorted) camera image, pixels
``camera_transformation``      (4, 4)  screen coordinates (mm) -> camera coordinates (mm)
``inv_camera_transformation``  (4, 4)  its inverse (optional; computed when absent)
``pixels_per_millimeter``      (2,)    screen pixels per mm along x and y
``millimeters_per_pixel``      (2,)    its inverse (optional, checked against it when present)
``dist_coeffs``                (K,)    optional OpenCV distortion coefficients of the raw camera images
``screen_size_px``             (2,)    optional screen width and height in pixels (for ``on_screen``)
=============================  ======  ==================================================================

The screen's frame, as EVE's ``to_screen_coordinates`` (``src/models/common.py``) uses it: the screen
is the plane ``z = 0``, x and y in mm from its top-left corner, x to the right and y down as the viewer
sees the screen; a point of gaze in pixels is ``mm * pixels_per_millimeter``. EVE intersects the ray
from the gaze origin ``o`` along the gaze direction ``-pitchyaw_to_vector(g)`` with that plane after
taking both into screen coordinates with ``inv_camera_transformation``; so does ``gaze_to_screen``,
with the gaze already in camera coordinates (EVE's ``R^T`` de-normalization is
``normalization.denormalize_gaze``). EVE clamps points to the screen; here they are not clamped and
``on_screen`` says whether they fall on it. Rays that never reach the plane give NaN.

A calibration file is JSON or YAML with these keys, or an EVE ``<camera>.h5`` file itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from perception_shared.errors import DataError

from .geometry import pitchyaw_to_vector, vector_to_pitchyaw

REQUIRED = ("camera_matrix", "camera_transformation", "pixels_per_millimeter")


@dataclass(frozen=True)
class Calibration:
    """A camera and the screen's pose in its coordinates (see the module docstring for the fields)."""

    camera_matrix: np.ndarray  # (3, 3)
    camera_transformation: np.ndarray  # (4, 4) screen -> camera, mm
    pixels_per_millimeter: np.ndarray  # (2,)
    dist_coeffs: np.ndarray | None = None
    screen_size_px: tuple[float, float] | None = None
    source: str = ""

    @property
    def inv_camera_transformation(self) -> np.ndarray:
        return np.linalg.inv(self.camera_transformation)


def _read_fields(path: Path) -> dict[str, Any]:
    if path.suffix.lower() in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                return {k: np.asarray(f[k][()]) for k in f if isinstance(f[k], h5py.Dataset)}
        except OSError as e:
            raise DataError(f"calibration {path}: not a readable HDF5 file ({e})") from None
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as e:
        raise DataError(f"calibration {path}: cannot read it as {'JSON' if path.suffix.lower() == '.json' else 'YAML'} ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"calibration {path}: expected a mapping of {', '.join(REQUIRED)}, ...")
    return data


def _array(fields: dict[str, Any], key: str, shape: tuple[int, ...] | None, path: Path) -> np.ndarray:
    try:
        a = np.asarray(fields[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"calibration {path}: '{key}' is not numeric: {fields[key]!r}") from None
    if shape is not None and a.shape != shape:
        raise DataError(f"calibration {path}: '{key}' has shape {a.shape}, expected {shape}")
    if not np.isfinite(a).all():
        raise DataError(f"calibration {path}: '{key}' has non-finite values")
    return a


def load_calibration(path: str | Path) -> Calibration:
    """Read and check a calibration file (JSON, YAML or EVE ``.h5``); errors name the file and key."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"calibration file {path} does not exist")
    fields = _read_fields(path)
    missing = [k for k in REQUIRED if k not in fields]
    if missing:
        raise DataError(f"calibration {path}: missing key(s) {', '.join(missing)} (found: {', '.join(sorted(fields)) or 'none'})")
    k = _array(fields, "camera_matrix", (3, 3), path)
    if k[0, 0] <= 0 or k[1, 1] <= 0 or not np.allclose(k[2], [0, 0, 1]):
        raise DataError(f"calibration {path}: 'camera_matrix' is not a pinhole matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]: {k.tolist()}")
    t = _array(fields, "camera_transformation", (4, 4), path)
    rot = t[:3, :3]
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-4) or not np.allclose(t[3], [0, 0, 0, 1]) or np.linalg.det(rot) < 0:
        raise DataError(f"calibration {path}: 'camera_transformation' is not a rigid transformation (rotation + translation, last row 0 0 0 1)")
    if "inv_camera_transformation" in fields:
        inv = _array(fields, "inv_camera_transformation", (4, 4), path)
        if not np.allclose(inv @ t, np.eye(4), atol=1e-4):
            raise DataError(f"calibration {path}: 'inv_camera_transformation' is not the inverse of 'camera_transformation'")
    ppm = _array(fields, "pixels_per_millimeter", (2,), path)
    if (ppm <= 0).any():
        raise DataError(f"calibration {path}: 'pixels_per_millimeter' must be positive, got {ppm.tolist()}")
    if "millimeters_per_pixel" in fields:
        mpp = _array(fields, "millimeters_per_pixel", (2,), path)
        if not np.allclose(mpp * ppm, 1.0, rtol=1e-4):
            raise DataError(f"calibration {path}: 'millimeters_per_pixel' {mpp.tolist()} is not the inverse of 'pixels_per_millimeter' {ppm.tolist()}")
    dist = _array(fields, "dist_coeffs", None, path).reshape(-1) if "dist_coeffs" in fields else None
    if dist is not None and len(dist) not in (4, 5, 8, 12, 14):
        raise DataError(f"calibration {path}: 'dist_coeffs' has {len(dist)} values; OpenCV takes 4, 5, 8, 12 or 14")
    size = None
    if "screen_size_px" in fields:
        s = _array(fields, "screen_size_px", (2,), path)
        if (s <= 0).any():
            raise DataError(f"calibration {path}: 'screen_size_px' must be positive, got {s.tolist()}")
        size = (float(s[0]), float(s[1]))
    return Calibration(k, t, ppm, dist if dist is not None and np.any(dist) else None, size, str(path))


def gaze_to_screen(origin: np.ndarray, pitchyaw: np.ndarray, calib: Calibration) -> tuple[np.ndarray, np.ndarray]:
    """Gaze rays ``(N, 3)`` mm origins and ``(N, 2)`` pitch/yaw, camera coordinates -> points on the screen.

    Returns ``(mm, px)``, each ``(N, 2)`` (x right, y down from the screen's top-left corner); NaN where
    the ray points away from the screen plane.
    """
    o = np.asarray(origin, dtype=np.float64).reshape(-1, 3)
    direction = -pitchyaw_to_vector(torch.as_tensor(np.asarray(pitchyaw, dtype=np.float64))).numpy().reshape(-1, 3)
    inv = calib.inv_camera_transformation
    o_s = o @ inv[:3, :3].T + inv[:3, 3]
    d_s = direction @ inv[:3, :3].T
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -o_s[:, 2] / d_s[:, 2]
    hit = np.isfinite(t) & (t > 0)
    mm = o_s[:, :2] + np.where(hit, t, np.nan)[:, None] * d_s[:, :2]
    return mm, mm * calib.pixels_per_millimeter


def screen_to_gaze(origin: np.ndarray, point_px: np.ndarray, calib: Calibration) -> np.ndarray:
    """The pitch/yaw ``(N, 2)`` (camera coordinates) of rays from ``origin`` ``(N, 3)`` mm to screen pixels ``(N, 2)``."""
    mm = np.asarray(point_px, dtype=np.float64).reshape(-1, 2) / calib.pixels_per_millimeter
    t = calib.camera_transformation
    target = np.concatenate([mm, np.zeros((len(mm), 1))], axis=1) @ t[:3, :3].T + t[:3, 3]
    # pitchyaw_to_vector points from the target back to the eye
    back = np.asarray(origin, dtype=np.float64).reshape(-1, 3) - target
    return vector_to_pitchyaw(torch.from_numpy(back)).numpy()


def on_screen(px: np.ndarray, calib: Calibration) -> np.ndarray:
    """``(N,)`` bool: the points fall on the screen (needs ``screen_size_px``; else all False)."""
    px = np.asarray(px, dtype=np.float64)
    if calib.screen_size_px is None:
        return np.zeros(len(px), dtype=bool)
    w, h = calib.screen_size_px
    with np.errstate(invalid="ignore"):
        return (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
