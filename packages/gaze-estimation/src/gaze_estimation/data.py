"""The training format (HDF5 per participant) and a lazy dataset over many such files.

Layout: ``<root>/<split>*/participant_<id>/frames_<camera>.h5`` (``camera`` is ``basler`` unless
configured), for example ``root/train/participant_train01/frames_basler.h5``; each file holds ``face``,
``leye``, ``reye`` and ``gaze`` as ``h5format`` describes (the keys, sizes and the writer live there,
without torch).

Other datasets (``convert-eve`` adds ``frame_index`` and ``step_index``) are ignored. The participant id
of a sample is its folder name without ``participant_``.

Only labels and shapes are read when the index is built; images are read per sample. h5py handles are
opened lazily in the process that reads (each DataLoader worker opens its own) and never cross a fork.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from perception_shared.badinput import BadInputPolicy
from perception_shared.errors import ConfigError, DataError

from .augment import AugmentConfig, augment_sample
from .h5format import IMAGE_KEYS, LABEL_KEY, PARTICIPANT_PREFIX, h5_name, label_problems, open_h5


def participant_id(path: str | Path) -> str:
    """``.../participant_train01/frames_basler.h5`` -> ``train01``."""
    name = Path(path).parent.name
    return name[len(PARTICIPANT_PREFIX) :] if name.startswith(PARTICIPANT_PREFIX) else name


def find_h5_files(root: str | Path, split: str, camera: str = "basler") -> list[Path]:
    """All ``<root>/<split>*/participant_*/frames_<camera>.h5``, sorted; a DataError if there are none."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist or is not a directory")
    files = sorted(root.glob(f"{split}*/{PARTICIPANT_PREFIX}*/{h5_name(camera)}"))
    if not files:
        raise DataError(f"no files match {root}/{split}*/{PARTICIPANT_PREFIX}*/{h5_name(camera)}")
    return files


@dataclass(frozen=True)
class SelectionSplit:
    """Training files split by participant: those trained on, and those held out for model selection."""

    train: list[Path]
    selection: list[Path]


def split_selection(files: Sequence[str | Path], selection: int | Sequence[str], seed: int = 0) -> SelectionSplit:
    """Hold out training participants for model selection (issue 13: selection and report never share samples).

    ``selection`` is a number of participants, drawn with ``seed`` from the sorted participant ids, or
    the ids themselves. At least one participant stays on each side.
    """
    by_id = {participant_id(p): Path(p) for p in files}
    ids = sorted(by_id)
    if isinstance(selection, int):
        if not 1 <= selection < len(ids):
            fits = f"--set data.selection_participants=N with 1 <= N < {len(ids)}" if len(ids) > 1 else "at least 2 training participants"
            raise ConfigError(
                f"data.selection_participants is {selection}, but the training split has {len(ids)} participant(s): "
                f"hold out at least 1 and leave at least 1 to train on; use {fits}, or a config made for small data "
                "(--config demo for make-synthetic's, --config temporal_demo for make-synthetic --sequences)"
            )
        rng = np.random.default_rng(seed)
        chosen = sorted(ids[i] for i in rng.choice(len(ids), size=selection, replace=False))
    else:
        chosen = sorted(set(selection))
        unknown = [c for c in chosen if c not in by_id]
        if unknown:
            raise ConfigError(f"data.selection_participants names {', '.join(unknown)}, not in the training split ({', '.join(ids)})")
        if not chosen or len(chosen) == len(ids):
            raise ConfigError("data.selection_participants must hold out at least one training participant and leave at least one")
    return SelectionSplit([by_id[i] for i in ids if i not in chosen], [by_id[i] for i in chosen])


@dataclass(frozen=True)
class FileIndex:
    """What indexing one file found: usable rows and their labels (``None`` labels: images only)."""

    path: Path
    rows: np.ndarray  # (M,) int64 row numbers of the usable samples
    gaze: np.ndarray | None  # (M, 2) float32 radians


def inspect_file(path: str | Path, policy: BadInputPolicy, *, require_labels: bool = True) -> FileIndex | None:
    """Check one file's datasets, shapes, dtypes, lengths and labels; returns None when it is skipped.

    A problem is reported through ``policy``: a DataError naming the file and the key, or with
    ``--skip-bad`` a counted warning. Rows with non-finite labels are dropped (and counted) under
    ``--skip-bad``; a broken file is dropped whole.
    """
    path = Path(path)
    f = open_h5(path, policy)
    if f is None:
        return None
    with f:
        lengths: dict[str, int] = {}
        for key, size in IMAGE_KEYS.items():
            if key not in f or not isinstance(f[key], h5py.Dataset):
                policy.report(path, f"missing dataset '{key}' (expected (N, {size}, {size}, 3) uint8)")
                return None
            d = f[key]
            if d.ndim != 4 or d.shape[1:] != (size, size, 3) or d.dtype != np.uint8:
                policy.report(path, f"dataset '{key}' is {d.shape} {d.dtype}, expected (N, {size}, {size}, 3) uint8")
                return None
            lengths[key] = d.shape[0]
        gaze = None
        if LABEL_KEY in f:
            d = f[LABEL_KEY]
            if not isinstance(d, h5py.Dataset) or d.ndim != 2 or d.shape[1] != 2 or d.dtype.kind != "f":
                policy.report(path, f"dataset '{LABEL_KEY}' is {getattr(d, 'shape', '?')} {getattr(d, 'dtype', '')}, expected (N, 2) float pitch/yaw")
                return None
            lengths[LABEL_KEY] = d.shape[0]
            gaze = np.asarray(d[()], dtype=np.float32)
        elif require_labels:
            policy.report(path, f"missing dataset '{LABEL_KEY}' (expected (N, 2) float pitch/yaw in radians)")
            return None
    if len(set(lengths.values())) != 1:
        policy.report(path, "datasets have different lengths: " + ", ".join(f"'{k}' {n}" for k, n in lengths.items()))
        return None
    rows = np.arange(lengths["face"], dtype=np.int64)
    if gaze is not None:
        found = label_problems(gaze)
        if found is not None:
            bad, problem = found
            policy.report(path, f"dataset '{LABEL_KEY}': {problem}; those rows are dropped")
            rows, gaze = rows[~bad], gaze[~bad]
    if len(rows) == 0:
        policy.report(path, "no samples")
        return None
    return FileIndex(path, rows, gaze)


class GazeH5Dataset(Dataset):
    """Samples of many HDF5 files, indexed without loading any image.

    ``dataset[i]`` is a dict: ``face`` ``(3, 224, 224)``, ``leye``/``reye`` ``(3, 112, 112)`` uint8 RGB
    tensors, ``gaze`` ``(2,)`` float32 radians (zeros when the files have no labels), ``participant``
    (int index into ``self.participants``) and ``index`` (``i``). Crops stay uint8 up to the device
    (4x less to copy between processes); models take float RGB in [0, 1].
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        *,
        augment: AugmentConfig | None = None,
        policy: BadInputPolicy | None = None,
        require_labels: bool = True,
    ) -> None:
        policy = policy or BadInputPolicy()
        self.augment = augment
        indexed = [ix for ix in (inspect_file(p, policy, require_labels=require_labels) for p in files) if ix is not None]
        if not indexed:
            raise DataError("no usable samples in " + ", ".join(str(p) for p in files[:5]) + (" ..." if len(files) > 5 else ""))
        self.files = [str(ix.path) for ix in indexed]
        self.participants = sorted({participant_id(ix.path) for ix in indexed})
        pid_of = {p: i for i, p in enumerate(self.participants)}
        self.file_index = np.concatenate([np.full(len(ix.rows), k, dtype=np.int32) for k, ix in enumerate(indexed)])
        self.row_index = np.concatenate([ix.rows for ix in indexed])
        self.participant_index = np.concatenate(
            [np.full(len(ix.rows), pid_of[participant_id(ix.path)], dtype=np.int32) for ix in indexed]
        )
        self.has_labels = all(ix.gaze is not None for ix in indexed)
        self.gaze = (
            np.concatenate([ix.gaze for ix in indexed]).astype(np.float32)  # type: ignore[misc]
            if self.has_labels
            else np.zeros((len(self.row_index), 2), dtype=np.float32)
        )
        self.skipped = policy.count
        self._handles: dict[int, tuple[h5py.File, h5py.Dataset, h5py.Dataset, h5py.Dataset]] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.row_index)

    def participant_of(self, indices: Sequence[int] | np.ndarray) -> list[str]:
        """Participant ids of dataset indices."""
        return [self.participants[k] for k in self.participant_index[np.asarray(indices, dtype=np.int64)]]

    def _datasets(self, k: int) -> tuple[h5py.File, h5py.Dataset, h5py.Dataset, h5py.Dataset]:
        """File ``k`` and its face/leye/reye datasets, opened once per process (lookups cost more than reads)."""
        if os.getpid() != self._pid:  # a forked worker: never use the parent's handles
            self._handles = {}
            self._pid = os.getpid()
        h = self._handles.get(k)
        if h is None:
            try:
                f = h5py.File(self.files[k], "r")
                h = (f, f["face"], f["leye"], f["reye"])
            except (OSError, KeyError) as e:
                raise DataError(f"{self.files[k]}: cannot open HDF5 file ({e})") from None
            self._handles[k] = h
        return h

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The raw ``(H, W, 3)`` uint8 face, left-eye and right-eye crops of sample ``i``."""
        k, row = int(self.file_index[i]), int(self.row_index[i])
        _, face, leye, reye = self._datasets(k)
        try:
            return face[row], leye[row], reye[row]
        except (OSError, KeyError) as e:
            raise DataError(f"{self.files[k]}: cannot read row {row} ({e})") from None

    def __getitem__(self, i: int) -> dict[str, Any]:
        face, leye, reye = (torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))) for a in self.read(i))
        gaze = torch.from_numpy(self.gaze[i].copy())
        if self.augment is not None:
            face, leye, reye, gaze = augment_sample(face, leye, reye, gaze, self.augment)
        return {
            "face": face,
            "leye": leye,
            "reye": reye,
            "gaze": gaze,
            "participant": int(self.participant_index[i]),
            "index": i,
        }

    def close(self) -> None:
        for f, *_ in self._handles.values():
            f.close()
        self._handles = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = {}  # spawned workers open their own
        return state


def to_float(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` uint8 -> float32 in [0, 1] (on whatever device the tensor is)."""
    return images.float().div_(255.0)


def load_split(
    root: str | Path,
    split: str,
    *,
    camera: str = "basler",
    augment: AugmentConfig | None = None,
    policy: BadInputPolicy | None = None,
) -> GazeH5Dataset:
    """The dataset of one split (``train``, ``val``, ...) under ``root``."""
    return GazeH5Dataset(find_h5_files(root, split, camera), augment=augment, policy=policy)
