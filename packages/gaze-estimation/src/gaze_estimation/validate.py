"""``validate-data PATH``: read a whole data set in its real format, report every problem, train nothing.

Two formats, told apart by their layout:

* the training format (``<root>/<split>*/participant_*/frames_<camera>.h5``, what ``train`` reads and
  ``convert-eve`` / ``make-synthetic`` write): every file goes through the loader's own checks
  (``data.inspect_file``: datasets, shapes, dtypes, lengths, labels finite and in the convention's range),
  then every crop of every row is read and decoded in chunks; crops that are one flat colour (a failed
  decode upstream) are problems, named by file and rows;
* the raw EVE release (``train01`` ... ``val05`` participant folders, what ``convert-eve`` reads): every
  stimulus folder goes through ``convert``'s checks (``eve_layout.probe_step``: files present, labels and
  validity readable and in range, face video square, eye video two squares wide), then both videos are
  decoded completely and their frames counted against the labels (``eve_layout.frame_count_problems``).

Every problem is listed with the file it concerns; the exit status is 1 when there is any.
"""

from __future__ import annotations

import time
from itertools import zip_longest
from pathlib import Path
from typing import Any

import av
import h5py
import numpy as np

from perception_shared.errors import DataError
from perception_shared.logging import progress
from perception_shared.validation import ValidationReport, collecting_policy

from .data import IMAGE_KEYS, PARTICIPANT_PREFIX, h5_name, inspect_file, participant_id
from .eve_layout import PARTICIPANT_RE, frame_count_problems, probe_step, stimulus_folders

CHUNK = 64  # rows read at once


def _rows(rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:10])
    return shown + (f", ... ({len(rows)} in all)" if len(rows) > 10 else "")


def read_training_file(path: Path) -> tuple[int, list[str]]:
    """Read every crop of one training-format file; ``(rows read, problems)``."""
    problems = []
    n = 0
    try:
        with h5py.File(path, "r") as f:
            n = f["face"].shape[0]
            for key in IMAGE_KEYS:
                flat = []
                for start in range(0, n, CHUNK):
                    try:
                        block = f[key][start : start + CHUNK]
                    except (OSError, KeyError) as e:
                        problems.append(f"{path}: cannot read '{key}' rows {start}-{min(start + CHUNK, n) - 1} ({e})")
                        continue
                    spread = np.ptp(block.reshape(len(block), -1), axis=1)
                    flat.extend(start + np.flatnonzero(spread == 0))
                if flat:
                    problems.append(f"{path}: '{key}' has {len(flat)} crop(s) of one flat colour (a failed decode?) at rows {_rows(np.asarray(flat))}")
    except OSError as e:
        problems.append(f"{path}: cannot read ({e})")
    return n, problems


def validate_training_format(root: Path, camera: str) -> ValidationReport:
    """Every ``frames_<camera>.h5`` below ``root`` (any split folder), read completely."""
    report = ValidationReport(root, "training format")
    files = sorted(root.glob(f"*/{PARTICIPANT_PREFIX}*/{h5_name(camera)}"))
    if not files:
        raise DataError(f"{root}: no {h5_name(camera)} files in <split>*/{PARTICIPANT_PREFIX}*/ (nor EVE participant folders)")
    labels = []
    for path in progress(files, desc="validate", unit="file"):
        policy = collecting_policy()
        index = inspect_file(path, policy, require_labels=True)
        report.problems += policy.skipped
        n, problems = read_training_file(path)
        report.problems += problems
        report.files += 1
        entry = report.sections.setdefault(path.parent.parent.name, {"participants": 0, "samples": 0})
        entry["participants"] += 1
        entry["samples"] += n
        if index is not None and index.gaze is not None:
            labels.append(index.gaze)
    total: dict[str, Any] = {"participants": len(files), "samples": sum(s["samples"] for s in report.sections.values())}
    if labels:
        deg = np.degrees(np.concatenate(labels))
        total["pitch_deg"] = f"{deg[:, 0].min():.1f} .. {deg[:, 0].max():.1f} (mean {deg[:, 0].mean():.1f})"
        total["yaw_deg"] = f"{deg[:, 1].min():.1f} .. {deg[:, 1].max():.1f} (mean {deg[:, 1].mean():.1f})"
    total["participant_ids"] = sorted(participant_id(p) for p in files)[:50]
    report.sections["total"] = total
    return report


def count_frames(path: Path) -> int:
    """Frames of a video, counted by decoding every one (container metadata is not reliable)."""
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def validate_raw_eve(root: Path, camera: str) -> ValidationReport:
    """Every stimulus folder of every EVE participant folder, its videos decoded completely."""
    report = ValidationReport(root, "raw EVE")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and PARTICIPANT_RE.match(p.name))
    for folder in progress(folders, desc="validate", unit="participant"):
        steps = stimulus_folders(folder)
        entry = report.sections[folder.name] = {"stimulus_folders": len(steps), "samples": 0, "valid_labelled_frames": 0}
        if not steps:
            report.problems.append(f"{folder}: no stimulus folders (step<NNN>_{{image,video,wikipedia}}_...)")
        for step in steps:
            policy = collecting_policy()
            files = probe_step(step, camera, policy)
            report.problems += policy.skipped
            if files is None:
                continue
            report.files += 3
            try:
                with av.open(str(files.face)) as fc, av.open(str(files.eyes)) as ec:
                    counts = {"face": 0, "eyes": 0}
                    for ff, ef in zip_longest(fc.decode(video=0), ec.decode(video=0)):
                        counts["face"] += ff is not None
                        counts["eyes"] += ef is not None
            except av.FFmpegError as e:
                report.problems.append(f"{step}: cannot decode {files.face.name} or {files.eyes.name} ({e})")
                continue
            report.problems += [f"{video}: {problem}" for video, problem in frame_count_problems(files, counts)]
            entry["samples"] += len(files.gaze)
            entry["valid_labelled_frames"] += int(files.valid.sum())
    counts = ("stimulus_folders", "samples", "valid_labelled_frames")
    report.sections["total"] = {"participants": len(folders), **{k: sum(s[k] for s in report.sections.values()) for k in counts}}
    return report


def validate_data(path: str | Path, *, camera: str = "basler") -> ValidationReport:
    """Validate the data set at ``path`` (training format or raw EVE)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist or is not a directory")
    t0 = time.perf_counter()
    raw = any(p.is_dir() and PARTICIPANT_RE.match(p.name) for p in root.iterdir())
    report = validate_raw_eve(root, camera) if raw else validate_training_format(root, camera)
    report.seconds = time.perf_counter() - t0
    return report
