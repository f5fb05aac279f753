"""Gaze traces on a screen, in the CSV format that sparse-video-loss's ``import-csv`` reads.

The format (documented in both packages' READMEs): one row per sample, columns ``sequence,t,x,y``;
``sequence`` names a trace (here the input file or folder), ``t`` is in seconds, ``x, y`` are screen
pixels from the top-left corner, x to the right, y down, as the viewer sees the screen.

A predicted gaze direction becomes a point on the screen through a virtual setup, since a prediction
carries no eye position: the eye sits on the screen's central axis, ``distance_px`` in front of it, and
the screen lies in the normalized camera's x-y plane (the camera is mounted at the screen, as in EVE).
In EVE's convention (see ``geometry``) the gaze direction is ``-pitchyaw_to_vector``; it meets the
plane at ``x = distance tan(yaw)`` right of the centre and ``y = -distance tan(pitch) / cos(yaw)`` below
it (pitch > 0 looks up, yaw > 0 looks to the viewer's right). Directions that look away from the screen
plane (|yaw| >= 90 degrees) have no point and are left out.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

TRACE_COLUMNS = ("sequence", "t", "x", "y")


def pitchyaw_to_screen(
    pitchyaw: np.ndarray, *, width_px: float, height_px: float, distance_px: float
) -> np.ndarray:
    """``(N, 2)`` pitch/yaw in radians -> ``(N, 2)`` screen points (x, y) in pixels; NaN where none."""
    pitchyaw = np.asarray(pitchyaw, dtype=np.float64)
    if pitchyaw.ndim != 2 or pitchyaw.shape[1] != 2:
        raise ValueError(f"pitchyaw must be (N, 2), got {pitchyaw.shape}")
    if distance_px <= 0 or width_px <= 0 or height_px <= 0:
        raise ValueError("screen width, height and distance must be positive")
    pitch, yaw = pitchyaw[:, 0], pitchyaw[:, 1]
    cos_yaw = np.cos(yaw)
    facing = cos_yaw > 1e-6
    safe = np.where(facing, cos_yaw, 1.0)
    x = width_px / 2 + distance_px * np.tan(yaw)
    y = height_px / 2 - distance_px * np.tan(pitch) / safe
    out = np.stack([x, y], axis=1)
    out[~facing] = np.nan
    return out


def write_trace_csv(path: str | Path, sequences: Sequence[tuple[str, np.ndarray]], *, fps: float) -> Path:
    """Write traces ``(name, (N, 2) points)``: sample ``i`` of each at ``t = i / fps`` seconds.

    Samples without a point (NaN) are left out.
    """
    if fps <= 0 or not math.isfinite(fps):
        raise ValueError(f"fps must be positive, got {fps}")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(TRACE_COLUMNS)
        for sequence, points in sequences:
            for i, (x, y) in enumerate(points):
                if np.isfinite(x) and np.isfinite(y):
                    w.writerow([sequence, f"{i / fps:.6f}", f"{x:.3f}", f"{y:.3f}"])
    return p
