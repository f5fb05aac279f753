"""Converting one EVE participant folder into one file of the training format (``convert-eve``'s unit of work).

The output is ``DST/<split>/participant_<folder>/frames_<camera>.h5`` with ``face``, ``leye``, ``reye``,
``gaze``, and ``step_index`` / ``frame_index`` (which stimulus folder, attribute ``steps``, and which
video frame each sample came from).

A conversion is resumable: each participant's file is written under a temporary name, gets a completion
marker (attribute ``conversion``: the settings, a fingerprint of the source files and the sample count)
last, and is renamed when complete. ``completion_problem`` tells whether an existing file is such a
complete conversion of the same source files with the same settings.

Imports no torch itself (nor do ``eve_layout`` and ``h5format``, which it uses): ``convert.py`` runs it in
worker processes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from itertools import zip_longest
from pathlib import Path

import av
import h5py
import numpy as np
from av.video.reformatter import VideoReformatter

from perception_shared.badinput import BadInputPolicy
from perception_shared.errors import UserError

from .eve_layout import LABEL_GROUP, PARTICIPANT_RE, frame_count_problems, probe_step, step_files, stimulus_folders
from .h5format import EYE_SIZE, FACE_SIZE, IMAGE_KEYS, LABEL_KEY, PARTICIPANT_PREFIX, H5Writer, h5_name

EXTRA_KEYS = ("step_index", "frame_index")
MARKER = "conversion"  # the completion marker attribute, written last
CONVERTER_VERSION = 1  # raise it when the same source and settings give other output: older files are redone
PROGRESS_FRAMES = 240  # decoded frames between progress reports (few messages from a worker)


def _frames(container: av.container.InputContainer) -> Iterator[av.VideoFrame]:
    """The video's frames, decoded in one thread: parallelism comes from one worker process per CPU, which
    scales better than FFmpeg's slice threads (1.4x the frames/s for 1.13x the CPU time on 2 cores)."""
    stream = container.streams.video[0]
    stream.thread_count = 1
    yield from container.decode(stream)


def convert_step(
    step: Path, camera: str, every: int, policy: BadInputPolicy, writer: H5Writer, step_index: int,
    on_frames: Callable[[int], object] = lambda n: None, batch: int = 64,
) -> int:
    """Append the kept frames of one stimulus folder to ``writer``; returns how many (0 if reported bad).

    Both videos are decoded once, in step, and streamed into the file in batches; every frame is counted
    (container metadata is not reliable) and a frame count that differs from the label count undoes
    this folder's rows and is reported. ``on_frames(k)`` is told of every ``PROGRESS_FRAMES`` decoded
    label rows (for a progress bar).
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
    # a batch's frames are scaled straight into these buffers (no list of arrays to stack)
    face_buf = np.empty((batch, FACE_SIZE, FACE_SIZE, 3), np.uint8)
    eyes_buf = np.empty((batch, EYE_SIZE, 2 * EYE_SIZE, 3), np.uint8)
    held: list[tuple[av.VideoFrame, av.VideoFrame]] = []  # kept frames, decoded but not yet scaled
    held_rows: list[int] = []  # the video frame of each
    # one scaler per video, set up once: a frame's own to_ndarray(width=...) sets one up for every frame,
    # which took 4x as long as the scaling itself (same pixels either way)
    face_scaler, eyes_scaler = VideoReformatter(), VideoReformatter()

    def flush() -> None:
        # a batch is scaled in one go rather than a frame between two decodes, so that the decoder and the
        # scaler evict each other's caches less: about 5% less CPU time per conversion, mostly system time
        # (measured on a loaded 2-core machine; benchmarks/RESULTS.md)
        for j, (ff, ef) in enumerate(held):
            face_buf[j] = face_scaler.reformat(ff, format="rgb24", width=FACE_SIZE, height=FACE_SIZE, interpolation="AREA").to_ndarray()
            eyes_buf[j] = eyes_scaler.reformat(ef, format="rgb24", width=2 * EYE_SIZE, height=EYE_SIZE, interpolation="AREA").to_ndarray()
        b, rows = len(held), np.asarray(held_rows, dtype=np.int64)
        writer.append(
            face_buf[:b],
            eyes_buf[:b, :, EYE_SIZE:],  # right half of the frame: the subject's left eye
            eyes_buf[:b, :, :EYE_SIZE],  # left half: the subject's right eye
            gaze[rows],
            step_index=np.full(b, step_index, dtype=np.int64),
            frame_index=rows,
        )
        held.clear()
        held_rows.clear()

    counts = {"face": 0, "eyes": 0}
    try:
        with av.open(str(face_path)) as fc, av.open(str(eyes_path)) as ec:
            for i, (ff, ef) in enumerate(zip_longest(_frames(fc), _frames(ec))):
                counts["face"] += ff is not None
                counts["eyes"] += ef is not None
                if i < n and keep[i] and ff is not None and ef is not None:
                    held.append((ff, ef))
                    held_rows.append(i)
                    if len(held) == batch:
                        flush()
                if (i + 1) % PROGRESS_FRAMES == 0 and i < n:
                    on_frames(PROGRESS_FRAMES)
            if held:
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
    return writer.n - start


@dataclass(frozen=True)
class ConvertSettings:
    """What decides a converted file's content besides its source files; a file made with others is redone."""

    camera: str
    every: int
    compression: str | None
    version: int = CONVERTER_VERSION


@dataclass(frozen=True)
class ParticipantJob:
    """One participant folder to convert: its stimulus folders, output file, settings and source fingerprint."""

    folder: Path
    out_path: Path
    settings: ConvertSettings
    steps: tuple[Path, ...]
    step_rows: tuple[int, ...]  # label rows of each stimulus folder: the frames to decode (0 where unreadable)
    source: str  # sha256 of the stimulus files' names, sizes and modification times
    skip_bad: bool

    @property
    def frames(self) -> int:
        return sum(self.step_rows)

    def marker(self, samples: int) -> str:
        """The completion marker of this job's file holding ``samples`` samples (JSON)."""
        return json.dumps({"settings": asdict(self.settings), "source": self.source, "samples": samples}, sort_keys=True)


def _label_rows(h5_path: Path) -> int:
    try:
        with h5py.File(h5_path, "r") as f:
            return int(f[LABEL_GROUP]["data"].shape[0])
    except (OSError, KeyError, TypeError, IndexError):  # reported when the folder is converted
        return 0


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        s = path.stat()
    except OSError:
        return None
    return s.st_size, s.st_mtime_ns


def plan_participant(folder: Path, dst: Path, settings: ConvertSettings, *, skip_bad: bool = False) -> ParticipantJob:
    """The job converting ``folder`` into ``dst/<split>/participant_<folder>/frames_<camera>.h5``; reads no frame."""
    split = PARTICIPANT_RE.match(folder.name).group(1)  # type: ignore[union-attr]
    out_path = dst / split / f"{PARTICIPANT_PREFIX}{folder.name}" / h5_name(settings.camera)
    steps = stimulus_folders(folder)
    rows, stats = [], []
    for step in steps:
        files = step_files(step, settings.camera)
        rows.append(_label_rows(files[0]))
        stats += [(p.relative_to(folder).as_posix(), _stat(p)) for p in files]
    source = hashlib.sha256(json.dumps(stats).encode()).hexdigest()
    return ParticipantJob(folder, out_path, settings, tuple(steps), tuple(rows), source, skip_bad)


def _expected_shapes(n: int) -> dict[str, tuple[int, ...]]:
    return {**{k: (n, size, size, 3) for k, size in IMAGE_KEYS.items()}, LABEL_KEY: (n, 2), **{k: (n,) for k in EXTRA_KEYS}}


def completion_problem(job: ParticipantJob) -> str | None:
    """Why ``job.out_path`` is not a complete conversion of ``job``'s source with its settings; None if it is.

    Checked, not trusted by name: the file opens, carries the completion marker that ``convert_participant``
    writes last, was made with the same settings from the same source files (names, sizes, modification
    times), and holds every dataset with the marker's number of samples.
    """
    try:
        with h5py.File(job.out_path, "r") as f:
            raw = f.attrs.get(MARKER)
            if raw is None:
                return f"has no '{MARKER}' marker (written by an older convert-eve, or by something else)"
            try:
                marker = json.loads(raw)
            except (TypeError, ValueError):
                marker = None
            if not isinstance(marker, dict) or not isinstance(marker.get("settings"), dict):
                return f"its '{MARKER}' marker is malformed: {raw!r}"
            old, new = marker["settings"], asdict(job.settings)
            if old != new:
                changed = ", ".join(f"{k} {old.get(k)!r} -> {v!r}" for k, v in new.items() if old.get(k) != v)
                return f"was written with other settings ({changed})"
            if marker.get("source") != job.source:
                return "its source files changed since it was written (names, sizes or modification times)"
            expected = _expected_shapes(marker.get("samples", -1))
            shapes = {k: f[k].shape if isinstance(f.get(k), h5py.Dataset) else None for k in expected}
            wrong = [f"'{k}' {shapes[k]}" for k in expected if shapes[k] != expected[k]]
            if wrong:
                return f"holds {', '.join(wrong)} where its marker says {marker.get('samples')} samples"
    except OSError as e:
        return f"cannot be read ({e})"
    return None


def convert_participant(job: ParticipantJob, policy: BadInputPolicy, on_frames: Callable[[int], object] = lambda n: None) -> int | None:
    """Convert one participant into ``job.out_path``; returns its samples, or None if nothing was usable.

    The file is written under a temporary name with the completion marker last, and renamed when complete
    (``H5Writer``). ``on_frames(k)`` is told of decoded frames, ``job.frames`` in all.
    """
    if not job.steps:
        policy.report(job.folder, "no stimulus folders (step<NNN>_{image,video,wikipedia}_...)")
        return None
    s = job.settings
    writer = H5Writer(job.out_path, compression=s.compression, extra=EXTRA_KEYS)
    try:
        for k, (step, rows) in enumerate(zip(job.steps, job.step_rows)):
            told = 0

            def tell(frames: int) -> None:
                nonlocal told
                told += frames
                on_frames(frames)

            convert_step(step, s.camera, s.every, policy, writer, k, on_frames=tell)
            on_frames(max(rows - told, 0))  # the rest of the folder, also when it was reported bad
        if writer.n == 0:
            writer.abort()
            policy.report(job.folder, "no valid labelled frames in any stimulus folder")
            return None
        writer.file.attrs["steps"] = [step.name for step in job.steps]
        writer.file.attrs["source"] = str(job.folder)
        writer.file.attrs["label_key"] = f"{LABEL_GROUP}/data"
        writer.file.attrs["every"] = s.every
        writer.file.attrs[MARKER] = job.marker(writer.n)  # last: only a complete file carries it
        n = writer.n
        writer.close()
        return n
    except BaseException as e:
        writer.abort()
        if not isinstance(e, UserError):  # a user error names its file already; a crash should name the participant
            e.add_note(f"while converting {job.folder} into {job.out_path}")
        raise
