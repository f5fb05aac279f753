"""Convert the EVE release (Park et al., ECCV 2020) into the training format of ``data.py``.

EVE layout read (as documented in swook/EVE ``DATASET.md`` and read by its ``eve_sequences.py``)::

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

Output: ``DST/<split>/participant_<folder>/frames_<camera>.h5`` with ``face``, ``leye``, ``reye``,
``gaze``, and ``step_index`` / ``frame_index`` (which stimulus folder, attribute ``steps``, and which
video frame each sample came from).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

import av
import h5py
import numpy as np

from perception_shared.badinput import BadInputPolicy
from perception_shared.errors import DataError
from perception_shared.logging import get_logger, progress

from .data import EYE_SIZE, FACE_SIZE, PARTICIPANT_PREFIX, H5Writer, h5_name, label_problems, open_h5

LABEL_GROUP = "face_g_tobii"
STIMULUS_TYPES = ("image", "video", "wikipedia")
PARTICIPANT_RE = re.compile(r"^(train|val)\d+$")
STEP_RE = re.compile(r"^step\d+_([a-z]+)_")

_log = get_logger("gaze_estimation.convert")


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


def _frames(container: av.container.InputContainer) -> Iterator[av.VideoFrame]:
    yield from container.decode(video=0)


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


def convert_step(step: Path, camera: str, every: int, policy: BadInputPolicy, writer: H5Writer, step_index: int, chunk: int = 64) -> int:
    """Append the kept frames of one stimulus folder to ``writer``; returns how many (0 if reported bad).

    Both videos are decoded once, in step, and streamed into the file in chunks; every frame is counted
    (container metadata is not reliable) and a frame count that differs from the label count undoes
    this folder's rows and is reported.
    """
    files = probe_step(step, camera, policy)
    if files is None:
        return 0
    face_path, eyes_path, gaze, valid = files.face, files.eyes, files.gaze, files.valid
    n = len(gaze)
    keep = np.zeros(n, dtype=bool)
    keep[::every] = True
    keep &= valid
    start = writer.n
    buf: dict[str, list] = {"face": [], "eyes": [], "frame": []}

    def flush() -> None:
        if buf["frame"]:
            eyes = np.stack(buf["eyes"])
            rows = np.asarray(buf["frame"], dtype=np.int64)
            writer.append(
                np.stack(buf["face"]),
                np.ascontiguousarray(eyes[:, :, EYE_SIZE:]),  # right half of the frame: the subject's left eye
                np.ascontiguousarray(eyes[:, :, :EYE_SIZE]),  # left half: the subject's right eye
                gaze[rows],
                step_index=np.full(len(rows), step_index, dtype=np.int64),
                frame_index=rows,
            )
        for v in buf.values():
            v.clear()

    counts = {"face": 0, "eyes": 0}
    try:
        with av.open(str(face_path)) as fc, av.open(str(eyes_path)) as ec:
            for i, (ff, ef) in enumerate(zip_longest(_frames(fc), _frames(ec))):
                counts["face"] += ff is not None
                counts["eyes"] += ef is not None
                if i < n and keep[i] and ff is not None and ef is not None:
                    buf["face"].append(ff.to_ndarray(format="rgb24", width=FACE_SIZE, height=FACE_SIZE, interpolation="AREA"))
                    buf["eyes"].append(ef.to_ndarray(format="rgb24", width=2 * EYE_SIZE, height=EYE_SIZE, interpolation="AREA"))
                    buf["frame"].append(i)
                    if len(buf["frame"]) >= chunk:
                        flush()
    except av.FFmpegError as e:
        writer.truncate(start)
        policy.report(step, f"cannot decode {face_path.name} or {eyes_path.name} ({e})")
        return 0
    problems = frame_count_problems(files, counts)
    if problems:
        writer.truncate(start)
        policy.report(*problems[0])
        return 0
    flush()
    return writer.n - start


def convert_participant(
    folder: Path, out_path: Path, *, camera: str, every: int, policy: BadInputPolicy, compression: str | None
) -> tuple[Path, int] | None:
    """Convert one participant folder into ``out_path``; returns (path, samples) or None if nothing was usable."""
    steps = stimulus_folders(folder)
    if not steps:
        policy.report(folder, "no stimulus folders (step<NNN>_{image,video,wikipedia}_...)")
        return None
    writer = H5Writer(out_path, compression=compression, extra=("step_index", "frame_index"))
    try:
        for k, step in enumerate(progress(steps, desc=folder.name, leave=False)):
            convert_step(step, camera, every, policy, writer, k)
        if writer.n == 0:
            writer.abort()
            policy.report(folder, "no valid labelled frames in any stimulus folder")
            return None
        writer.file.attrs["steps"] = [s.name for s in steps]
        writer.file.attrs["source"] = str(folder)
        writer.file.attrs["label_key"] = f"{LABEL_GROUP}/data"
        writer.file.attrs["every"] = every
        n = writer.n
        return writer.close(), n
    except BaseException:
        writer.abort()
        raise


def convert_eve(
    src: str | Path,
    dst: str | Path,
    *,
    camera: str = "basler",
    splits: Sequence[str] = ("train", "val"),
    participants: Sequence[str] | None = None,
    every: int = 6,
    compression: str | None = None,
    skip_bad: bool = False,
) -> list[Path]:
    """Convert EVE participants under ``src`` into ``dst``; returns the written files."""
    if every < 1:
        raise DataError(f"--every must be at least 1, got {every}")
    bad = [s for s in splits if s not in ("train", "val")]
    if bad:
        raise DataError(f"unknown EVE split(s) {', '.join(bad)}: only train and val have public labels")
    src, dst = Path(src), Path(dst)
    policy = BadInputPolicy(skip=skip_bad)
    written = []
    for folder in participant_folders(src, splits, participants):
        split = PARTICIPANT_RE.match(folder.name).group(1)  # type: ignore[union-attr]
        out_path = dst / split / f"{PARTICIPANT_PREFIX}{folder.name}" / h5_name(camera)
        result = convert_participant(folder, out_path, camera=camera, every=every, policy=policy, compression=compression)
        if result is not None:
            written.append(result[0])
            _log.info("%s: %d samples -> %s", folder.name, result[1], result[0])
    if not written:
        raise DataError(f"{src}: nothing converted ({policy.summary()})")
    _log.info("converted %d participant(s) into %s; %s", len(written), dst, policy.summary())
    return written
