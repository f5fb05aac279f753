"""Windows of consecutive frames for temporal models, read lazily from the training format.

A file's frames are in time order when it has ``step_index`` and ``frame_index`` (per sample) and the
attribute ``every`` (``convert-eve`` writes them; ``make-synthetic --sequences`` too). A **run** is a
stretch of kept rows with the same ``step_index`` whose ``frame_index`` advances by ``every`` from row
to row: an invalid frame dropped by the converter (a gap in ``frame_index``), a row dropped for a
non-finite label, or a new stimulus ends it. Windows lie inside runs, never across a stimulus.

* Training (``stride`` given): windows of ``length`` frames starting every ``stride`` frames of a run,
  plus one ending at the run's end so that its tail is seen; a run shorter than ``length`` is one
  shorter window.
* Evaluation (``stride=None``): each run cut into consecutive windows of ``length`` frames (the last
  one shorter), so every frame is predicted exactly once, with the context before it in its window;
  ``position_of[frame]`` is how many frames came before it (0 = no context).

``dataset[w]`` holds ``face`` ``(T, 3, 224, 224)``, ``leye``/``reye`` ``(T, 3, 112, 112)`` uint8,
``gaze`` ``(T, 2)`` radians, ``valid`` ``(T,)`` bool (false on padding: a shorter window repeats its
last frame), ``frames`` ``(T,)`` indices into ``self.frames`` (-1 on padding), ``participant``,
``index``. Each window is one slice per key of the HDF5 file (its rows are consecutive), through the
frame dataset's per-process handles. Augmentation draws once per window (``augment_window``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from perception_shared.badinput import BadInputPolicy
from perception_shared.errors import DataError

from .augment import AugmentConfig, augment_window
from .data import GazeH5Dataset

TIME_KEYS = ("step_index", "frame_index")


def time_index(path: str | Path) -> tuple[np.ndarray, np.ndarray, int]:
    """``(step_index (N,), frame_index (N,), every)`` of a file; a DataError saying how to get them if absent."""
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in TIME_KEYS if k not in f]
            if missing or "every" not in f.attrs:
                what = ", ".join([f"dataset '{k}'" for k in missing] + ([] if "every" in f.attrs else ["attribute 'every'"]))
                raise DataError(
                    f"{path}: no {what}, so its frames cannot be put in time order for a temporal model; make the file "
                    "with `gaze-estimation convert-eve` (which records step_index, frame_index and every) or "
                    "`gaze-estimation make-synthetic --sequences`, or train a single-frame model"
                )
            return np.asarray(f["step_index"][()], np.int64), np.asarray(f["frame_index"][()], np.int64), int(f.attrs["every"])
    except OSError as e:
        raise DataError(f"{path}: cannot open HDF5 file ({e})") from None


def find_runs(rows: np.ndarray, step: np.ndarray, frame: np.ndarray, every: int) -> list[tuple[int, int]]:
    """Runs of a file's kept ``rows`` as ``(first position in rows, length)``.

    Consecutive kept rows continue a run when they are adjacent rows of the file, in the same step, and
    their frame indices differ by exactly ``every``.
    """
    if len(rows) == 0:
        return []
    s, f = step[rows], frame[rows]
    cont = (np.diff(rows) == 1) & (np.diff(s) == 0) & (np.diff(f) == every)
    starts = np.concatenate([[0], np.flatnonzero(~cont) + 1])
    ends = np.concatenate([starts[1:], [len(rows)]])
    return [(int(a), int(b - a)) for a, b in zip(starts, ends)]


def run_windows(run_length: int, length: int, stride: int | None) -> list[tuple[int, int]]:
    """``(offset, length)`` of the windows of one run (see the module docstring for the two modes)."""
    if stride is None:
        return [(o, min(length, run_length - o)) for o in range(0, run_length, length)]
    if run_length <= length:
        return [(0, run_length)]
    offsets = list(range(0, run_length - length + 1, stride))
    if offsets[-1] + length < run_length:
        offsets.append(run_length - length)
    return [(o, length) for o in offsets]


class SequenceDataset(Dataset):
    """Windows of ``length`` consecutive frames of many HDF5 files (see the module docstring)."""

    def __init__(
        self,
        files: Sequence[str | Path],
        *,
        length: int,
        stride: int | None = None,
        augment: AugmentConfig | None = None,
        policy: BadInputPolicy | None = None,
        require_labels: bool = True,
    ) -> None:
        if length < 1 or (stride is not None and stride < 1):
            raise DataError(f"data.sequence_length ({length}) and data.window_stride ({stride}) must be at least 1")
        self.frames = GazeH5Dataset(files, policy=policy, require_labels=require_labels)
        self.length = length
        self.augment = augment
        windows = []
        self.position_of = np.zeros(len(self.frames), dtype=np.int64)
        for k, path in enumerate(self.frames.files):
            first = int(np.searchsorted(self.frames.file_index, k))
            rows = self.frames.row_index[self.frames.file_index == k]
            step, frame, every = time_index(path)
            for run_start, run_len in find_runs(rows, step, frame, every):
                for offset, n in run_windows(run_len, length, stride):
                    g0 = first + run_start + offset
                    windows.append((g0, n))
                    if stride is None:
                        self.position_of[g0 : g0 + n] = np.arange(n)
        self.windows = np.asarray(windows, dtype=np.int64).reshape(-1, 2)
        self.participants = self.frames.participants

    def __len__(self) -> int:
        return len(self.windows)

    def read_window(self, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ``(n, H, W, 3)`` uint8 face, left-eye and right-eye crops of window ``w``: one slice per key."""
        g0, n = (int(v) for v in self.windows[w])
        k, r0 = int(self.frames.file_index[g0]), int(self.frames.row_index[g0])
        _, face, leye, reye = self.frames._datasets(k)
        try:
            return face[r0 : r0 + n], leye[r0 : r0 + n], reye[r0 : r0 + n]
        except (OSError, KeyError) as e:
            raise DataError(f"{self.frames.files[k]}: cannot read rows {r0}-{r0 + n - 1} ({e})") from None

    def __getitem__(self, w: int) -> dict[str, Any]:
        g0, n = (int(v) for v in self.windows[w])
        pad = np.minimum(np.arange(self.length), n - 1)  # a shorter window repeats its last frame
        face, leye, reye = (torch.from_numpy(np.ascontiguousarray(a[pad].transpose(0, 3, 1, 2))) for a in self.read_window(w))
        gaze = torch.from_numpy(self.frames.gaze[g0 + pad].copy())
        if self.augment is not None:
            face, leye, reye, gaze = augment_window(face, leye, reye, gaze, self.augment)
        valid = torch.arange(self.length) < n
        frames = torch.where(valid, torch.as_tensor(g0 + pad), torch.full((self.length,), -1))
        return {
            "face": face,
            "leye": leye,
            "reye": reye,
            "gaze": gaze,
            "valid": valid,
            "frames": frames,
            "participant": int(self.frames.participant_index[g0]),
            "index": w,
        }

    def close(self) -> None:
        self.frames.close()
