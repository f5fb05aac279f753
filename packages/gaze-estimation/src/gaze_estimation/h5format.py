"""The training format's HDF5 files: their keys and sizes, the label check, and the writer (no torch).

One file per participant, ``<split>/participant_<id>/frames_<camera>.h5``, holding

=========  ====================  ======  =================================================
key        shape                 dtype   meaning
=========  ====================  ======  =================================================
``face``   (N, 224, 224, 3)      uint8   normalized face crop, RGB
``leye``   (N, 112, 112, 3)      uint8   the subject's left eye (on the image's right), RGB
``reye``   (N, 112, 112, 3)      uint8   the subject's right eye (on the image's left), RGB
``gaze``   (N, 2)                float   pitch, yaw in radians (``geometry`` convention)
=========  ====================  ======  =================================================

Images are chunked one sample per chunk, which is what random access during training reads. This module
imports no torch, so that ``convert-eve``'s worker processes, which only write such files, start without it;
``data.py`` reads the files into a torch dataset.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from perception_shared.badinput import BadInputPolicy
from perception_shared.errors import DataError

FACE_SIZE = 224
EYE_SIZE = 112
IMAGE_KEYS = {"face": FACE_SIZE, "leye": EYE_SIZE, "reye": EYE_SIZE}
LABEL_KEY = "gaze"
PARTICIPANT_PREFIX = "participant_"


def h5_name(camera: str = "basler") -> str:
    return f"frames_{camera}.h5"


def open_h5(path: str | Path, policy: BadInputPolicy) -> h5py.File | None:
    """``path`` opened read-only, or None after reporting an unreadable file to ``policy``."""
    try:
        return h5py.File(path, "r")
    except OSError as e:
        policy.report(path, f"not a readable HDF5 file ({e})")
        return None


def label_problems(gaze: np.ndarray) -> tuple[np.ndarray, str] | None:
    """Rows of ``(N, 2)`` pitch/yaw labels that are not finite or outside the convention's range.

    Pitch must lie in [-pi/2, pi/2] and yaw in [-pi, pi] (radians); larger values are usually degrees.
    Returns ``(bad rows mask, message)``, or None when every row is fine. A missing value (NaN) that
    EVE marks invalid is the caller's to drop before this check.
    """
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(gaze).all(axis=1)
        outside = finite & ((np.abs(gaze[:, 0]) > np.pi / 2 + 1e-6) | (np.abs(gaze[:, 1]) > np.pi + 1e-6))
    bad = ~finite | outside
    if not bad.any():
        return None
    parts = []
    if (~finite).any():
        parts.append(f"{int((~finite).sum())} non-finite row(s), first at row {int(np.flatnonzero(~finite)[0])}")
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        parts.append(
            f"{int(outside.sum())} row(s) outside pitch [-pi/2, pi/2] / yaw [-pi, pi] radians, first at row {first} "
            f"({gaze[first, 0]:.4g}, {gaze[first, 1]:.4g}; degrees instead of radians?)"
        )
    return bad, "; ".join(parts)


class H5Writer:
    """Appends samples to a new ``frames_<camera>.h5`` in the training format.

    Writes ``<path>.tmp`` and renames it to ``path`` on a clean ``close()``: an interrupted conversion
    never leaves a file that looks complete. Images are chunked one sample per chunk, which is what
    random access during training reads, and written past HDF5's chunk cache: a sample is always written
    whole, so caching it would only copy it once more. ``extra`` names additional per-sample integer
    datasets.
    """

    def __init__(self, path: str | Path, *, compression: str | None = None, extra: Sequence[str] = ()) -> None:
        if compression not in (None, "gzip", "lzf"):
            raise DataError(f"unknown HDF5 compression {compression!r}; use none, gzip or lzf")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.file = h5py.File(self.tmp, "w")
        self.n = 0
        # kept, not looked up by name at every append: the lookups cost an eighth of writing a sample
        self.datasets: dict[str, h5py.Dataset] = {
            key: self.file.create_dataset(
                key, shape=(0, size, size, 3), maxshape=(None, size, size, 3), dtype=np.uint8,
                chunks=(1, size, size, 3), compression=compression, rdcc_nbytes=0,
            )
            for key, size in IMAGE_KEYS.items()
        }
        self.datasets[LABEL_KEY] = self.file.create_dataset(
            LABEL_KEY, shape=(0, 2), maxshape=(None, 2), dtype=np.float32, chunks=(4096, 2)
        )
        self.extra = tuple(extra)
        for key in self.extra:
            self.datasets[key] = self.file.create_dataset(key, shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(4096,))

    def append(self, face: np.ndarray, leye: np.ndarray, reye: np.ndarray, gaze: np.ndarray, **extra: np.ndarray) -> None:
        """Add ``(B, 224, 224, 3)``, ``(B, 112, 112, 3)`` x2 uint8 crops, ``(B, 2)`` gaze and ``(B,)`` extras."""
        b = len(face)
        arrays = {"face": face, "leye": leye, "reye": reye, LABEL_KEY: np.asarray(gaze, dtype=np.float32)}
        if set(extra) != set(self.extra):
            raise ValueError(f"H5Writer.append: extras {sorted(extra)} != declared {sorted(self.extra)}")
        arrays.update(extra)
        for key, a in arrays.items():
            if len(a) != b:
                raise ValueError(f"H5Writer.append: '{key}' has {len(a)} rows, 'face' has {b}")
            d = self.datasets[key]
            d.resize(self.n + b, axis=0)
            d[self.n : self.n + b] = a
        self.n += b

    def truncate(self, n: int) -> None:
        """Drop every row from ``n`` on (undo appends)."""
        for d in self.datasets.values():
            d.resize(n, axis=0)
        self.n = n

    def close(self) -> Path:
        self.file.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> H5Writer:
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
