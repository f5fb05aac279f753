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

At EVE's size (about 3 million basler frames) conversion is parallel over participants (``workers``
processes, by default the CPUs this process may use) and resumable: each participant's file is written
under a temporary name, gets a completion marker (attribute ``conversion``: the settings, a fingerprint
of the source files and the sample count) last, and is renamed when complete. A rerun checks every
existing file (``completion_problem``) and converts again those that are incomplete, or were made with
other settings or from changed source files; ``force`` converts all again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import logging.handlers
import multiprocessing
import os
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from itertools import zip_longest
from pathlib import Path
from queue import Empty
from typing import Any

import av
import h5py
import numpy as np
from av.video.reformatter import VideoReformatter

from perception_shared.badinput import BadInputPolicy
from perception_shared.errors import ConfigError, DataError, UserError
from perception_shared.logging import ROOT_LOGGER, close_logging, get_logger, progress

from .data import (
    EYE_SIZE,
    FACE_SIZE,
    IMAGE_KEYS,
    LABEL_KEY,
    PARTICIPANT_PREFIX,
    H5Writer,
    h5_name,
    label_problems,
    open_h5,
)

LABEL_GROUP = "face_g_tobii"
STIMULUS_TYPES = ("image", "video", "wikipedia")
PARTICIPANT_RE = re.compile(r"^(train|val)\d+$")
STEP_RE = re.compile(r"^step\d+_([a-z]+)_")
EXTRA_KEYS = ("step_index", "frame_index")
MARKER = "conversion"  # the completion marker attribute, written last
CONVERTER_VERSION = 1  # raise it when the same source and settings give other output: older files are redone
PROGRESS_FRAMES = 240  # decoded frames between progress reports (few messages from a worker)

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
    """The video's frames, decoded in one thread: parallelism comes from one worker process per CPU, which
    scales better than FFmpeg's slice threads (1.4x the frames/s for 1.13x the CPU time on 2 cores)."""
    stream = container.streams.video[0]
    stream.thread_count = 1
    yield from container.decode(stream)


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


def convert_step(
    step: Path, camera: str, every: int, policy: BadInputPolicy, writer: H5Writer, step_index: int,
    on_frames: Callable[[int], object] = lambda n: None, chunk: int = 64,
) -> int:
    """Append the kept frames of one stimulus folder to ``writer``; returns how many (0 if reported bad).

    Both videos are decoded once, in step, and streamed into the file in chunks; every frame is counted
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
    # a chunk's frames go straight into these buffers (no list of arrays to stack)
    face_buf = np.empty((chunk, FACE_SIZE, FACE_SIZE, 3), np.uint8)
    eyes_buf = np.empty((chunk, EYE_SIZE, 2 * EYE_SIZE, 3), np.uint8)
    buffered: list[int] = []  # the video frame of each buffered sample

    def flush() -> None:
        if buffered:
            b, rows = len(buffered), np.asarray(buffered, dtype=np.int64)
            writer.append(
                face_buf[:b],
                eyes_buf[:b, :, EYE_SIZE:],  # right half of the frame: the subject's left eye
                eyes_buf[:b, :, :EYE_SIZE],  # left half: the subject's right eye
                gaze[rows],
                step_index=np.full(b, step_index, dtype=np.int64),
                frame_index=rows,
            )
            buffered.clear()

    counts = {"face": 0, "eyes": 0}
    # one scaler per video, set up once: a frame's own to_ndarray(width=...) sets one up for every frame,
    # which took 4x as long as the scaling itself (same pixels either way)
    face_scaler, eyes_scaler = VideoReformatter(), VideoReformatter()
    try:
        with av.open(str(face_path)) as fc, av.open(str(eyes_path)) as ec:
            for i, (ff, ef) in enumerate(zip_longest(_frames(fc), _frames(ec))):
                counts["face"] += ff is not None
                counts["eyes"] += ef is not None
                if i < n and keep[i] and ff is not None and ef is not None:
                    face = face_scaler.reformat(ff, format="rgb24", width=FACE_SIZE, height=FACE_SIZE, interpolation="AREA")
                    eyes = eyes_scaler.reformat(ef, format="rgb24", width=2 * EYE_SIZE, height=EYE_SIZE, interpolation="AREA")
                    face_buf[len(buffered)] = face.to_ndarray()
                    eyes_buf[len(buffered)] = eyes.to_ndarray()
                    buffered.append(i)
                    if len(buffered) == chunk:
                        flush()
                if (i + 1) % PROGRESS_FRAMES == 0 and i < n:
                    on_frames(PROGRESS_FRAMES)
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


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), at most ``SLURM_CPUS_PER_TASK`` in a SLURM job."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    raw = os.environ.get("SLURM_CPUS_PER_TASK")
    if raw:
        try:
            cpus = min(cpus, int(raw))
        except ValueError:
            raise ConfigError(f"SLURM_CPUS_PER_TASK={raw!r} is not a number of CPUs") from None
    return max(cpus, 1)


_worker_queue: Any = None  # in a worker process: where its frame counts and log records go


def _init_worker(queue: Any) -> None:
    """A worker process sends its log records and frame counts to the parent, which shows them."""
    global _worker_queue
    _worker_queue = queue
    close_logging()
    logger = logging.getLogger(ROOT_LOGGER)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(logging.handlers.QueueHandler(queue))


def _convert_in_worker(job: ParticipantJob) -> tuple[int | None, list[str]]:
    policy = BadInputPolicy(skip=job.skip_bad)
    return convert_participant(job, policy, _worker_queue.put), policy.skipped


def _drain(queue: Any, bar: Any) -> None:
    """Show what the workers sent: frame counts on the bar, log records through this process's handlers."""
    while True:
        try:
            item = queue.get_nowait()
        except Empty:
            return
        if isinstance(item, int):
            bar.update(item)
        else:
            logging.getLogger(item.name).handle(item)


def _done(job: ParticipantJob, samples: int | None) -> int | None:
    if samples is not None:
        _log.info("%s: %d samples -> %s", job.folder.name, samples, job.out_path)
    return samples


def _convert_in_pool(jobs: Sequence[ParticipantJob], workers: int, policy: BadInputPolicy, bar: Any) -> dict[Path, int | None]:
    # forkserver: workers do not inherit this process's threads or open HDF5/FFmpeg state, and import
    # h5py, av and torch once (in the server) rather than once each
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    queue = ctx.Queue()
    results: dict[Path, int | None] = {}
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(queue,))
    pending = {pool.submit(_convert_in_worker, job): job for job in jobs}
    try:
        while pending:
            done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            _drain(queue, bar)
            for future in done:
                job = pending.pop(future)
                try:
                    samples, skipped = future.result()
                except BrokenProcessPool as e:
                    names = ", ".join(j.folder.name for j in (job, *pending.values()))
                    raise RuntimeError(
                        f"a convert-eve worker process died (killed, or out of memory?) while converting one of {names}; "
                        "complete participants are kept: run the same command again to convert the rest"
                    ) from e
                policy.skipped += skipped  # the worker has logged them
                results[job.folder] = _done(job, samples)
    except BaseException:
        running = [j.folder.name for f, j in pending.items() if not f.cancel() and not f.done()]
        if running:
            _log.warning("stopping: letting %s finish (a complete file is kept and skipped by a rerun)", ", ".join(running))
        pool.shutdown(wait=False, cancel_futures=True)
        while not all(f.done() for f in pending):
            wait(pending, timeout=0.5)
            _drain(queue, bar)
        raise
    finally:
        pool.shutdown(wait=True)
        _drain(queue, bar)
    return results


def _tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")  # H5Writer's temporary name


def _plan(folders: Sequence[Path], dst: Path, settings: ConvertSettings, *, skip_bad: bool, force: bool) -> list[tuple[ParticipantJob, bool]]:
    """``(job, already complete)`` for every participant folder; removes temporary files left by interrupted runs."""
    plan = []
    for folder in folders:
        job = plan_participant(folder, dst, settings, skip_bad=skip_bad)
        tmp = _tmp_path(job.out_path)
        if tmp.exists():
            tmp.unlink()
            _log.info("%s: removed %s, left by an interrupted conversion", folder.name, tmp)
        complete = False
        if job.out_path.exists() and force:
            _log.info("%s: converting %s again (--force)", folder.name, job.out_path)
        elif job.out_path.exists():
            problem = completion_problem(job)
            complete = problem is None
            if complete:
                _log.info("%s: %s is complete (same settings and source files), skipped", folder.name, job.out_path)
            else:
                _log.warning("%s: converting again: %s %s", folder.name, job.out_path, problem)
        plan.append((job, complete))
    return plan


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
    workers: int | None = None,
    force: bool = False,
) -> list[Path]:
    """Convert EVE participants under ``src`` into ``dst``; returns their complete files, in participant order.

    ``workers`` participants are converted at once, in that many processes (default: ``usable_cpus()``;
    1 converts in this process). A participant whose file is complete (``completion_problem``) is skipped
    unless ``force``; any other is converted (again).
    """
    if every < 1:
        raise DataError(f"--every must be at least 1, got {every}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    bad = [s for s in splits if s not in ("train", "val")]
    if bad:
        raise DataError(f"unknown EVE split(s) {', '.join(bad)}: only train and val have public labels")
    src, dst = Path(src), Path(dst)
    policy = BadInputPolicy(skip=skip_bad)
    plan = _plan(participant_folders(src, splits, participants), dst, ConvertSettings(camera, every, compression), skip_bad=skip_bad, force=force)
    jobs = [job for job, complete in plan if not complete]
    results: dict[Path, int | None] = {}
    if jobs:
        n_workers = min(workers or usable_cpus(), len(jobs))
        frames = sum(job.frames for job in jobs)
        _log.info("converting %d participant(s), %d frames, in %d process(es)", len(jobs), frames, n_workers)
        bar = progress(None, total=frames, unit="frame", desc="convert-eve", smoothing=0.05)
        try:
            if n_workers == 1:
                results = {job.folder: _done(job, convert_participant(job, policy, bar.update)) for job in jobs}
            else:
                results = _convert_in_pool(jobs, n_workers, policy, bar)
        finally:
            bar.close()
    written = [job.out_path for job, complete in plan if complete or results.get(job.folder) is not None]
    if not written:
        raise DataError(f"{src}: nothing converted ({policy.summary()})")
    _log.info(
        "%d participant(s) in %s: %d converted now, %d complete before; %s",
        len(written), dst, len(written) - (len(plan) - len(jobs)), len(plan) - len(jobs), policy.summary(),
    )
    return written
