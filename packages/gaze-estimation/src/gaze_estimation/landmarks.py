"""Faces and landmarks in camera images, and the head pose that data normalization needs.

Three detectors, chosen in the ``predict-raw`` config (``landmarks.detector``); each returns every face
it finds, largest first:

* ``dlib`` (the default when the ``[landmarks]`` extra is installed; ``face_detection``): dlib's HOG or CNN
  face detector and its 68-point landmark model, as in ETH-XGaze's demo. Its eye corners, eye centres,
  nose points (and mouth corners, for a face model that has them) give the full head pose by
  ``cv2.solvePnP`` against the face model.
* ``haar`` (offline with OpenCV alone; the default without dlib): OpenCV's Haar cascades that ship with
  ``opencv-python-headless`` below 5.0 (``cv2.data.haarcascades``): the frontal-face cascade ``alt2``, then
  the eye cascade in the upper part of the face. It gives the two eye centres (or, when the eye cascade
  finds no pair, eye positions at fixed proportions of the face box: method ``haar-box``). From two eyes
  the head pose is only partly known: the depth comes from the face model's eye distance, the head's x
  axis from the line between the eyes, and the head is assumed to face the camera.
* ``mediapipe``: MediaPipe's Face Landmarker (a ``.task`` file the user downloads, read by the optional
  ``mediapipe`` package; ``landmarks.model_path``). Its 478-point mesh gives the eye corners, nose tip
  and mouth corners, and the full head pose comes from ``cv2.solvePnP`` against the face model.

Where the eye crops are centred (``landmarks.eye_centres``): ``landmarks`` (the default), the detector's
eye centres (dlib: the mean of each eye's six contour points); ``face_model``, the face model's eye centres
placed by the head pose that PnP fits to the face's other points (the eye corners, nose, brows, ...; not
the eye centres, which a detector may pull towards the iris), as ETH-XGaze's demo and EVE's preprocessing
place them. The head pose
of data normalization is then that pose too. A face with fewer than four such points (Haar, dlib's 5-point
model) gets the pose from its eyes as well, which puts the model's eyes back on the detected ones.

Face models hold named 3D points in millimetres in the frame of data normalization's face models:
origin midway between the eye centres, x towards the subject's left, y down, z into the head. PnP uses
every point that both the face model and the detector name.

* ``canonical`` (the default): the eye corners, nose tip, nose wings and base of the nose of MediaPipe's
  canonical face model (Apache-2.0; ``face_model_canonical.json`` states the source and conversion), with
  the eye centres midway between the corners. These points are rigid: the mouth, whose corners move with
  expression, is left out (as ETH-XGaze's demo leaves it out, using the eye corners and nose wings). On a
  smiling face the mouth corners pull the pose by tens of degrees in pitch.
* ``generic``: the 6-point model of Zhang et al.'s normalization code (eye corners and mouth corners), the
  eye centres midway between the corners, and a nose tip from average anthropometry.
* ``synthetic``: the head of ``make-synthetic``: the eye centres (the eyeballs' centres), the mouth's centre
  and ``nose_base``, the renderer's ``nose`` landmark (it draws the nose as a dark base below a lit bridge,
  with no tip: dlib's point 33, not its nose tip 30, lands there), and the ends of what it draws: the
  eye openings' corners, the brows' ends and tops, the nose shadow's ends (``nose_right``/``nose_left``)
  and the mouth's corners, for a mean participant (``synthetic.SYNTHETIC_FACE_MODEL``).
* a JSON file ``{"name": [x, y, z], ...}`` (or ``{"points": {...}}`` with other keys beside it) gives any other.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import cv2
import numpy as np

from perception_shared.errors import ConfigError
from perception_shared.logging import get_logger

from .synthetic import SYNTHETIC_FACE_MODEL

EYES = ("right_eye", "left_eye")
EyeCentres = Literal["landmarks", "face_model"]
EYE_CENTRE_SOURCES: tuple[str, ...] = get_args(EyeCentres)

GENERIC_FACE_MODEL: dict[str, tuple[float, float, float]] = {
    "right_eye_outer": (-45.1, -0.5, 2.4),
    "right_eye_inner": (-21.3, 0.5, -2.4),
    "left_eye_inner": (21.3, 0.5, -2.4),
    "left_eye_outer": (45.1, -0.5, 2.4),
    "right_eye": (-33.2, 0.0, 0.0),
    "left_eye": (33.2, 0.0, 0.0),
    "nose": (0.0, 45.0, -20.0),
    "mouth_right": (-26.3, 68.6, 0.0),
    "mouth_left": (26.3, 68.6, 0.0),
}
CANONICAL_FACE_MODEL_FILE = Path(__file__).with_name("face_model_canonical.json")
FACE_MODELS = {
    "canonical": CANONICAL_FACE_MODEL_FILE,
    "generic": GENERIC_FACE_MODEL,
    "synthetic": {("nose_base" if k == "nose" else k): v for k, v in SYNTHETIC_FACE_MODEL.items()},
}

# MediaPipe face-mesh indices of the points used here (the subject's right eye is on the image's left).
MEDIAPIPE_POINTS: dict[str, int] = {
    "right_eye_outer": 33,
    "right_eye_inner": 133,
    "left_eye_inner": 362,
    "left_eye_outer": 263,
    "nose": 1,
    "nose_right": 98,
    "nose_left": 327,
    "nose_base": 2,
    "mouth_right": 61,
    "mouth_left": 291,
}
# Eye positions inside a Haar face box (fractions of its width and height), for faces whose eyes the
# eye cascade does not find: an average over frontal faces, not a measurement of this face.
HAAR_BOX_EYES = {"right_eye": (0.30, 0.38), "left_eye": (0.70, 0.38)}

_log = get_logger("gaze_estimation.landmarks")


@dataclass
class LandmarkConfig:
    """Face and landmark detection (``landmarks.*`` of the ``predict-raw`` config)."""

    # dlib, haar or mediapipe; null: dlib when the [landmarks] extra is installed, else haar (with a warning)
    detector: Literal["dlib", "haar", "mediapipe"] | None = None
    # dlib: a shape predictor .dat (default: face-recognition-models' 68-point model); mediapipe: the .task file
    model_path: Path | None = None
    face_model: str = "canonical"  # canonical, generic, synthetic, or a JSON file of named 3D points (mm)
    max_faces: int = 10  # faces reported per frame, largest first
    face_detector: Literal["hog", "cnn"] = "hog"  # dlib's face detector: HOG + linear SVM, or the CNN (MMOD)
    upsample: int = 1  # dlib: image doublings before detection (faces from 80 / 2**upsample px)
    dlib_threshold: float = 0.0  # dlib HOG: added to the decision threshold (< 0 finds more faces, and more false ones)
    dlib_rolls_deg: list[float] = field(default_factory=lambda: [15.0, -15.0])  # head tilts also searched (dlib)
    min_face_px: int = 48  # smallest face the Haar cascade looks for
    haar_rolls_deg: list[float] = field(default_factory=lambda: [20.0, -20.0])  # head tilts also searched (Haar)
    # Videos only: smooth each face's landmarks over consecutive frames (exponential, weight smooth_alpha on
    # the new frame). Off by default, so that a frame gives the same numbers in a video as in an image.
    smooth: bool = False
    smooth_alpha: float = 0.5
    # Where the eye crops are centred: the detector's eye centres ('landmarks'), or the face model's eye
    # centres placed by the head pose fitted to the face's other points ('face_model'); see the module doc.
    eye_centres: EyeCentres = "landmarks"

    def __post_init__(self) -> None:
        if self.eye_centres not in EYE_CENTRE_SOURCES:
            raise ValueError(f"landmarks.eye_centres must be one of {', '.join(EYE_CENTRE_SOURCES)}, got {self.eye_centres!r}")
        if self.max_faces < 1:
            raise ValueError(f"landmarks.max_faces must be at least 1, got {self.max_faces}")
        if self.upsample < 0:
            raise ValueError(f"landmarks.upsample must be 0 or more, got {self.upsample}")
        if not 0 < self.smooth_alpha <= 1:
            raise ValueError(f"landmarks.smooth_alpha must be in (0, 1], got {self.smooth_alpha}")


@dataclass(frozen=True)
class FaceLandmarks:
    """One face in an image: its box ``(x, y, w, h)`` and named points, in pixels (OpenCV pixel centres).

    ``points`` always holds ``right_eye`` and ``left_eye`` (the subject's; the right eye is on the
    image's left); ``method`` says how they were found (``dlib-hog``, ``dlib-cnn``, ``haar-eyes``,
    ``haar-box``, ``mediapipe``, or the name of another detector); ``score`` is the face detector's
    confidence where it gives one (dlib HOG: the SVM margin, > 0 detected; dlib CNN: its confidence).
    """

    box: tuple[float, float, float, float]
    points: dict[str, tuple[float, float]]
    method: str
    score: float | None = None


# An RGB image -> every face found in it, largest first.
Detector = Callable[[np.ndarray], "list[FaceLandmarks]"]


def by_size(faces: Sequence[FaceLandmarks]) -> list[FaceLandmarks]:
    """Faces largest (box area) first."""
    return sorted(faces, key=lambda f: -f.box[2] * f.box[3])


def turned_back(face: FaceLandmarks, back: np.ndarray) -> FaceLandmarks:
    """A face found in a turned image, in the image's own pixels: ``back`` is the 2 x 3 affine map back.

    The points are mapped; the box becomes the upright box around the mapped corners of the found one.
    """
    x, y, w, h = face.box
    corners = np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h]]) @ back[:, :2].T + back[:, 2]
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    points = {n: tuple(float(v) for v in np.asarray(p) @ back[:, :2].T + back[:, 2]) for n, p in face.points.items()}
    box = (float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))
    return FaceLandmarks(box, points, face.method, face.score)  # type: ignore[arg-type]


def load_face_model(spec: str | Path) -> dict[str, np.ndarray]:
    """A face model by name (``canonical``, ``generic``, ``synthetic``) or from a JSON file; needs both eye centres."""
    name = str(spec)
    known = FACE_MODELS.get(name)
    if isinstance(known, dict):
        raw: Any = known
        where = f"face model {name!r}"
    else:
        path = known or Path(name)
        if not path.is_file():
            raise ConfigError(f"landmarks.face_model: {name!r} is neither {', '.join(FACE_MODELS)} nor an existing JSON file")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"face model {path}: cannot read JSON ({e})") from None
        where = f"face model {path}"
    if isinstance(raw, dict) and isinstance(raw.get("points"), dict):
        raw = raw["points"]
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object of named [x, y, z] points in mm")
    model = {}
    for key, value in raw.items():
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != (3,) or not np.isfinite(arr).all():
            raise ConfigError(f"{where}: point {key!r} is {value!r}, expected three finite numbers (mm)")
        model[key] = arr
    missing = [e for e in EYES if e not in model]
    if missing:
        raise ConfigError(f"{where}: missing point(s) {', '.join(missing)} (the eye centres are required)")
    if np.linalg.norm(model["left_eye"] - model["right_eye"]) <= 0:
        raise ConfigError(f"{where}: the two eye centres coincide")
    return model


class HaarDetector:
    """Frontal faces (Haar cascade ``alt2``, largest first) and their two eyes (Haar eye cascade).

    The cascades are trained on upright faces: when the upright image gives no face with two eyes, the
    image is also searched rotated by each angle of ``rolls_deg`` (a tilted head), and the points are
    rotated back. A face whose eyes are not found gets eye positions at fixed proportions of its box
    (method ``haar-box``). The cascades give no score.
    """

    def __init__(self, min_face_px: int = 48, rolls_deg: Sequence[float] = (20.0, -20.0), max_faces: int = 10) -> None:
        root = Path(cv2.data.haarcascades)
        self.face = cv2.CascadeClassifier(str(root / "haarcascade_frontalface_alt2.xml"))
        self.eye = cv2.CascadeClassifier(str(root / "haarcascade_eye.xml"))
        if self.face.empty() or self.eye.empty():
            raise ConfigError(
                f"OpenCV's Haar cascades are missing from {root}: install opencv-python-headless below 5.0 "
                "(the 5.0 wheels no longer ship them) or use landmarks.detector: mediapipe"
            )
        self.min_face_px = min_face_px
        self.rolls_deg = tuple(rolls_deg)
        self.max_faces = max_faces

    def __call__(self, rgb: np.ndarray) -> list[FaceLandmarks]:
        gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        first: list[FaceLandmarks] = []
        for angle in (0.0, *self.rolls_deg):
            found = self._upright(gray, angle)
            if found and found[0].method == "haar-eyes":
                return found
            first = first or found
        return first

    def _upright(self, gray: np.ndarray, angle: float) -> list[FaceLandmarks]:
        """Faces in ``gray`` turned by ``angle`` degrees (counter-clockwise) about its centre; image coordinates."""
        h_img, w_img = gray.shape
        turn = cv2.getRotationMatrix2D(((w_img - 1) / 2, (h_img - 1) / 2), angle, 1.0)
        view = gray if angle == 0 else cv2.warpAffine(gray, turn, (w_img, h_img), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        boxes = self.face.detectMultiScale(view, scaleFactor=1.05, minNeighbors=3, minSize=(self.min_face_px, self.min_face_px))
        back = cv2.invertAffineTransform(turn)
        faces = []
        for box in sorted(boxes, key=lambda b: -b[2] * b[3])[: self.max_faces]:
            x, y, w, h = (float(v) for v in box)
            eyes = self._eyes(view, x, y, w, h)
            method = "haar-eyes" if eyes is not None else "haar-box"
            points = eyes or {name: (x + fx * w, y + fy * h) for name, (fx, fy) in HAAR_BOX_EYES.items()}
            face = FaceLandmarks((x, y, w, h), points, method)
            faces.append(face if angle == 0 else turned_back(face, back))
        return faces

    def _eyes(self, gray: np.ndarray, x: float, y: float, w: float, h: float) -> dict[str, tuple[float, float]] | None:
        """The best eye in each half of the face box's eye band, or None."""
        x0, y0 = int(max(x, 0)), int(max(y + 0.15 * h, 0))
        band = gray[y0 : int(y + 0.6 * h), x0 : int(x + w)]
        if band.size == 0:
            return None
        # The eye cascade finds eyes of 20 px and more: look at the band at ~220 px face width.
        s = max(1.0, 220.0 / w)
        band = cv2.resize(band, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR) if s > 1 else band
        found = self.eye.detectMultiScale(band, scaleFactor=1.05, minNeighbors=3, minSize=(int(0.12 * w * s),) * 2)
        best: dict[str, tuple[float, float]] = {}
        for name, (fx, fy) in HAAR_BOX_EYES.items():
            want = np.array([fx * w, fy * h - (y0 - y)]) * s
            # box centres in the band's pixel-centre coordinates, this half of the face only
            side = [(ex + ew / 2 - 0.5, ey + eh / 2 - 0.5) for ex, ey, ew, eh in found if ((ex + ew / 2) < band.shape[1] / 2) == (fx < 0.5)]
            if not side:
                return None
            cx, cy = min(side, key=lambda c: float(np.hypot(c[0] - want[0], c[1] - want[1])))
            # cv2.resize puts the centre of band pixel i at (i + 0.5) / s - 0.5 of the unscaled band
            best[name] = (x0 + (cx + 0.5) / s - 0.5, y0 + (cy + 0.5) / s - 0.5)
        return best


def mesh_to_landmarks(mesh: np.ndarray, width: int, height: int, method: str = "mediapipe") -> FaceLandmarks:
    """A face mesh ``(478, 2+)`` in MediaPipe's normalized image coordinates -> named points in pixels."""
    mesh = np.asarray(mesh, dtype=np.float64)
    if mesh.ndim != 2 or mesh.shape[0] <= max(MEDIAPIPE_POINTS.values()) or mesh.shape[1] < 2:
        raise ValueError(f"expected a face mesh of at least {max(MEDIAPIPE_POINTS.values()) + 1} points, got {mesh.shape}")
    # MediaPipe's x, y are fractions of the width and height with 0 at the image's edge.
    xy = mesh[:, :2] * np.array([width, height]) - 0.5
    points = {name: (float(xy[i, 0]), float(xy[i, 1])) for name, i in MEDIAPIPE_POINTS.items()}
    for eye in ("right_eye", "left_eye"):
        a, b = np.array(points[f"{eye}_outer"]), np.array(points[f"{eye}_inner"])
        points[eye] = tuple((a + b) / 2)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    return FaceLandmarks((float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])), points, method)


class MediaPipeLandmarker:
    """MediaPipe's Face Landmarker from a ``.task`` file (``pip install mediapipe``; download the file).

    ``detect_mesh`` maps an RGB image to the meshes of the faces in it (``(478, 3)`` normalized
    coordinates each); ``from_task_file`` builds it from MediaPipe's Python API.
    """

    def __init__(self, detect_mesh: Callable[[np.ndarray], Sequence[np.ndarray]]) -> None:
        self.detect_mesh = detect_mesh

    @classmethod
    def from_task_file(cls, path: str | Path, max_faces: int = 10) -> MediaPipeLandmarker:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(
                f"landmarks.model_path: {path} does not exist (download MediaPipe's face_landmarker.task, "
                "see the package README)"
            )
        try:
            import mediapipe as mp
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError:
            raise ConfigError("landmarks.detector 'mediapipe' needs the mediapipe package: pip install mediapipe") from None
        options = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(path)), num_faces=max_faces)
        landmarker = vision.FaceLandmarker.create_from_options(options)

        def detect_mesh(rgb: np.ndarray) -> list[np.ndarray]:
            result = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb)))
            return [np.array([[p.x, p.y, p.z] for p in face]) for face in result.face_landmarks]

        return cls(detect_mesh)

    def __call__(self, rgb: np.ndarray) -> list[FaceLandmarks]:
        return by_size([mesh_to_landmarks(m, rgb.shape[1], rgb.shape[0]) for m in self.detect_mesh(rgb)])


def resolve_detector(detector: str | None) -> str:
    """The detector to use: the configured one, or dlib when installed, else haar with a one-line warning."""
    from .face_detection import dlib_available

    if detector is not None:
        return detector
    if dlib_available():
        return "dlib"
    _log.warning(
        'dlib is not installed: predict-raw falls back to the Haar cascades, which find about half of the faces and '
        'misplace the eyes; for dlib\'s landmark model: pip install "packages/gaze-estimation[landmarks]"'
    )
    return "haar"


def build_detector(cfg: LandmarkConfig) -> Detector:
    """The detector a ``predict-raw`` config names (``resolve_detector`` picks one when it names none)."""
    detector = resolve_detector(cfg.detector)
    if detector == "dlib":
        from .face_detection import DlibDetector

        return DlibDetector(
            cfg.face_detector, upsample=cfg.upsample, threshold=cfg.dlib_threshold, rolls_deg=cfg.dlib_rolls_deg,
            predictor_path=cfg.model_path, max_faces=cfg.max_faces,
        )
    if detector == "haar":
        return HaarDetector(cfg.min_face_px, cfg.haar_rolls_deg, cfg.max_faces)
    if detector == "mediapipe":
        if cfg.model_path is None:
            raise ConfigError("landmarks.detector 'mediapipe' needs landmarks.model_path (the face_landmarker.task file)")
        return MediaPipeLandmarker.from_task_file(cfg.model_path, cfg.max_faces)
    raise ConfigError(f"landmarks.detector: unknown detector {detector!r}; use dlib, haar or mediapipe")


@dataclass(frozen=True)
class HeadPose:
    """A head in camera coordinates (mm): rotation (columns: head x, y, z axes) and its eyes' midpoint."""

    rotation: np.ndarray  # (3, 3)
    eye_midpoint: np.ndarray  # (3,) the face model's origin
    method: str  # 'pnp' (full pose from >= 4 points) or 'eyes' (two eyes, head assumed facing the camera)

    def point(self, model_point: Sequence[float]) -> np.ndarray:
        """A point of the face-model frame in camera coordinates (mm)."""
        return self.eye_midpoint + self.rotation @ np.asarray(model_point, dtype=np.float64)

    def angles_deg(self) -> tuple[float, float, float]:
        """Head pitch, yaw and roll in degrees, in the camera's axes; all 0 for a head facing the camera upright.

        Pitch and yaw are those of the head's z axis in the gaze convention (``geometry``): yaw > 0 turns the
        face towards the image's left, pitch > 0 turns it up. The rotation is ``R_y(yaw) R_x(-pitch)
        R_z(roll)``: roll is the turn about the face's own forward axis, > 0 when the subject's left eye
        (on the image's right) is lower, i.e. the face turned clockwise as the image is shown.
        """
        r = self.rotation
        pitch = np.arcsin(np.clip(r[1, 2], -1.0, 1.0))
        yaw = np.arctan2(r[0, 2], r[2, 2])
        cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
        undo = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]]) @ np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]]) @ r
        return float(np.degrees(pitch)), float(np.degrees(yaw)), float(np.degrees(np.arctan2(undo[1, 0], undo[0, 0])))


def _rays(camera_matrix: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Unit viewing rays ``(N, 3)`` of pixels ``(N, 2)``."""
    h = np.concatenate([pixels, np.ones((len(pixels), 1))], axis=1) @ np.linalg.inv(camera_matrix).T
    return h / np.linalg.norm(h, axis=1, keepdims=True)


def head_pose_from_eyes(camera_matrix: np.ndarray, right_eye: np.ndarray, left_eye: np.ndarray, eye_distance_mm: float) -> HeadPose:
    """Head pose from the two eye centres alone: both eyes at one distance, the head facing the camera.

    The eyes are put on their viewing rays at the distance where they are ``eye_distance_mm`` apart;
    the head's x axis is the line between them, its z axis the one closest to the viewing direction.
    """
    r = _rays(camera_matrix, np.array([right_eye, left_eye], dtype=np.float64))
    half_angle = 0.5 * np.arccos(np.clip(float(r[0] @ r[1]), -1.0, 1.0))
    d = eye_distance_mm / (2.0 * np.sin(max(half_angle, 1e-9)))
    er, el = d * r[0], d * r[1]
    mid = (er + el) / 2
    hx = (el - er) / np.linalg.norm(el - er)
    hy = np.cross(mid / np.linalg.norm(mid), hx)
    hy /= np.linalg.norm(hy)
    return HeadPose(np.stack([hx, hy, np.cross(hx, hy)], axis=1), mid, "eyes")


def head_pose_pnp(
    camera_matrix: np.ndarray, points: dict[str, tuple[float, float]], model: dict[str, np.ndarray], *, eyes: bool = True
) -> HeadPose | None:
    """Full head pose by ``cv2.solvePnP`` (SQPnP, then Levenberg-Marquardt) on the named points both have.

    ``eyes``: the eye centres are among the points (False: every other point, not them). Needs four
    points or more; None when there are fewer or the solution puts the face behind the camera.
    """
    names = [n for n in points if n in model and n not in EYES] + (list(EYES) if eyes else [])
    if len(names) < 4:
        return None
    obj = np.array([model[n] for n in names], dtype=np.float64)
    img = np.array([points[n] for n in names], dtype=np.float64)
    ok, rvec, tvec = cv2.solvePnP(obj, img, camera_matrix, None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        return None
    rvec, tvec = cv2.solvePnPRefineLM(obj, img, camera_matrix, None, rvec, tvec)
    rot = cv2.Rodrigues(rvec)[0]
    # HeadPose is anchored at the eyes' midpoint, wherever the model's own origin is
    mid = rot @ ((model["left_eye"] + model["right_eye"]) / 2) + tvec.reshape(3)
    if mid[2] <= 0:
        return None
    return HeadPose(rot, mid, "pnp")


def estimate_head_pose(camera_matrix: np.ndarray, face: FaceLandmarks, model: dict[str, np.ndarray], *, eyes: bool = True) -> HeadPose:
    """PnP when the face has enough points the model knows, else the two-eye estimate.

    ``eyes`` False: PnP on the points other than the eye centres (when there are four of them or more).
    """
    pose = head_pose_pnp(camera_matrix, face.points, model, eyes=eyes)
    if pose is None and not eyes:  # fewer than four other points: the eyes join them
        pose = head_pose_pnp(camera_matrix, face.points, model)
    if pose is not None:
        return pose
    distance = float(np.linalg.norm(model["left_eye"] - model["right_eye"]))
    pose = head_pose_from_eyes(camera_matrix, np.array(face.points["right_eye"]), np.array(face.points["left_eye"]), distance)
    # The model's origin is midway between its eye centres, wherever they are in the model.
    offset = (model["left_eye"] + model["right_eye"]) / 2
    return HeadPose(pose.rotation, pose.eye_midpoint - pose.rotation @ offset, pose.method)


def project(camera_matrix: np.ndarray, point: np.ndarray) -> tuple[float, float]:
    """A point in camera coordinates (mm) -> its pixel (OpenCV pixel-centre coordinates)."""
    h = np.asarray(camera_matrix, dtype=np.float64) @ point
    return float(h[0] / h[2]), float(h[1] / h[2])


def eye_centres(
    camera_matrix: np.ndarray, face: FaceLandmarks, model: dict[str, np.ndarray], source: EyeCentres = "landmarks"
) -> tuple[HeadPose, dict[str, tuple[float, float]]]:
    """The head pose and the two eye centres (pixels) the eye crops are centred on (``landmarks.eye_centres``)."""
    if source == "landmarks":
        return estimate_head_pose(camera_matrix, face, model), {e: face.points[e] for e in EYES}
    if source == "face_model":
        head = estimate_head_pose(camera_matrix, face, model, eyes=False)
        return head, {e: project(camera_matrix, head.point(model[e])) for e in EYES}
    raise ConfigError(f"landmarks.eye_centres: unknown source {source!r}; use {' or '.join(EYE_CENTRE_SOURCES)}")
