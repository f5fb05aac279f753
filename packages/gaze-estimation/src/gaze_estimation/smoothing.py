"""Landmarks smoothed over the frames of a video (``predict-raw --smooth``; off by default).

Each face found in a frame is matched to the nearest face of the previous frame (box centres closer than
half the previous box's width); its points and box become an exponential moving average, weight ``alpha``
on the new frame. A face without a match starts afresh, and so does every face after a frame without
faces, a frame that could not be read, or a new video. Images are never smoothed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .landmarks import FaceLandmarks


def _centre(face: FaceLandmarks) -> np.ndarray:
    x, y, w, h = face.box
    return np.array([x + w / 2, y + h / 2])


def blend(new: FaceLandmarks, old: FaceLandmarks, alpha: float) -> FaceLandmarks:
    """``alpha * new + (1 - alpha) * old`` for the box and every point both have; the rest from ``new``."""
    box = tuple(float(v) for v in alpha * np.asarray(new.box) + (1 - alpha) * np.asarray(old.box))
    points = {
        k: tuple(float(v) for v in alpha * np.asarray(p) + (1 - alpha) * np.asarray(old.points[k])) if k in old.points else p
        for k, p in new.points.items()
    }
    return FaceLandmarks(box, points, new.method, new.score)  # type: ignore[arg-type]


class LandmarkSmoother:
    """Exponential smoothing of each face's landmarks over consecutive frames of one video."""

    def __init__(self, alpha: float = 0.5) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"smoothing weight alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self._source: str | None = None
        self._previous: list[FaceLandmarks] = []

    def reset(self) -> None:
        self._source, self._previous = None, []

    def __call__(self, source: str, faces: Sequence[FaceLandmarks]) -> list[FaceLandmarks]:
        """The smoothed ``faces`` of the next frame of ``source`` (in the same order)."""
        if source != self._source:
            self._source, self._previous = source, []
        free = list(self._previous)
        out = []
        for face in faces:
            c = _centre(face)
            near = [p for p in free if np.linalg.norm(_centre(p) - c) < 0.5 * p.box[2]]
            if near:
                match = min(near, key=lambda p: float(np.linalg.norm(_centre(p) - c)))
                free.remove(match)
                face = blend(face, match, self.alpha)
            out.append(face)
        self._previous = out
        return out
