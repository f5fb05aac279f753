"""``predict-raw``: gaze from camera images or videos of a face, in camera coordinates and on a screen.

For each frame: find the face and its landmarks (``landmarks``), estimate the head pose, normalize as
the training data was normalized (``normalization``: a virtual camera at the checkpoint's distance looks
at the face centre with the head roll removed, and the face and eye crops are warped from the image),
run the model, and rotate its gaze back into the camera's coordinates (``R^T``). With a calibration file
(``screen``) the gaze ray from the face centre is intersected with the screen.

Inputs: image files, folders of images (sorted by name; videos in them are read too) and videos (read
with PyAV; ``every`` keeps every N-th frame). Outputs in ``OUT``:

* ``gaze.csv``, one row per face found (``face_index`` 0, 1, ... largest face first), or one row with
  ``face_found`` 0 for a frame without a face: ``source,frame,time_s,face_index,face_found,landmarks,
  head_pose,detector_score,box_x,box_y,box_w,box_h,reye_x,reye_y,leye_x,leye_y,head_pitch_deg,head_yaw_deg,
  head_roll_deg,pitch,yaw,dir_x,dir_y,dir_z,origin_x,origin_y,origin_z,norm_pitch,norm_yaw,screen_x_mm,
  screen_y_mm,screen_x_px,screen_y_px,on_screen``. ``reye_*``/``leye_*`` are the centres of the subject's
  right and left eye in image pixels (the right eye is on the image's left) on which the eye crops are
  centred: the detector's, or the face model's placed by the head pose (``landmarks.eye_centres``);
  ``head_*_deg`` the head pose
  (``HeadPose.angles_deg``: 0 facing the camera upright, pitch > 0 up, yaw > 0 towards the image's left,
  roll > 0 clockwise in the image); ``detector_score`` the face detector's confidence where it has one
  (dlib). ``pitch``/``yaw`` (radians) are the gaze in the
  camera's coordinates (OpenCV axes: x right, y down, z from the camera into the scene) in EVE's
  convention (``geometry``: ``(0, 0)`` looks into the camera, pitch > 0 up, yaw > 0 towards the image's
  left); ``dir_*`` is the unit gaze direction from the eye towards the target (``-pitchyaw_to_vector``);
  ``origin_*`` the face centre (mm) the ray starts from; ``norm_*`` the model's output in the virtual
  camera. Without a face the row has ``face_found`` 0 and empty fields; without a calibration the
  screen fields are empty. A video frame that cannot be decoded, or is blank (one flat colour), is such
  a row, and the video goes on.
* ``gaze_summary.json``: counts, every frame without a face and why (``frames_without_face``), the camera
  matrix used, the normalization, detector, face model, checkpoint and its weights, and the conventions.
* with ``--annotate``: ``annotated/`` with each image as a PNG (and each video as an MP4) with the face
  box, the eye centres of ``gaze.csv`` and the gaze ray drawn (its projection into the image, ``arrow_mm`` long).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import torch
from PIL import Image

from perception_shared.errors import DataError
from perception_shared.inputs import expand_inputs
from perception_shared.jsonio import write_json
from perception_shared.logging import get_logger, progress

from .data import to_float
from .geometry import pitchyaw_to_vector
from .h5format import EYE_SIZE, FACE_SIZE
from .landmarks import (
    Detector,
    EyeCentres,
    FaceLandmarks,
    HeadPose,
    LandmarkConfig,
    build_detector,
    eye_centres,
    load_face_model,
    project,
    resolve_detector,
)
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
from .scoring import CROP_KEYS
from .screen import Calibration, gaze_to_screen, load_calibration, on_screen
from .smoothing import LandmarkSmoother
from .temporal import GazeTRTemporal, TemporalStream

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
CSV_COLUMNS = (
    "source", "frame", "time_s", "face_index", "face_found", "landmarks", "head_pose", "detector_score",
    "box_x", "box_y", "box_w", "box_h", "reye_x", "reye_y", "leye_x", "leye_y", "head_pitch_deg", "head_yaw_deg",
    "head_roll_deg", "pitch", "yaw", "dir_x", "dir_y", "dir_z", "origin_x", "origin_y", "origin_z", "norm_pitch", "norm_yaw",
    "screen_x_mm", "screen_y_mm", "screen_x_px", "screen_y_px", "on_screen",
)  # fmt: skip
CONVENTION = (
    "pitch/yaw in radians in the camera's coordinates (x right, y down, z from the camera into the scene), "
    "EVE's convention: pitchyaw_to_vector(p, y) = (cos p sin y, sin p, cos p cos y) points from the target to the "
    "eye; (0, 0) looks into the camera, pitch > 0 up, yaw > 0 towards the image's left. dir_* = -pitchyaw_to_vector "
    "(eye -> target); origin_* = face centre in mm; screen_* from the screen's top-left corner, x right, y down. "
    "reye/leye = the subject's right/left eye centre in image pixels (right eye on the image's left). head_*_deg: "
    "R = R_y(yaw) R_x(-pitch) R_z(roll) of the head axes (x to the subject's left, y down, z into the head) in "
    "camera axes; 0 facing the camera upright, pitch > 0 up, yaw > 0 towards the image's left, roll > 0 clockwise "
    "in the image."
)
NO_FACE = "no face found"
BLANK = "blank frame (one flat colour)"

_log = get_logger("gaze_estimation.raw")


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
    """One image: where it came from, its index in the source, its time in a video (s), RGB uint8 ``(H, W, 3)``.

    ``image`` is None for a video frame that could not be decoded; ``problem`` then says why. ``video``:
    the frame is one of a sequence (landmark smoothing applies to these only).
    """

    source: str
    index: int
    time_s: float | None
    image: np.ndarray | None
    problem: str | None = None
    video: bool = False


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


def video_frames(path: Path, every: int = 1) -> Iterator[Frame]:
    """Every ``every``-th frame of a video, decoded packet by packet with PyAV.

    A packet that does not decode is a frame with ``image`` None and the reason in ``problem``, and the
    video goes on (a damaged container that cannot be read further ends it the same way). A file that
    does not open as a video is a DataError naming it.
    """
    try:
        container = av.open(str(path))
    except av.FFmpegError as e:
        raise DataError(f"{path}: cannot open as a video ({e})") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: has no video stream")
    stream = container.streams.video[0]
    index = 0
    with container:
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.FFmpegError as e:  # the demuxer failed: nothing more can be read
                yield Frame(str(path), index, None, None, f"cannot read the rest of the video ({e})", video=True)
                return
            try:
                decoded = packet.decode()
            except av.FFmpegError as e:
                if index % every == 0:
                    time_s = None if packet.pts is None or packet.time_base is None else float(packet.pts * packet.time_base)
                    yield Frame(str(path), index, time_s, None, f"cannot decode frame ({e})", video=True)
                index += 1
                continue
            for frame in decoded:
                if index % every == 0:
                    yield Frame(str(path), index, None if frame.time is None else float(frame.time), frame.to_ndarray(format="rgb24"), video=True)
                index += 1


def iter_frames(files: Sequence[Path], every: int = 1) -> Iterator[Frame]:
    """Frames of image and video files, in order; videos (``video_frames``) every ``every``-th frame."""
    for path in files:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            yield Frame(str(path), 0, None, read_image(path))
        else:
            yield from video_frames(path, every)


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
    eyes: dict[str, tuple[float, float]]  # the eye centres (image pixels) the eye crops are centred on


def normalize_face(
    image: np.ndarray,
    camera_matrix: np.ndarray,
    face: FaceLandmarks,
    model: dict[str, np.ndarray],
    cfg: NormalizationConfig,
    eye_source: EyeCentres = "landmarks",
) -> NormalizedFace:
    """Head pose, face centre, normalizing rotation and the three crops of one detected face.

    ``eye_source``: where the eye crops are centred (``landmarks.eye_centres``: the detector's eye centres,
    or the face model's placed by the head pose fitted to the other points).
    """
    head, eyes = eye_centres(camera_matrix, face, model, eye_source)
    centre = head.point(cfg.face_centre_mm)
    rot = normalizing_rotation(centre, head.rotation[:, 0])
    w = face_warp(camera_matrix, centre, rot, cfg)
    crops = {}
    for name, point in (("leye", "left_eye"), ("reye", "right_eye")):
        c = transform_points(w, np.array(eyes[point]))
        crops[name] = warp_crop(image, crop_warp(w, c, cfg.eye_span_px, EYE_SIZE), EYE_SIZE)
    return NormalizedFace(warp_crop(image, w, FACE_SIZE), crops["leye"], crops["reye"], rot, centre, w, head, face, eyes)


@dataclass
class FaceResult:
    """One face of a frame: its index (0 = largest), crops and geometry, and the model's gaze."""

    index: int
    face: NormalizedFace
    gaze: np.ndarray | None = None  # (2,) camera pitch/yaw, radians
    gaze_normalized: np.ndarray | None = None  # (2,) the model's output
    screen_mm: np.ndarray | None = None  # (2,)
    screen_px: np.ndarray | None = None  # (2,)
    on_screen: bool | None = None


@dataclass
class FrameResult:
    """What ``predict-raw`` found in one frame: its faces, largest first, or why there are none."""

    frame: Frame
    faces: list[FaceResult] = field(default_factory=list)

    @property
    def reason(self) -> str | None:
        """Why the frame has no face (None when it has one)."""
        if self.faces:
            return None
        return self.frame.problem or NO_FACE


def default_camera_matrix(width: int, height: int, focal_px: float | None = None) -> np.ndarray:
    """Square pixels, principal point at the image centre, focal length ``focal_px`` (default: the width)."""
    f = float(width) if focal_px is None else focal_px
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


class RawGazePredictor:
    """Detector + normalization + model + de-normalization (+ screen) for camera frames.

    ``intrinsics``: a ``Calibration`` (camera matrix, distortion and screen), a ``(3, 3)`` camera
    matrix, or None (``default_camera_matrix`` with ``focal_px`` per image size). ``smoother``: smooths the
    landmarks over the frames of a video (None: every frame on its own, as an image would be).
    ``eye_centres``: where the eye crops are centred (``LandmarkConfig.eye_centres``).

    A temporal model (``gazetr_temporal``) runs causally, one frame in, one gaze out, its state carried
    from frame to frame: the largest face of each frame (``face_index`` 0) continues the stream; a new
    source, or a frame without a face, starts a new one. Other faces of a frame get the model's gaze from
    that frame alone (a fresh state), as the model gives for the first frame of a stream.
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
        smoother: LandmarkSmoother | None = None,
        eye_centres: EyeCentres = "landmarks",
    ) -> None:
        self.model = model.eval()
        self.normalization = normalization
        self.detector = detector
        self.face_model = face_model
        self.device = torch.device(device)
        self.calibration = intrinsics if isinstance(intrinsics, Calibration) else None
        self._matrix = intrinsics.camera_matrix if isinstance(intrinsics, Calibration) else intrinsics
        self.focal_px = focal_px
        self.smoother = smoother
        self.eye_centres = eye_centres
        self.stream = TemporalStream(model) if isinstance(model, GazeTRTemporal) else None
        self._stream_source: str | None = None  # the source the stream's state belongs to (None: no stream)

    def camera_matrix(self, width: int, height: int) -> np.ndarray:
        if self._matrix is not None:
            return np.asarray(self._matrix, dtype=np.float64)
        return default_camera_matrix(width, height, self.focal_px)

    def _undistort(self, image: np.ndarray) -> np.ndarray:
        if self.calibration is None or self.calibration.dist_coeffs is None:
            return image
        return cv2.undistort(image, self.calibration.camera_matrix, self.calibration.dist_coeffs)

    def _crops(self, faces: list[FaceResult], key: str) -> torch.Tensor:
        """``(N, 3, H, W)`` float crops ``key`` of ``faces`` on the model's device."""
        return to_float(torch.from_numpy(np.stack([getattr(f.face, key) for f in faces])).permute(0, 3, 1, 2).to(self.device))

    @torch.no_grad()
    def _gaze_normalized(self, pending: list[FrameResult]) -> torch.Tensor | None:
        """The model's ``(n_faces, 2)`` pitch/yaw for the faces of ``pending`` in order (None: no face).

        A temporal model goes through the frames one at a time (the class docstring says which face
        streams); a frame model takes all faces as one batch.
        """
        faces = [f for r in pending for f in r.faces]
        if self.stream is None:
            return self.model(*(self._crops(faces, k) for k in CROP_KEYS)) if faces else None
        outs = []
        for r in pending:
            source = r.frame.source if r.faces else None
            if source is None or source != self._stream_source:
                self.stream.reset()
            self._stream_source = source
            if not r.faces:
                continue
            crops = [self._crops(r.faces, k) for k in CROP_KEYS]
            outs.append(self.stream.step(*(c[:1] for c in crops)))
            if len(r.faces) > 1:
                outs.append(self.model.run(*(c[1:, None] for c in crops))[0][:, 0])
        return torch.cat(outs) if outs else None

    def _finish(self, pending: list[FrameResult]) -> None:
        """Run the model on the faces of the pending frames and fill in their gaze (and screen points)."""
        out = self._gaze_normalized(pending)
        if out is None:
            return
        faces = [f for r in pending for f in r.faces]
        g_norm = out.float().cpu().double().numpy()
        g_cam = denormalize_gaze(g_norm, np.stack([f.face.rotation for f in faces]))
        mm = px = None
        if self.calibration is not None:
            mm, px = gaze_to_screen(np.stack([f.face.face_centre for f in faces]), g_cam, self.calibration)
            inside = on_screen(px, self.calibration)
        for j, f in enumerate(faces):
            f.gaze_normalized, f.gaze = g_norm[j], g_cam[j]
            if mm is not None and px is not None:
                f.screen_mm, f.screen_px = mm[j], px[j]
                f.on_screen = bool(inside[j]) if self.calibration.screen_size_px is not None else None  # type: ignore[union-attr]

    def detect(self, frame: Frame) -> list[FaceLandmarks]:
        """The faces of one (undistorted) frame, largest first; smoothed over a video's frames when asked."""
        faces = [] if frame.image is None or frame.problem is not None else self.detector(frame.image)
        if self.smoother is None:
            return faces
        if not frame.video or not faces:  # images are never smoothed; a frame without faces ends the tracks
            self.smoother.reset()
            return faces
        return self.smoother(frame.source, faces)

    def predict(self, frames: Iterable[Frame], batch_size: int = 32) -> Iterator[FrameResult]:
        """Results in the order of ``frames``; the model runs on batches of ``batch_size`` faces."""
        self._stream_source = None  # a temporal model's stream never continues from an earlier call
        pending: list[FrameResult] = []
        n_faces = 0
        for frame in frames:
            if frame.image is not None:
                image = self._undistort(frame.image)
                blank = int(image.max()) - int(image.min()) <= 2
                frame = replace(frame, image=image, problem=BLANK if blank and frame.problem is None else frame.problem)
            result = FrameResult(frame)
            found = self.detect(frame)
            if found and frame.image is not None:
                k = self.camera_matrix(frame.image.shape[1], frame.image.shape[0])
                result.faces = [FaceResult(i, normalize_face(frame.image, k, f, self.face_model, self.normalization, self.eye_centres)) for i, f in enumerate(found)]
                n_faces += len(found)
            pending.append(result)
            if n_faces >= batch_size:
                self._finish(pending)
                yield from pending
                pending, n_faces = [], 0
        self._finish(pending)
        yield from pending


def _fmt(v: float | None, digits: int = 6) -> str:
    return "" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def csv_rows(r: FrameResult) -> list[list[str]]:
    """The ``gaze.csv`` rows (columns ``CSV_COLUMNS``) of one frame: one per face, or one without a face."""
    f = r.frame
    start = [f.source, str(f.index), _fmt(f.time_s, 4)]
    if not r.faces:
        return [start + ["", "0"] + [""] * (len(CSV_COLUMNS) - 5)]
    rows = []
    for fr in r.faces:
        n, marks = fr.face, fr.face.landmarks
        row = start + [str(fr.index), "1", marks.method, n.head.method, "" if marks.score is None else f"{marks.score:.4f}"]
        row += [_fmt(v, 1) for v in marks.box] + [_fmt(v, 2) for v in (*n.eyes["right_eye"], *n.eyes["left_eye"])]
        row += [_fmt(v, 2) for v in n.head.angles_deg()]
        if fr.gaze is None or fr.gaze_normalized is None:
            rows.append(row + [""] * (len(CSV_COLUMNS) - len(row)))
            continue
        d = -pitchyaw_to_vector(torch.from_numpy(fr.gaze)).numpy()
        row += [_fmt(v) for v in (*fr.gaze, *d)] + [_fmt(v, 2) for v in n.face_centre] + [_fmt(v) for v in fr.gaze_normalized]
        if fr.screen_mm is None or fr.screen_px is None:
            rows.append(row + [""] * 5)
            continue
        inside = "" if fr.on_screen is None else str(int(fr.on_screen))
        rows.append(row + [_fmt(v, 2) for v in (*fr.screen_mm, *fr.screen_px)] + [inside])
    return rows


def draw_result(r: FrameResult, camera_matrix: np.ndarray, arrow_mm: float, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The frame with each face's box, eye centres and gaze ray (``arrow_mm`` long, projected) drawn on it.

    A frame that could not be decoded is drawn black, of ``shape`` (the video's previous frame's).
    """
    img = np.zeros(shape or (240, 320, 3), np.uint8) if r.frame.image is None else np.ascontiguousarray(r.frame.image.copy())
    if not r.faces:
        cv2.putText(img, r.reason or NO_FACE, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 64, 64), 2, cv2.LINE_AA)
        return img
    for fr in r.faces:
        x, y, w, h = (int(round(v)) for v in fr.face.landmarks.box)
        cv2.rectangle(img, (x, y), (x + w, y + h), (255, 255, 0), 1, cv2.LINE_AA)
        for point in (fr.face.eyes["right_eye"], fr.face.eyes["left_eye"]):
            cv2.circle(img, tuple(int(round(v)) for v in point), 3, (0, 255, 0), -1, cv2.LINE_AA)
        if fr.gaze is None:
            continue
        d = -pitchyaw_to_vector(torch.from_numpy(fr.gaze)).numpy()
        ends = np.stack([fr.face.face_centre, fr.face.face_centre + arrow_mm * d])
        if (ends[:, 2] > 1.0).all():
            a, b = (tuple(int(round(v)) for v in project(camera_matrix, p)) for p in ends)
            cv2.arrowedLine(img, a, b, (255, 0, 0), 2, cv2.LINE_AA, tipLength=0.15)
        label = f"{fr.index}: pitch {np.degrees(fr.gaze[0]):+.1f} yaw {np.degrees(fr.gaze[1]):+.1f} deg"
        cv2.putText(img, label, (max(x, 0), max(y - 6, 14)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
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
    detector_name = resolve_detector(marks.detector)
    detector = build_detector(replace(marks, detector=detector_name))
    predictor = RawGazePredictor(
        model, norm, detector, load_face_model(marks.face_model), device=device, intrinsics=calib, focal_px=cfg.focal_px,
        smoother=LandmarkSmoother(marks.smooth_alpha) if marks.smooth else None, eye_centres=marks.eye_centres,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    annotated = out / "annotated"
    if annotate:
        annotated.mkdir(exist_ok=True)
    t0 = time.time()
    counts: dict[str, int] = {"frames": 0, "frames_with_face": 0, "faces": 0}
    methods: dict[str, int] = {}
    without: list[dict[str, Any]] = []
    writers: dict[str, _VideoWriter] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    matrices: dict[str, list[list[float]]] = {}
    with open(out / "gaze.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in progress(predictor.predict(iter_frames(files, cfg.every), batch_size), desc="predict-raw", unit="frame"):
            w.writerows(csv_rows(r))
            counts["frames"] += 1
            counts["faces"] += len(r.faces)
            counts["frames_with_face"] += bool(r.faces)
            if r.reason is not None:
                without.append({"source": r.frame.source, "frame": r.frame.index, "reason": r.reason})
            shape = r.frame.image.shape if r.frame.image is not None else shapes.get(r.frame.source)
            if shape is None:
                k = np.eye(3)
            else:
                shapes[r.frame.source] = shape
                k = predictor.camera_matrix(shape[1], shape[0])
                matrices.setdefault(f"{shape[1]}x{shape[0]}", k.round(4).tolist())
            for fr in r.faces:
                key = f"{fr.face.landmarks.method}/{fr.face.head.method}"
                methods[key] = methods.get(key, 0) + 1
            if annotate:
                img = draw_result(r, k, cfg.arrow_mm, shape)
                src = Path(r.frame.source)
                if src.suffix.lower() in IMAGE_SUFFIXES:
                    Image.fromarray(img).save(annotated / f"{counts['frames']:05d}_{src.stem}.png")
                else:
                    if r.frame.source not in writers:
                        writers[r.frame.source] = _VideoWriter(annotated / f"{src.stem}.mp4", video_rate(src) / cfg.every)
                    writers[r.frame.source].write(img)
    for vw in writers.values():
        vw.close()
    reasons: dict[str, int] = {}
    for row in without:
        reasons[row["reason"]] = reasons.get(row["reason"], 0) + 1
    summary = {
        "frames": counts["frames"],
        "faces_found": counts["faces"],
        "frames_with_face": counts["frames_with_face"],
        "face_found_fraction": counts["frames_with_face"] / max(counts["frames"], 1),
        "frames_without_face": {"count": len(without), "by_reason": reasons, "frames": without},
        "landmarks/head_pose": methods,
        "seconds": round(time.time() - t0, 2),
        "convention": CONVENTION,
        "camera_matrix": matrices,
        "camera_matrix_source": calib.source if calib is not None else f"default: focal {cfg.focal_px or 'image width'} px, centre principal point",
        "calibration": None if calib is None else calib.source,
        "normalization": asdict(norm),
        "normalization_source": "config" if cfg.normalization is not None else "checkpoint",
        "detector": detector_name,
        "landmarks": {k: v if isinstance(v, (int, float, list)) or v is None else str(v) for k, v in asdict(marks).items()},
        "checkpoint": str(checkpoint),
        "model": train_cfg.model.name,
        "weights": weights_summary(state),
        "inputs": [str(p) for p in files],
        "outputs": {"csv": str(out / "gaze.csv"), "annotated": str(annotated) if annotate else None},
    }
    write_json(out / "gaze_summary.json", summary)
    _log.info("predict-raw: %d frames, a face in %d (%d faces); wrote %s", counts["frames"], counts["frames_with_face"], counts["faces"], out / "gaze.csv")
    return summary
