"""Synthetic participants in the raw EVE release layout, for ``convert-eve`` and ``validate-data``.

Writes what ``convert-eve`` reads (``eve_layout``'s docstring describes the layout), with gaze known exactly::

    OUT/train01 ... trainNN, val01 ... valNN/            one folder per participant
        step001_eye_tracker_calibration/                  a calibration step (convert-eve leaves it out)
        step008_image_synthetic-01/, step009_video_synthetic-02/, ...   stimulus steps
            <camera>.h5               group face_g_tobii: data (N, 2) pitch/yaw radians, validity (N,) bool
            <camera>_face.mp4         face patches, H.264, face_size x face_size (256 in the release)
            <camera>_eyes.mp4         both eye patches side by side, 2 eye_size x eye_size (2 x 128): the LEFT
                                      half is the subject's RIGHT eye, as EVE stores them
            <camera>.timestamps.txt   one timestamp per frame, nanoseconds at 60 Hz

Frames are ``synthetic.render_sample``'s crops (rendered at the training sizes 224 / 112, resampled to the
patch sizes), so the label of frame i is the rendered face's gaze: the generator's known truth. A few
frames per step are marked invalid in ``validity`` (half of them with NaN labels, as when the tracker
lost the eyes, the others with a finite value, so only ``validity`` tells them apart). Participant ``k``
of a split depends only on ``(seed, split, k, steps, frames)``; ``participant_truth`` gives its scenes
and validity without rendering.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import h5py
import numpy as np

from perception_shared.errors import ConfigError
from perception_shared.logging import get_logger, progress

from .eve_layout import LABEL_GROUP, STIMULUS_TYPES, step_files
from .synthetic import SceneParams, render_sample, sample_params, sample_participant

RELEASE_FACE_SIZE = 256  # face patch side in the EVE release, pixels
RELEASE_EYE_SIZE = 128  # eye patch side in the EVE release, pixels (the eye video is twice as wide)
FPS = 60  # EVE's basler camera
CALIBRATION_STEP = "step001_eye_tracker_calibration"  # EVE's own loader drops folders named like this
FIRST_STIMULUS_STEP = 8  # EVE's stimuli start at step008
CRF = 18  # x264 quality: near-transparent, like a released data set, and quick to decode
INVALID_FRACTION = 0.1  # frames per step marked invalid (at least one)
SPLIT_CODES = {"train": 0, "val": 1}

_log = get_logger("gaze_estimation.synthetic_eve")


@dataclass(frozen=True)
class StepTruth:
    """What one step folder shows: its name, the scenes of its ``N`` frames and their validity."""

    name: str
    params: SceneParams  # (N,) scenes; gaze_pitch / gaze_yaw are the labels, radians
    validity: np.ndarray  # (N,) bool

    @property
    def gaze(self) -> np.ndarray:
        """``(N, 2)`` float32 pitch, yaw in radians (every frame, valid or not)."""
        return np.stack([self.params.gaze_pitch, self.params.gaze_yaw], axis=1).astype(np.float32)


def step_names(steps: int) -> list[str]:
    """The calibration step, then ``steps`` stimulus steps cycling through EVE's stimulus types."""
    return [CALIBRATION_STEP] + [
        f"step{FIRST_STIMULUS_STEP + i:03d}_{STIMULUS_TYPES[i % len(STIMULUS_TYPES)]}_synthetic-{i + 1:02d}" for i in range(steps)
    ]


def invalid_frames(rng: np.random.Generator, frames: int) -> np.ndarray:
    """``(frames,)`` bool validity with ``max(1, round(INVALID_FRACTION * frames))`` frames false, never all."""
    validity = np.ones(frames, dtype=bool)
    validity[rng.choice(frames, size=min(frames - 1, max(1, round(INVALID_FRACTION * frames))), replace=False)] = False
    return validity


def participant_truth(seed: int, split: str, k: int, *, steps: int, frames: int) -> list[StepTruth]:
    """Scenes and validity of participant ``k`` (0-based) of ``split``: one ``StepTruth`` per step folder."""
    rng = np.random.default_rng([seed, SPLIT_CODES[split], k])
    appearance = sample_participant(rng)
    return [StepTruth(name, sample_params(rng, frames, appearance), invalid_frames(rng, frames)) for name in step_names(steps)]


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 -> ``(N, size, size * W // H, 3)``: area averaging when shrinking, bilinear otherwise."""
    n, h, w, _ = images.shape
    if h == size:
        return images
    interpolation = cv2.INTER_AREA if size < h else cv2.INTER_LINEAR
    return np.stack([cv2.resize(im, (size * w // h, size), interpolation=interpolation) for im in images])


def render_patches(params: SceneParams, rng: np.random.Generator | None, *, face_size: int, eye_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Face frames ``(N, face_size, face_size, 3)`` and eye frames ``(N, eye_size, 2 eye_size, 3)``, uint8 RGB.

    The eye frame holds the subject's right eye in its left half and the left eye in its right half (as
    EVE stores them: the eye on the image's left first). Sensor noise from ``rng`` (none without it).
    """
    s = render_sample(params, rng)
    eyes = np.concatenate([s["reye"], s["leye"]], axis=2)
    return _resize(s["face"], face_size), _resize(eyes, eye_size)


def write_video(path: Path, frames: np.ndarray | list[np.ndarray], fps: int = FPS, *, lossless: bool = False) -> None:
    """Frames ``(T, H, W, 3)`` uint8 RGB (H, W even) -> H.264 mp4: yuv420p at ``CRF`` like a release, or
    ``lossless`` (qp 0, yuv444p: the decoded colours equal the written ones, for exact checks)."""
    options = {"qp": "0", "preset": "ultrafast"} if lossless else {"crf": str(CRF), "preset": "veryfast"}
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps, options=options)
        s.width, s.height, s.pix_fmt = width, height, "yuv444p" if lossless else "yuv420p"
        for f in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)


def write_labels(path: Path, truth: StepTruth) -> None:
    """``<camera>.h5`` with ``face_g_tobii/data`` ``(N, 2)`` and ``validity`` ``(N,)``.

    Every other invalid frame gets NaN labels (no measurement); the rest keep the rendered gaze.
    """
    data = truth.gaze
    invalid = np.flatnonzero(~truth.validity)
    data[invalid[::2]] = np.nan
    with h5py.File(path, "w") as f:
        g = f.create_group(LABEL_GROUP)
        g["data"] = data
        g["validity"] = truth.validity


def write_step(
    folder: Path, truth: StepTruth, rng: np.random.Generator, *, camera: str, face_size: int, eye_size: int, start_ns: int = 0
) -> None:
    """One step folder: labels, face and eye videos, timestamps (ns from ``start_ns`` at ``FPS``)."""
    folder.mkdir(parents=True, exist_ok=True)
    face, eyes = render_patches(truth.params, rng, face_size=face_size, eye_size=eye_size)
    labels, face_video, eyes_video = step_files(folder, camera)
    write_labels(labels, truth)
    write_video(face_video, face)
    write_video(eyes_video, eyes)
    stamps = start_ns + np.round(np.arange(len(face)) * 1e9 / FPS).astype(np.int64)
    np.savetxt(folder / f"{camera}.timestamps.txt", stamps, fmt="%d")


def _check_sizes(face_size: int, eye_size: int, frames: int, steps: int, train_participants: int, val_participants: int) -> None:
    if face_size < 16 or eye_size < 16 or face_size % 2 or eye_size % 2:
        raise ConfigError(f"patch sizes must be even and at least 16 (H.264 in yuv420p), got face {face_size}, eye {eye_size}")
    if frames < 2:
        raise ConfigError(f"--samples (frames per step) must be at least 2 (one is marked invalid), got {frames}")
    if steps < 1:
        raise ConfigError(f"--steps must be at least 1, got {steps}")
    if train_participants < 1 or val_participants < 0:
        raise ConfigError(f"need at least one training participant, got {train_participants} train, {val_participants} val")


def make_synthetic_eve(
    out: str | Path,
    *,
    train_participants: int = 4,
    val_participants: int = 2,
    steps: int = 3,
    frames: int = 64,
    seed: int = 0,
    camera: str = "basler",
    face_size: int = RELEASE_FACE_SIZE,
    eye_size: int = RELEASE_EYE_SIZE,
) -> list[Path]:
    """Write participants ``out/train01..``, ``out/val01..`` in the raw EVE layout; returns their folders.

    Each has a calibration step and ``steps`` stimulus steps of ``frames`` frames (``participant_truth``).
    """
    _check_sizes(face_size, eye_size, frames, steps, train_participants, val_participants)
    out = Path(out)
    jobs = [("train", k) for k in range(train_participants)] + [("val", k) for k in range(val_participants)]
    folders = []
    for split, k in progress(jobs, desc="synthetic EVE participants"):
        folder = out / f"{split}{k + 1:02d}"
        noise = np.random.default_rng([seed, SPLIT_CODES[split], k, 1])  # apart from the truth's stream
        for i, truth in enumerate(participant_truth(seed, split, k, steps=steps, frames=frames)):
            start_ns = int(i * (frames + FPS) * 1e9 / FPS)  # steps follow each other with a second between them
            write_step(folder / truth.name, truth, noise, camera=camera, face_size=face_size, eye_size=eye_size, start_ns=start_ns)
        folders.append(folder)
    _log.info(
        "wrote %d synthetic EVE participants (%d stimulus steps + calibration, %d frames each, face %d px, eyes 2 x %d px) under %s",
        len(folders), steps, frames, face_size, eye_size, out,
    )
    return folders
