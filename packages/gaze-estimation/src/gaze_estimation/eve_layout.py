"""The EVE release's layout (Park et al., ECCV 2020): its participant and stimulus folders, and their checks.

What ``convert-eve`` and ``validate-data`` read (as documented in swook/EVE ``DATASET.md`` and read by its
``eve_sequences.py``)::

    SRC/train01 ... train39, val01 ... val05, test01 ... test10/      one folder per participant
        step007_image_MIT-i2277207572/                                 one folder per stimulus
            basler.h5            labels (and other pre-processing outputs) of camera ``basler``
            basler_face.mp4      the normalized face patches (256 x 256 in the release)
            basler_eyes.mp4      both normalized eye patches side by side (2x128 x 128)
            basler.mp4, basler.timestamps.txt, webcam_{l,c,r}*, screen*   (not used)

What is used:

* ``<camera>.h5`` group ``face_g_tobii``: ``data`` (N, 2) float, the gaze direction of the face patch
  after data normalization (roll removed) as pitch/yaw in radians, and ``validity`` (N,) bool. Only
  frames with ``validity`` true are kept. This is the label (``gaze``). The other groups
  (``left_g_tobii``, ``right_g_tobii``, ``*_PoG_tobii``, ``*_h``, ``*_R``, ``*_W``, ...) are not used.
* ``<camera>_face.mp4``: frame i is the face patch of label row i, resized to 224 x 224.
* ``<camera>_eyes.mp4``: frame i holds both eye patches; the LEFT half of the frame is the subject's
  RIGHT eye and the right half the subject's left eye (EVE: ``left_eye_patch = frames[..., ew:]``,
  ``right_eye_patch = frames[..., :ew]``). The frame is resized to 224 x 112 and split into
  ``reye`` = columns 0-111 and ``leye`` = columns 112-223.
* Pitch/yaw follow EVE's model code, which is the convention of ``gaze_estimation.geometry``; labels are
  copied unchanged.

Stimulus folders are those named ``step<NNN>_<type>_...`` with type ``image``, ``video`` or
``wikipedia`` (EVE's own selection; calibration steps are left out). Every ``every``-th frame is kept
(EVE's basler camera runs at 60 Hz; ``every=6`` gives EVE's 10 Hz). Test participants have no public
labels, so only ``train*`` and ``val*`` are converted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import h5py
import numpy as np

from perception_shared.badinput import BadInputPolicy
from perception_shared.errors import DataError

from .h5format import label_problems, open_h5

LABEL_GROUP = "face_g_tobii"
STIMULUS_TYPES = ("image", "video", "wikipedia")
PARTICIPANT_RE = re.compile(r"^(train|val)\d+$")
STEP_RE = re.compile(r"^step\d+_([a-z]+)_")


def participant_folders(src: Path, splits: Sequence[str], only: Sequence[str] | None = None) -> list[Path]:
    """EVE participant folders of ``splits`` (``train``/``val``), optionally only those named in ``only``."""
    if not src.is_dir():
        raise DataError(f"EVE root {src} does not exist or is not a directory")
    folders = sorted(p for p in src.iterdir() if p.is_dir() and PARTICIPANT_RE.match(p.name) and PARTICIPANT_RE.match(p.name).group(1) in splits)  # type: ignore[union-attr]
    if only:
        names = {p.name for p in folders}
        unknown = sorted(set(only) - names)
        if unknown:
            raise DataError(f"{src}: no participant folder(s) {', '.join(unknown)} (found: {', '.join(sorted(names)) or 'none'})")
        folders = [p for p in folders if p.name in set(only)]
    if not folders:
        raise DataError(f"{src}: no EVE participant folders ({'/'.join(s + 'NN' for s in splits)})")
    return folders


def stimulus_folders(participant: Path) -> list[Path]:
    """The ``step<NNN>_{image,video,wikipedia}_*`` folders of one participant, in step order."""
    out = []
    for p in sorted(participant.iterdir()):
        m = STEP_RE.match(p.name)
        if p.is_dir() and m and m.group(1) in STIMULUS_TYPES:
            out.append(p)
    return out


def read_labels(h5_path: Path, policy: BadInputPolicy) -> tuple[np.ndarray, np.ndarray] | None:
    """``face_g_tobii`` ``data`` (N, 2) float32 and ``validity`` (N,) bool, or None when reported bad."""
    f = open_h5(h5_path, policy)
    if f is None:
        return None
    with f:
        for key in ("data", "validity"):
            if LABEL_GROUP not in f or not isinstance(f[LABEL_GROUP], h5py.Group) or key not in f[LABEL_GROUP]:
                policy.report(h5_path, f"missing dataset '{LABEL_GROUP}/{key}'")
                return None
        data = np.asarray(f[LABEL_GROUP]["data"][()], dtype=np.float32)
        validity = np.asarray(f[LABEL_GROUP]["validity"][()]).astype(bool).reshape(-1)
    if data.ndim != 2 or data.shape[1] != 2:
        policy.report(h5_path, f"dataset '{LABEL_GROUP}/data' is {data.shape}, expected (N, 2) pitch/yaw")
        return None
    if len(validity) != len(data):
        policy.report(h5_path, f"'{LABEL_GROUP}/validity' has {len(validity)} rows, '{LABEL_GROUP}/data' has {len(data)}")
        return None
    usable = validity & np.isfinite(data).all(axis=1)  # EVE marks the frames it has no gaze for as invalid
    bad = label_problems(np.where(usable[:, None], data, 0.0))
    if bad is not None:
        policy.report(h5_path, f"'{LABEL_GROUP}/data': {bad[1]}")
        return None
    return data, usable


def _video_size(path: Path, policy: BadInputPolicy) -> tuple[int, int] | None:
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            return s.codec_context.width, s.codec_context.height
    except (av.FFmpegError, IndexError) as e:
        policy.report(path, f"not a readable video ({e})")
        return None


@dataclass(frozen=True)
class StepFiles:
    """One stimulus folder's files, labels and video sizes, checked (``probe_step``)."""

    h5: Path
    face: Path
    eyes: Path
    gaze: np.ndarray  # (N, 2) float32
    valid: np.ndarray  # (N,) bool


def step_files(step: Path, camera: str) -> tuple[Path, Path, Path]:
    """The labels, face video and eye video of ``camera`` in a stimulus folder (EVE's file names)."""
    return step / f"{camera}.h5", step / f"{camera}_face.mp4", step / f"{camera}_eyes.mp4"


def probe_step(step: Path, camera: str, policy: BadInputPolicy) -> StepFiles | None:
    """The checks ``convert-eve`` and ``validate-data`` share for a stimulus folder, without decoding frames.

    The three files exist, the labels read (``read_labels``), the face video is square and the eye video
    two squares wide. A problem goes to ``policy``; returns None then.
    """
    h5_path, face_path, eyes_path = step_files(step, camera)
    for p in (h5_path, face_path, eyes_path):
        if not p.is_file():
            policy.report(p, "missing file")
            return None
    labels = read_labels(h5_path, policy)
    if labels is None:
        return None
    face_size, eyes_size = _video_size(face_path, policy), _video_size(eyes_path, policy)
    if face_size is None or eyes_size is None:
        return None
    (fw, fh), (ew, eh) = face_size, eyes_size
    if fw != fh:
        policy.report(face_path, f"face video is {fw}x{fh}; expected square face patches")
        return None
    if ew != 2 * eh:
        policy.report(eyes_path, f"eye video is {ew}x{eh}; expected two square eye patches side by side (width = 2 x height)")
        return None
    return StepFiles(h5_path, face_path, eyes_path, *labels)


def frame_count_problems(files: StepFiles, counts: dict[str, int]) -> list[tuple[Path, str]]:
    """``(video, problem)`` for each video whose decoded frame count differs from the label count."""
    n = len(files.gaze)
    return [
        (video, f"has {counts[name]} frames but {files.h5.name} '{LABEL_GROUP}' has {n} rows")
        for name, video in (("face", files.face), ("eyes", files.eyes))
        if counts[name] != n
    ]
