"""Gaze angles, 3D gaze vectors and the angular error between them.

One convention throughout the package, EVE's (``src/models/common.py`` of swook/EVE, the functions its
models use to turn the ``*_g_tobii`` labels into points of gaze on the screen):

* coordinates are those of the *normalized* camera: x to the image's right, y down, z from the camera
  towards the face;
* ``pitchyaw_to_vector((pitch, yaw)) = (cos(pitch) sin(yaw), sin(pitch), cos(pitch) cos(yaw))``, a unit
  vector that points from the gaze target back to the eye; the gaze direction (eye -> target) is its
  negation. ``(0, 0)`` is a look straight into the camera;
* pitch > 0 is a look up, yaw > 0 a look towards the image's left (the subject's right).

EVE's ``core/gaze.py`` has a numpy variant with the y component negated; it gives the same angular
errors but a mirrored vector, and it is not the one that ties the labels to the screen.

All functions take and return torch tensors, radians unless the name says degrees.
"""

from __future__ import annotations

import math

import torch


def pitchyaw_to_vector(pitchyaw: torch.Tensor) -> torch.Tensor:
    """``(..., 2)`` pitch/yaw in radians -> ``(..., 3)`` unit vectors (EVE's convention, see module doc)."""
    if pitchyaw.shape[-1] != 2:
        raise ValueError(f"pitchyaw_to_vector expects (..., 2) pitch/yaw, got shape {tuple(pitchyaw.shape)}")
    pitch, yaw = pitchyaw[..., 0], pitchyaw[..., 1]
    cp = torch.cos(pitch)
    return torch.stack([cp * torch.sin(yaw), torch.sin(pitch), cp * torch.cos(yaw)], dim=-1)


def vector_to_pitchyaw(vector: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` vectors (any nonzero length) -> ``(..., 2)`` pitch in [-pi/2, pi/2], yaw in (-pi, pi]."""
    if vector.shape[-1] != 3:
        raise ValueError(f"vector_to_pitchyaw expects (..., 3) vectors, got shape {tuple(vector.shape)}")
    x, y, z = vector[..., 0], vector[..., 1], vector[..., 2]
    # atan2 of the horizontal length instead of asin(y / |v|): exact for vectors of any length and
    # well-conditioned near the poles.
    pitch = torch.atan2(y, torch.sqrt(x * x + z * z))
    yaw = torch.atan2(x, z)
    return torch.stack([pitch, yaw], dim=-1)


def _safe_norm(v: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over the last axis whose gradient is finite (zero) at the zero vector."""
    sq = (v * v).sum(dim=-1)
    positive = sq > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), torch.zeros_like(sq))


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cross product over the last axis, written out so that ``a x a`` is exactly zero."""
    ax, ay, az = a.unbind(-1)
    bx, by, bz = b.unbind(-1)
    return torch.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], dim=-1)


def angular_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Angle in radians between the gaze directions of ``(..., 2)`` pitch/yaw tensors; shape ``(...)``.

    Computed as ``atan2(|a x b|, a . b)``, which is accurate for tiny angles (``acos`` of the dot
    product is not) and has finite gradients everywhere, including at zero error.
    """
    if pred.shape != target.shape:
        raise ValueError(f"angular_error: prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    a, b = pitchyaw_to_vector(pred), pitchyaw_to_vector(target)
    return torch.atan2(_safe_norm(_cross(a, b)), (a * b).sum(dim=-1))


def angular_error_deg(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Angle in degrees between the gaze directions of ``(..., 2)`` pitch/yaw tensors; shape ``(...)``."""
    return angular_error(pred, target) * (180.0 / math.pi)


def flip_pitchyaw(pitchyaw: torch.Tensor) -> torch.Tensor:
    """The label of a horizontally mirrored image: yaw negated, pitch kept. ``(..., 2)`` radians."""
    return torch.stack([pitchyaw[..., 0], -pitchyaw[..., 1]], dim=-1)
