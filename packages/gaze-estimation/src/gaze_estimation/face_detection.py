"""Faces and facial landmarks with dlib (``landmarks.detector: dlib``), as ETH-XGaze's demo finds them.

Faces: dlib's HOG + linear SVM frontal face detector (``get_frontal_face_detector``, the default) or its
CNN (MMOD) detector (``landmarks.face_detector: cnn``; slower, better on turned and small faces). Both
scan an image pyramid; ``upsample`` doubles the image that many times first (the HOG window is 80 px, so
each upsampling halves the smallest face found: 40 px with the default 1, as in ETH-XGaze's demo). The HOG
detector is trained on upright faces: when the upright image gives no face, the image is also searched
turned by each angle of ``rolls_deg`` and the points are turned back.

Landmarks: a dlib shape predictor (an ensemble of regression trees, Kazemi & Sullivan 2014) on each face
box. The 68-point model (iBUG 300-W markup) gives the eye corners and contours, the nose and the mouth;
the 5-point model gives the eye corners only (and the base of the nose, which no face model here holds).

Model files come with the ``face-recognition-models`` package (``pip install
"packages/gaze-estimation[landmarks]"``), which is located without importing it (its ``__init__`` needs
``pkg_resources``, gone from recent setuptools). Their terms, from dlib-models' README (the package that
ships them is MIT-licensed; see the package README):

* ``shape_predictor_68_face_landmarks.dat``: trained on iBUG 300-W, whose licence excludes commercial use;
  at the request of one of its creators the model "can't be used in a commercial product" (research use).
* ``shape_predictor_5_face_landmarks.dat`` and ``mmod_human_face_detector.dat``: trained by dlib's author
  on images he annotated himself, released into the public domain.
* the HOG face detector is part of dlib (Boost Software License).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from perception_shared.errors import ConfigError
from perception_shared.extras import require_extra

from .landmarks import FaceLandmarks, turned_back

MODELS_PACKAGE = "face_recognition_models"
SHAPE_68 = "shape_predictor_68_face_landmarks.dat"
SHAPE_5 = "shape_predictor_5_face_landmarks.dat"
MMOD = "mmod_human_face_detector.dat"

# Points of the 68-point (iBUG 300-W) markup, 0-based; the subject's right eye is on the image's left.
IBUG_RIGHT_EYE = range(36, 42)
IBUG_LEFT_EYE = range(42, 48)
IBUG_POINTS = {
    "right_brow_outer": 17,  # the brows' ends and tops (no face model of real faces holds them: brows move)
    "right_brow": 19,
    "right_brow_inner": 21,
    "left_brow_inner": 22,
    "left_brow": 24,
    "left_brow_outer": 26,
    "right_eye_outer": 36,
    "right_eye_inner": 39,
    "left_eye_inner": 42,
    "left_eye_outer": 45,
    "nose": 30,  # the tip
    "nose_right": 31,  # the wings, where they meet the face (the subject's right on the image's left)
    "nose_left": 35,
    "nose_base": 33,
    "mouth_right": 48,
    "mouth_left": 54,
}
# dlib's 5-point markup: the subject's left eye (outer, inner corner), right eye (outer, inner), nose base.
FIVE_POINT_EYES = {"left_eye": (0, 1), "right_eye": (2, 3)}


def require_dlib(what: str = "landmarks.detector 'dlib'") -> None:
    """A one-line error naming the ``[landmarks]`` extra unless dlib and its model files are installed."""
    require_extra(["dlib", MODELS_PACKAGE], package="gaze-estimation", extra="landmarks", what=what)


def dlib_available() -> bool:
    """Whether dlib and ``face-recognition-models`` are installed (the default detector then is dlib)."""
    return all(importlib.util.find_spec(m) is not None for m in ("dlib", MODELS_PACKAGE))


def dlib_model_file(name: str) -> Path:
    """A model file of ``face-recognition-models`` (``SHAPE_68``, ``SHAPE_5``, ``MMOD``)."""
    require_dlib()
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in locations:
        path = Path(root) / "models" / name
        if path.is_file():
            return path
    raise ConfigError(
        f"{name} is not in {MODELS_PACKAGE} ({', '.join(locations) or 'no location'}): reinstall it "
        '(pip install --force-reinstall face-recognition-models) or set landmarks.model_path to the file'
    )


def shape_to_landmarks(points: np.ndarray, box: tuple[float, float, float, float], score: float | None, method: str) -> FaceLandmarks:
    """A dlib shape ``(68, 2)`` or ``(5, 2)`` in pixels -> named points.

    68 points: the eye centres are the means of each eye's six contour points, with the brows' ends and
    tops, the eye and mouth corners and the nose points for PnP (each used where the face model has it). 5 points: the eye centres are the midpoints of the corners, and only
    they are given (the four corners lie almost on a line, too little for a head pose by PnP).
    """
    p = np.asarray(points, dtype=np.float64)
    if p.shape == (68, 2):
        named = {name: tuple(p[i]) for name, i in IBUG_POINTS.items()}
        named["right_eye"] = tuple(p[IBUG_RIGHT_EYE].mean(axis=0))
        named["left_eye"] = tuple(p[IBUG_LEFT_EYE].mean(axis=0))
        named["mouth"] = tuple(p[[48, 54]].mean(axis=0))
    elif p.shape == (5, 2):
        named = {eye: tuple(p[list(ij)].mean(axis=0)) for eye, ij in FIVE_POINT_EYES.items()}
    else:
        raise ConfigError(f"the dlib shape predictor gives {p.shape[0]} points; expected the 68- or 5-point markup")
    return FaceLandmarks(box, {k: (float(x), float(y)) for k, (x, y) in named.items()}, method, score)


class DlibDetector:
    """All faces (largest first, at most ``max_faces``) and their landmarks, with dlib.

    ``face_detector``: ``hog`` or ``cnn``; ``upsample``: image doublings before detection; ``threshold``:
    added to the HOG detector's decision threshold (negative finds more, and more false faces);
    ``rolls_deg``: turns of the image searched when the upright image has no face; ``predictor_path``: a
    shape predictor file (default: the 68-point model).
    """

    def __init__(
        self,
        face_detector: Literal["hog", "cnn"] = "hog",
        *,
        upsample: int = 1,
        threshold: float = 0.0,
        rolls_deg: Sequence[float] = (15.0, -15.0),
        predictor_path: Path | None = None,
        max_faces: int = 10,
    ) -> None:
        require_dlib()
        import dlib

        if face_detector not in ("hog", "cnn"):
            raise ConfigError(f"landmarks.face_detector: unknown detector {face_detector!r}; use hog or cnn")
        path = Path(predictor_path) if predictor_path is not None else dlib_model_file(SHAPE_68)
        if not path.is_file():
            raise ConfigError(f"landmarks.model_path: {path} does not exist (a dlib shape predictor .dat file)")
        try:
            self.predictor = dlib.shape_predictor(str(path))
        except RuntimeError as e:
            raise ConfigError(f"landmarks.model_path: {path} is not a dlib shape predictor ({e})") from None
        if face_detector == "hog":
            self._detect = self._hog(dlib.get_frontal_face_detector())
        else:
            self._detect = self._cnn(dlib.cnn_face_detection_model_v1(str(dlib_model_file(MMOD))))
        self.method = f"dlib-{face_detector}"
        self.upsample, self.threshold = upsample, threshold
        self.rolls_deg, self.max_faces = tuple(rolls_deg), max_faces

    def _hog(self, detector: Any):
        def detect(rgb: np.ndarray) -> list[tuple[Any, float]]:
            rects, scores, _ = detector.run(rgb, self.upsample, self.threshold)
            return list(zip(rects, scores))

        return detect

    def _cnn(self, detector: Any):
        def detect(rgb: np.ndarray) -> list[tuple[Any, float]]:
            return [(d.rect, float(d.confidence)) for d in detector(rgb, self.upsample)]

        return detect

    def __call__(self, rgb: np.ndarray) -> list[FaceLandmarks]:
        rgb = np.ascontiguousarray(rgb)
        for angle in (0.0, *self.rolls_deg):
            faces = self._upright(rgb, angle)
            if faces:
                return faces
        return []

    def _upright(self, rgb: np.ndarray, angle: float) -> list[FaceLandmarks]:
        """Faces in ``rgb`` turned by ``angle`` degrees (counter-clockwise) about its centre; image coordinates."""
        h, w = rgb.shape[:2]
        turn = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
        view = rgb if angle == 0 else cv2.warpAffine(rgb, turn, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        found = sorted(self._detect(view), key=lambda rs: -rs[0].width() * rs[0].height())[: self.max_faces]
        back = cv2.invertAffineTransform(turn)
        faces = []
        for rect, score in found:
            shape = self.predictor(view, rect)
            # dlib's points are integer pixel indices, which are OpenCV's pixel-centre coordinates
            pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
            box = (float(rect.left()), float(rect.top()), float(rect.width()), float(rect.height()))
            face = shape_to_landmarks(pts, box, float(score), self.method)
            faces.append(face if angle == 0 else turned_back(face, back))
        return faces
