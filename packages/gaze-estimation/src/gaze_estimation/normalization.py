"""Data normalization (Zhang, Sugano & Bulling, ETRA 2018, "Revisiting data normalization for
appearance-based gaze estimation"): from a camera image and a head pose to the crops a model was
trained on, and from the model's gaze back to the camera.

A virtual camera looks at the face centre ``F`` (camera coordinates, mm) from ``distance_mm``, turned
about its axis so that the head's x axis ``h_x`` has no vertical component (the head roll is removed)::

    z = F / |F|,   y = normalize(z x h_x),   x = y x z,   R = [x; y; z]   (rows)

``R`` takes camera coordinates to the virtual camera's. The image is warped by the homography::

    W = K_n S R K^-1,   S = diag(1, 1, distance_mm / |F|),   K_n = [[f_n, 0, c], [0, f_n, c], [0, 0, 1]]

with ``c`` the centre of the crop (``(size - 1) / 2`` in OpenCV's pixel-centre coordinates). This is the
"modified" normalization of the paper: the image is scaled, the gaze only rotated, so
``g_normalized = R g_camera`` and ``g_camera = R^T g_normalized`` (vectors; pitch/yaw go through
``geometry.pitchyaw_to_vector``).

Camera coordinates are OpenCV's: x to the image's right, y down, z from the camera into the scene. The
head frame (columns of a head rotation) has x towards the subject's left, y down and z into the head.

The crops: the face crop is ``FACE_SIZE`` pixels of the virtual camera; each eye crop covers
``eye_span_px`` face-crop pixels around the eye's centre, sampled at ``EYE_SIZE`` pixels, from the same
virtual camera (the synthetic renderer's eye crops; EVE's eye patches come from its own normalization,
which EVE does not publish). Every crop is warped straight from the camera image (one resampling).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .geometry import pitchyaw_to_vector, vector_to_pitchyaw
from .h5format import FACE_SIZE


@dataclass
class NormalizationConfig:
    """The virtual camera and crops of the training data (stored with every run's config).

    The defaults are those of ``make-synthetic`` (one face-crop pixel is one millimetre at the face
    centre). ETH-XGaze and Zhang et al.'s reference code use ``focal_px: 960``, ``distance_mm: 600`` and
    a face centre midway between the eyes' and the mouth's centres (``face_centre_mm: [0, 34.3, 0]``
    with the generic face model).
    """

    focal_px: float = 600.0  # focal length of the virtual camera of the face crop
    distance_mm: float = 600.0  # distance of the virtual camera from the face centre
    eye_span_px: float = 52.0  # face-crop pixels covered by an eye crop
    # The face centre in the face-model frame: origin midway between the eye centres, x towards the
    # subject's left, y down, z into the head (mm).
    face_centre_mm: tuple[float, float, float] = (0.0, 6.0, 0.0)

    def __post_init__(self) -> None:
        if self.focal_px <= 0 or self.distance_mm <= 0 or self.eye_span_px <= 0:
            raise ValueError("normalization.focal_px, distance_mm and eye_span_px must be positive")
        if len(self.face_centre_mm) != 3:
            raise ValueError(f"normalization.face_centre_mm must be three numbers (mm), got {self.face_centre_mm}")


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def normalizing_rotation(face_centre: np.ndarray, head_x: np.ndarray) -> np.ndarray:
    """``(..., 3)`` face centres (mm) and head x axes -> ``(..., 3, 3)`` rotations ``R`` (rows x, y, z)."""
    z = _unit(np.asarray(face_centre, dtype=np.float64))
    y = _unit(np.cross(z, np.asarray(head_x, dtype=np.float64)))
    x = _unit(np.cross(y, z))
    return np.stack([x, y, z], axis=-2)


def virtual_camera(focal_px: float, size: int) -> np.ndarray:
    """``(3, 3)`` intrinsics of a square crop of ``size`` pixels whose centre is the principal point."""
    c = (size - 1) / 2.0
    return np.array([[focal_px, 0.0, c], [0.0, focal_px, c], [0.0, 0.0, 1.0]])


def face_warp(camera_matrix: np.ndarray, face_centre: np.ndarray, rotation: np.ndarray, cfg: NormalizationConfig) -> np.ndarray:
    """The homography ``W`` ``(3, 3)`` from camera-image pixels to face-crop pixels."""
    scale = np.diag([1.0, 1.0, cfg.distance_mm / float(np.linalg.norm(face_centre))])
    return virtual_camera(cfg.focal_px, FACE_SIZE) @ scale @ rotation @ np.linalg.inv(camera_matrix)


def crop_warp(face_w: np.ndarray, centre: np.ndarray, span_px: float, size: int) -> np.ndarray:
    """Compose ``face_w`` with the map from face-crop pixels to a ``size`` crop of ``span_px`` around ``centre``."""
    s = size / span_px
    c = (size - 1) / 2.0
    # face-crop pixel centre u maps to crop coordinate (u - centre) * s + c (pixel-centre coordinates)
    t = np.array([[s, 0.0, c - s * centre[0]], [0.0, s, c - s * centre[1]], [0.0, 0.0, 1.0]])
    return t @ face_w


def transform_points(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a homography ``(3, 3)`` to ``(..., 2)`` pixel coordinates."""
    p = np.asarray(points, dtype=np.float64)
    q = p @ h[:, :2].T + h[:, 2]
    return q[..., :2] / q[..., 2:3]


def warp_crop(image: np.ndarray, h: np.ndarray, size: int) -> np.ndarray:
    """The ``(size, size, C)`` crop of ``image`` ``(H, W, C)`` uint8 under homography ``h`` (image -> crop).

    Bilinear sampling; when the crop shrinks the image by more than 2x, the image is first reduced by an
    integer factor with area averaging, so that the crop is not aliased.
    """
    centre = np.array([(size - 1) / 2.0] * 2)
    inv = np.linalg.inv(h)
    # raw-image pixels per crop pixel at the crop's centre
    a, b = transform_points(inv, centre), transform_points(inv, centre + [1.0, 0.0])
    k = int(np.floor(float(np.linalg.norm(b - a))))
    if k >= 2:
        small = cv2.resize(image, (image.shape[1] // k, image.shape[0] // k), interpolation=cv2.INTER_AREA)
        # small-image pixel j covers raw pixels [k j, k j + k): its centre is raw k j + (k - 1) / 2
        up = np.array([[k, 0.0, (k - 1) / 2.0], [0.0, k, (k - 1) / 2.0], [0.0, 0.0, 1.0]])
        image, h = small, h @ up
    return cv2.warpPerspective(image, h, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def rotate_gaze(pitchyaw: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """``(N, 2)`` pitch/yaw (radians) rotated by ``(N, 3, 3)`` rotations: ``vector_to_pitchyaw(R v)``."""
    v = pitchyaw_to_vector(torch.as_tensor(np.asarray(pitchyaw, dtype=np.float64))).numpy()
    return vector_to_pitchyaw(torch.from_numpy(np.einsum("nij,nj->ni", rotation, v))).numpy()


def denormalize_gaze(pitchyaw_normalized: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Gaze of the virtual camera -> gaze of the real camera: ``R^T`` applied to the vector."""
    return rotate_gaze(pitchyaw_normalized, np.swapaxes(rotation, -1, -2))


def normalize_gaze(pitchyaw_camera: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Gaze of the real camera -> gaze of the virtual camera: ``R`` applied to the vector."""
    return rotate_gaze(pitchyaw_camera, rotation)
