"""``predict-raw``: gaze from camera images or videos of a face, in camera coordinates and on a screen.

For each frame: find the face and its landmarks (``landmarks``), estimate the head pose, normalize as
the training data was normalized (``normalization``: a virtual camera at the checkpoint's distance looks
at the face centre with the head roll removed, and the face and eye crops are warped from the image),
run the model, and rotate its gaze back into the camera's coordinates (``R^T``). With a calibration file
(``screen``) the gaze ray from the face centre is intersected with the screen.

Inputs: image files, folders of images (sorted by name; videos in them are read too) and videos (read
with PyAV; ``every`` keeps every N-th frame). Outputs in ``OUT``:

* ``gaze.csv``, one row per frame: ``source,frame,time_s,face_found,landmarks,head_pose,box_x,box_y,
  box_w,box_h,pitch,yaw,dir_x,dir_y,dir_z,origin_x,origin_y,origin_z,norm_pitch,norm_yaw,screen_x_mm,
  screen_y_mm,screen_x_px,screen_y_px,on_screen``. ``pitch``/``yaw`` (radians) are the gaze in the
  camera's coordinates (OpenCV axes: x right, y down, z from the camera into the scene) in EVE's
  convention (``geometry``: ``(0, 0)`` looks into the camera, pitch > 0 up, yaw > 0 towards the image's
  left); ``dir_*`` is the unit gaze direction from the eye towards the target (``-pitchyaw_to_vector``);
  ``origin_*`` the face centre (mm) the ray starts from; ``norm_*`` the model's output in the virtual
  camera. Without a face the row has ``face_found`` 0 and empty fields; without a calibration the
  screen fields are empty.
* ``gaze_summary.json``: counts, the camera matrix used, the normalization, detector, face model,
  checkpoint and its weights, and the conventions above.
* with ``--annotate``: ``annotated/`` with each image as a PNG (and each video as an MP4) with the face
  box, the eye points and the gaze ray drawn (its projection into the image, ``arrow_mm`` long).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import cv2
import numpy as np
import torch
from PIL import Image

from perception_shared.errors import DataError
from perception_shared.inputs import expand_inputs
from perception_shared.jsonio import write_json
from perception_shared.logging import get_logger, progress

from .data import EYE_SIZE, FACE_SIZE, to_float
from .geometry import pitchyaw_to_vector
from .landmarks import Detector, FaceLandmarks, HeadPose, build_detector, estimate_head_pose, load_face_model
from .normalization import (
    NormalizationConfig,
    crop_warp,
    denormalize_gaze,
    face_warp,
    normalizing_rotation,
    transform_points,
    warp_crop,
)
from .predict import IMAGE_SUFFIXES
from .screen import Calibration, gaze_to_screen, load_calibration, on_screen

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
CSV_COLUMNS = (
    "source", "frame", "time_s", "face_found", "landmarks", "head_pose", "box_x", "box_y", "box_w", "box_h",
    "pitch", "yaw", "dir_x", "dir_y", "dir_z", "origin_x", "origin_y", "origin_z", "norm_pitch", "norm_yaw",
    "screen_x_mm", "screen_y_mm", "screen_x_px", "screen_y_px", "on_screen",
)  # fmt: skip
CONVENTION = (
    "pitch/yaw in radians in the camera's coordinates (x right, y down, z from the camera into the scene), "
    "EVE's convention: pitchyaw_to_vector(p, y) = (cos p sin y, sin p, cos p cos y) points from the target to the "
    "eye; (0, 0) looks into the camera, pitch > 0 up, yaw > 0 towards the image's left. dir_* = -pitchyaw_to_vector "
    "(eye -> target); origin_* = face centre in mm; screen_* from the screen's top-left corner, x right, y down."
)

_log = get_logger("gaze_estimation.raw")


@dataclass
class LandmarkConfig:
    """Face and landmark detection."""

    detector: Literal["haar", "mediapipe"] = "haar"
    model_path: Path | None = None  # MediaPipe Face Landmarker .task file (detector: mediapipe)
    face_model: str = "generic"  # generic, synthetic, or a JSON file of named 3D points (mm)
    min_face_px: int = 48  # smallest face the Haar cascade looks for
    haar_rolls_deg: list[float] = field(default_factory=lambda: [20.0, -20.0])  # head tilts also searched (Haar)


@dataclass
class RawConfig:
    """Settings of ``predict-raw`` (``--config FILE``, ``--set key=value``)."""

    landmarks: LandmarkConfig = field(default_factory=LandmarkConfig)
    # Focal length of the camera in pixels when no calibration file is given (default: the image width,
    # a horizontal field of view of 53 degrees); the principal point is the image centre.
    focal_px: float | None = None
    # The normalization of the training data; null: the one in the checkpoint's config.
    normalization: NormalizationConfig | None = None
    every: int = 1  # keep every N-th frame of a video
    arrow_mm: float = 150.0  # length of the drawn gaze ray

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"every must be at least 1, got {self.every}")
        if self.focal_px is not None and self.focal_px <= 0:
            raise ValueError(f"focal_px must be positive, got {self.focal_px}")


@dataclass
class Frame:
    """One image: where it came from, its index in the source, its time in a video (s), RGB uint8 ``(H, W, 3)``."""

    source: str
    index: int
    time_s: float | None
    image: np.ndarray


def read_image(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of an image file; a DataError naming it if it cannot be decoded."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot decode image ({e})") from None


def video_rate(path: Path) -> Fraction:
    """Frames per second of a video's first stream (25 when the container does not say)."""
    with av.open(str(path)) as c:
        rate = c.streams.video[0].average_rate
    return Fraction(rate) if rate else Fraction(25)


def iter_frames(files: Sequence[Path], every: int = 1) -> Iterator[Frame]:
    """Frames of image and video files, in order; videos are decoded with PyAV, every ``every``-th frame."""
    for path in files:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            yield Frame(str(path), 0, None, read_image(path))
            continue
        try:
            with av.open(str(path)) as container:
                for i, frame in enumerate(container.decode(video=0)):
                    if i % every == 0:
                        yield Frame(str(path), i, None if frame.time is None else float(frame.time), frame.to_ndarray(format="rgb24"))
        except (av.FFmpegError, IndexError) as e:
            raise DataError(f"{path}: cannot decode as a video ({e})") from None


@dataclass(frozen=True)
class NormalizedFace:
    """The model's crops of one face and the geometry that produced them (camera coordinates, mm)."""

    face: np.ndarray  # (224, 224, 3) uint8
    leye: np.ndarray  # (112, 112, 3) the subject's left eye
    reye: np.ndarray  # (112, 112, 3)
    rotation: np.ndarray  # (3, 3) R: camera -> virtual camera
    face_centre: np.ndarray  # (3,)
    warp: np.ndarray  # (3, 3) image -> face crop
    head: HeadPose
    landmarks: FaceLandmarks


def normalize_face(
    image: np.ndarray, camera_matrix: np.ndarray, face: FaceLandmarks, model: dict[str, np.ndarray], cfg: NormalizationConfig
) -> NormalizedFace:
    """Head pose, face centre, normalizing rotation and the three crops of one detected face."""
    head = estimate_head_pose(camera_matrix, face, model)
    centre = head.point(cfg.face_centre_mm)
    rot = normalizing_rotation(centre, head.rotation[:, 0])
    w = face_warp(camera_matrix, centre, rot, cfg)
    crops = {}
    for name, point in (("leye", "left_eye"), ("reye", "right_eye")):
        c = transform_points(w, np.array(face.points[point]))
        crops[name] = warp_crop(image, crop_warp(w, c, cfg.eye_span_px, EYE_SIZE), EYE_SIZE)
    return NormalizedFace(warp_crop(image, w, FACE_SIZE), crops["leye"], crops["reye"], rot, centre, w, head, face)


@dataclass
class FrameResult:
    """What ``predict-raw`` found in one frame (``face`` is None when no face was found)."""

    frame: Frame
    face: NormalizedFace | None = None
    gaze: np.ndarray | None = None  # (2,) camera pitch/yaw, radians
    gaze_normalized: np.ndarray | None = None  # (2,) the model's output
    screen_mm: np.ndarray | None = None  # (2,)
    screen_px: np.ndarray | None = None  # (2,)
    on_screen: bool | None = None


def default_camera_matrix(width: int, height: int, focal_px: float | None = None) -> np.ndarray:
    """Square pixels, principal point at the image centre, focal length ``focal_px`` (default: the width)."""
    f = float(width) if focal_px is None else focal_px
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


class RawGazePredictor:
    """Detector + normalization + model + de-normalization (+ screen) for camera frames.

    ``intrinsics``: a ``Calibration`` (camera matrix, distortion and screen), a ``(3, 3)`` camera
    matrix, or None (``default_camera_matrix`` with ``focal_px`` per image size).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        normalization: NormalizationConfig,
        detector: Detector,
        face_model: dict[str, np.ndarray],
        *,
        device: torch.device | str = "cpu",
        intrinsics: Calibration | np.ndarray | None = None,
        focal_px: float | None = None,
    ) -> None:
        self.model = model.eval()
        self.normalization = normalization
        self.detector = detector
        self.face_model = face_model
        self.device = torch.device(device)
        self.calibration = intrinsics if isinstance(intrinsics, Calibration) else None
        self._matrix = intrinsics.camera_matrix if isinstance(intrinsics, Calibration) else intrinsics
        self.focal_px = focal_px

    def camera_matrix(self, width: int, height: int) -> np.ndarray:
        if self._matrix is not None:
            return np.asarray(self._matrix, dtype=np.float64)
        return default_camera_matrix(width, height, self.focal_px)

    def _undistort(self, image: np.ndarray) -> np.ndarray:
        if self.calibration is None or self.calibration.dist_coeffs is None:
            return image
        return cv2.undistort(image, self.calibration.camera_matrix, self.calibration.dist_coeffs)

    def _finish(self, pending: list[FrameResult]) -> None:
        """Run the model on the pending faces and fill in their gaze (and screen points)."""
        faces = [r.face for r in pending if r.face is not None]
        if not faces:
            return
        batch = {k: torch.from_numpy(np.stack([getattr(f, k) for f in faces])).permute(0, 3, 1, 2) for k in ("face", "leye", "reye")}
        with torch.no_grad():
            out = self.model(*(to_float(batch[k].to(self.device)) for k in ("face", "leye", "reye")))
        g_norm = out.float().cpu().double().numpy()
        rot = np.stack([f.rotation for f in faces])
        g_cam = denormalize_gaze(g_norm, rot)
        origins = np.stack([f.face_centre for f in faces])
        mm = px = None
        if self.calibration is not None:
            mm, px = gaze_to_screen(origins, g_cam, self.calibration)
            inside = on_screen(px, self.calibration)
        j = 0
        for r in pending:
            if r.face is None:
                continue
            r.gaze_normalized, r.gaze = g_norm[j], g_cam[j]
            if mm is not None and px is not None:
                r.screen_mm, r.screen_px = mm[j], px[j]
                r.on_screen = bool(inside[j]) if self.calibration.screen_size_px is not None else None  # type: ignore[union-attr]
            j += 1

    def predict(self, frames: Iterable[Frame], batch_size: int = 32) -> Iterator[FrameResult]:
        """Results in the order of ``frames``; the model runs on batches of ``batch_size`` faces."""
        pending: list[FrameResult] = []
        n_faces = 0
        for frame in frames:
            image = self._undistort(frame.image)
            frame = Frame(frame.source, frame.index, frame.time_s, image)
            found = self.detector(image)
            result = FrameResult(frame)
            if found is not None:
                k = self.camera_matrix(image.shape[1], image.shape[0])
                result.face = normalize_face(image, k, found, self.face_model, self.normalization)
                n_faces += 1
            pending.append(result)
            if n_faces >= batch_size:
                self._finish(pending)
                yield from pending
                pending, n_faces = [], 0
        self._finish(pending)
        yield from pending


def _fmt(v: float | None, digits: int = 6) -> str:
    return "" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def csv_row(r: FrameResult) -> list[str]:
    """One ``gaze.csv`` row (columns ``CSV_COLUMNS``)."""
    f = r.frame
    row = [f.source, str(f.index), _fmt(f.time_s, 4)]
    if r.face is None or r.gaze is None or r.gaze_normalized is None:
        return row + ["0"] + [""] * (len(CSV_COLUMNS) - 4)
    d = -pitchyaw_to_vector(torch.from_numpy(r.gaze)).numpy()
    row += ["1", r.face.landmarks.method, r.face.head.method, *(_fmt(v, 1) for v in r.face.landmarks.box)]
    row += [_fmt(v) for v in (*r.gaze, *d)] + [_fmt(v, 2) for v in r.face.face_centre] + [_fmt(v) for v in r.gaze_normalized]
    if r.screen_mm is None or r.screen_px is None:
        return row + [""] * 5
    inside = "" if r.on_screen is None else str(int(r.on_screen))
    return row + [_fmt(v, 2) for v in (*r.screen_mm, *r.screen_px)] + [inside]


def draw_result(r: FrameResult, camera_matrix: np.ndarray, arrow_mm: float) -> np.ndarray:
    """The frame with the face box, eye points and the gaze ray (``arrow_mm`` long, projected) drawn on it."""
    img = np.ascontiguousarray(r.frame.image.copy())
    if r.face is None or r.gaze is None:
        cv2.putText(img, "no face", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 64, 64), 2, cv2.LINE_AA)
        return img
    x, y, w, h = (int(round(v)) for v in r.face.landmarks.box)
    cv2.rectangle(img, (x, y), (x + w, y + h), (255, 255, 0), 1, cv2.LINE_AA)
    for point in (r.face.landmarks.points["right_eye"], r.face.landmarks.points["left_eye"]):
        cv2.circle(img, tuple(int(round(v)) for v in point), 3, (0, 255, 0), -1, cv2.LINE_AA)
    d = -pitchyaw_to_vector(torch.from_numpy(r.gaze)).numpy()
    ends = np.stack([r.face.face_centre, r.face.face_centre + arrow_mm * d])
    if (ends[:, 2] > 1.0).all():
        h2 = ends @ camera_matrix.T
        a, b = (tuple(int(round(v)) for v in p[:2] / p[2]) for p in h2)
        cv2.arrowedLine(img, a, b, (255, 0, 0), 2, cv2.LINE_AA, tipLength=0.15)
    label = f"pitch {np.degrees(r.gaze[0]):+.1f} yaw {np.degrees(r.gaze[1]):+.1f} deg"
    cv2.putText(img, label, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
    return img


class _VideoWriter:
    """H.264 MP4 of RGB frames (sizes rounded down to even, as yuv420p needs)."""

    def __init__(self, path: Path, rate: Fraction) -> None:
        self.path, self.rate = path, rate
        self.container: Any = None
        self.stream: Any = None

    def write(self, img: np.ndarray) -> None:
        h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
        if self.container is None:
            self.container = av.open(str(self.path), "w")
            self.stream = self.container.add_stream("libx264", rate=self.rate)
            self.stream.width, self.stream.height, self.stream.pix_fmt = w, h, "yuv420p"
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img[:h, :w]), format="rgb24")):
            self.container.mux(packet)

    def close(self) -> None:
        if self.container is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()


def run_predict_raw(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    config: RawConfig | None = None,
    calibration: str | Path | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    annotate: bool = False,
) -> dict[str, Any]:
    """Run ``predict-raw`` and write ``gaze.csv``, ``gaze_summary.json`` (and ``annotated/``); returns the summary."""
    from .evaluate import load_model, weights_summary

    cfg = config or RawConfig()
    files = expand_inputs(inputs, IMAGE_SUFFIXES + VIDEO_SUFFIXES, what="images or videos")
    calib = load_calibration(calibration) if calibration is not None else None
    model, train_cfg, state = load_model(checkpoint, device)
    norm = cfg.normalization or train_cfg.normalization
    marks = cfg.landmarks
    detector = build_detector(marks.detector, model_path=marks.model_path, min_face_px=marks.min_face_px, haar_rolls_deg=marks.haar_rolls_deg)
    predictor = RawGazePredictor(
        model, norm, detector, load_face_model(cfg.landmarks.face_model), device=device, intrinsics=calib, focal_px=cfg.focal_px
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    annotated = out / "annotated"
    if annotate:
        annotated.mkdir(exist_ok=True)
    t0 = time.time()
    counts: dict[str, int] = {"frames": 0, "faces": 0}
    methods: dict[str, int] = {}
    writers: dict[str, _VideoWriter] = {}
    matrices: dict[str, list[list[float]]] = {}
    with open(out / "gaze.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in progress(predictor.predict(iter_frames(files, cfg.every), batch_size), desc="predict-raw", unit="frame"):
            w.writerow(csv_row(r))
            counts["frames"] += 1
            height, width = r.frame.image.shape[:2]
            k = predictor.camera_matrix(width, height)
            matrices.setdefault(f"{width}x{height}", k.round(4).tolist())
            if r.face is not None:
                counts["faces"] += 1
                key = f"{r.face.landmarks.method}/{r.face.head.method}"
                methods[key] = methods.get(key, 0) + 1
            if annotate:
                img = draw_result(r, k, cfg.arrow_mm)
                src = Path(r.frame.source)
                if src.suffix.lower() in IMAGE_SUFFIXES:
                    Image.fromarray(img).save(annotated / f"{counts['frames']:05d}_{src.stem}.png")
                else:
                    if r.frame.source not in writers:
                        writers[r.frame.source] = _VideoWriter(annotated / f"{src.stem}.mp4", video_rate(src) / cfg.every)
                    writers[r.frame.source].write(img)
    for vw in writers.values():
        vw.close()
    summary = {
        "frames": counts["frames"],
        "faces_found": counts["faces"],
        "face_found_fraction": counts["faces"] / max(counts["frames"], 1),
        "landmarks/head_pose": methods,
        "seconds": round(time.time() - t0, 2),
        "convention": CONVENTION,
        "camera_matrix": matrices,
        "camera_matrix_source": calib.source if calib is not None else f"default: focal {cfg.focal_px or 'image width'} px, centre principal point",
        "calibration": None if calib is None else calib.source,
        "normalization": asdict(norm),
        "normalization_source": "config" if cfg.normalization is not None else "checkpoint",
        "landmarks": {k: v if isinstance(v, (int, float, list)) or v is None else str(v) for k, v in asdict(cfg.landmarks).items()},
        "checkpoint": str(checkpoint),
        "model": train_cfg.model.name,
        "weights": weights_summary(state),
        "inputs": [str(p) for p in files],
        "outputs": {"csv": str(out / "gaze.csv"), "annotated": str(annotated) if annotate else None},
    }
    write_json(out / "gaze_summary.json", summary)
    _log.info("predict-raw: %d frames, face found in %d; wrote %s", counts["frames"], counts["faces"], out / "gaze.csv")
    return summary
