"""The on-disk format of sparse sequences: its constants, validation, reading, writing and frame rendering.

A data directory holds ``train.pt``, ``val.pt`` and ``test.pt``. Each is a ``dict`` saved with
``torch.save`` holding only tensors and plain Python values, so ``torch.load(..., weights_only=True)``
reads it:

* ``"format"`` (str, optional): ``"sparse-video-loss/1"``.
* ``"coordinates"``: float tensor ``(N, T, 2)``, the point in each frame as ``(x, y)`` = (column, row) in
  grid pixel units, with pixel centres at integer coordinates: pixel ``(row r, column c)`` covers
  ``[c - 0.5, c + 0.5) x [r - 0.5, r + 0.5)``. Valid frames need ``-0.5 <= x, y < size - 0.5``; the
  coordinates of invalid frames are ignored (they may be NaN).
* ``"masks"``: bool tensor ``(N, T)``, True where the frame has a point (False: blink, track loss, ...).
* ``"size"``: int, the side of the square grid (32).
* ``"motion"`` (optional): int tensor ``(N, T)``, how the point got to each frame: 0 fixation (held),
  1 smooth pursuit, 2 saccade (jump), -1 unknown. Written by the synthetic generator; used to break the
  evaluation down by motion kind.
* ``"meta"`` (optional): dict of plain values (source, seed, frame rate, ...).

A frame is rendered with a single active pixel at ``(floor(y + 0.5), floor(x + 0.5))`` (round half up),
and an all-zero frame where the mask is False (see ``create_sparse_frames``).

Readers of other formats stand on this module and convert to it (the study's own files, ``train_data.pt``,
..., are read by ``original_data``); this module imports none of them. ``data.load_split_data`` picks the
reader the config's ``data.format`` names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from perception_shared.badinput import BadInputPolicy
from perception_shared.errors import DataError

FORMAT = "sparse-video-loss/1"
SPLITS = ("train", "val", "test")
REQUIRED_KEYS = ("coordinates", "masks", "size")
OPTIONAL_KEYS = ("format", "motion", "meta")
MOTION_NAMES = {0: "fixation", 1: "pursuit", 2: "saccade"}
UNKNOWN_MOTION = -1


def pixel_indices(coordinates: torch.Tensor) -> torch.Tensor:
    """Grid coordinates ``(..., 2)`` as ``(x, y)`` -> integer pixel indices ``(..., 2)`` as ``(row, col)``.

    Rounds half up (``floor(v + 0.5)``), so ``x = 3.5`` is column 4 and ``x = -0.5`` column 0.
    """
    idx = torch.floor(coordinates.double() + 0.5).long()
    return idx.flip(-1)


def _check_points(coordinates: torch.Tensor, masks: torch.Tensor, size: int) -> None:
    if coordinates.ndim < 2 or coordinates.shape[-1] != 2:
        raise ValueError(f"coordinates must have shape (T, 2), got {tuple(coordinates.shape)}")
    if masks.shape != coordinates.shape[:-1]:
        raise ValueError(f"masks must have shape {tuple(coordinates.shape[:-1])}, got {tuple(masks.shape)}")
    valid = coordinates[masks.bool()]
    if not torch.isfinite(valid).all():
        raise ValueError("coordinates of valid frames must be finite")
    if valid.numel() and (valid.min() < -0.5 or valid.max() >= size - 0.5):
        raise ValueError(f"coordinates of valid frames must lie in [-0.5, {size - 0.5}) for size {size}")


def create_sparse_frames(coordinates: torch.Tensor, masks: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Render points as frames with one active pixel each.

    Args:
        coordinates: ``(T, 2)`` float, ``(x, y)`` in grid pixel units (see the module docstring).
        masks: ``(T,)`` bool, frames without a point are all zero.
        size: side of the square grid in pixels.

    Returns:
        ``(T, 1, size, size)`` float32 frames with value 1 at the point's pixel and 0 elsewhere.
    """
    coordinates = torch.as_tensor(coordinates)
    masks = torch.as_tensor(masks).bool()
    if coordinates.ndim != 2:
        raise ValueError(f"coordinates must have shape (T, 2), got {tuple(coordinates.shape)}")
    _check_points(coordinates, masks, size)
    T = coordinates.shape[0]
    frames = torch.zeros(T, 1, size, size)
    t = torch.nonzero(masks).flatten()
    if len(t):
        rc = pixel_indices(coordinates[t])
        frames[t, 0, rc[:, 0], rc[:, 1]] = 1.0
    return frames


def save_sequences(
    path: str | Path,
    coordinates: torch.Tensor,
    masks: torch.Tensor,
    size: int,
    *,
    motion: torch.Tensor | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Validate and write one split file in the format above; returns its path."""
    obj: dict[str, Any] = {
        "format": FORMAT,
        "coordinates": torch.as_tensor(coordinates, dtype=torch.float32).contiguous(),
        "masks": torch.as_tensor(masks, dtype=torch.bool).contiguous(),
        "size": int(size),
    }
    if motion is not None:
        obj["motion"] = torch.as_tensor(motion, dtype=torch.int8).contiguous()
    if meta is not None:
        obj["meta"] = dict(meta)
    p = Path(path)
    validate_sequences(obj, p)
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, p)
    return p


def validate_sequences(
    obj: Any,
    path: str | Path,
    policy: BadInputPolicy | None = None,
    *,
    field_names: dict[str, str] | None = None,
    raw_coordinates: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Check a loaded split file; return it with bad sequences removed (only when ``policy`` skips).

    Structural problems (not a dict, missing or unknown keys, wrong types, dtypes or shapes) always raise
    ``DataError`` naming the file and the field. A sequence with a non-finite or out-of-range point in a
    valid frame, or an unknown motion code, goes to ``policy``: an error naming the file, field, sequence
    and frame, or with ``--skip-bad`` a counted warning and the sequence is dropped.

    ``field_names`` maps ``coordinates``/``masks``/``motion`` to the names the user's file gives them (for
    converted files, see ``original_data``); ``raw_coordinates`` are the points as the file writes them,
    quoted beside the converted ones in messages.
    """
    where = str(path)
    names = {"coordinates": "coordinates", "masks": "masks", "motion": "motion", **(field_names or {})}
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a dict with keys {', '.join(REQUIRED_KEYS)}, got {type(obj).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise DataError(f"{where}: missing key(s) {', '.join(map(repr, missing))}; required: {', '.join(REQUIRED_KEYS)}")
    unknown = [k for k in obj if k not in REQUIRED_KEYS + OPTIONAL_KEYS]
    if unknown:
        raise DataError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)}"
        )
    if "format" in obj and obj["format"] != FORMAT:
        raise DataError(f"{where}: field 'format' is {obj['format']!r}, expected {FORMAT!r}")
    size = obj["size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise DataError(f"{where}: field 'size' must be a positive int, got {size!r}")
    coords, masks = obj["coordinates"], obj["masks"]
    if not isinstance(coords, torch.Tensor) or not coords.is_floating_point():
        raise DataError(f"{where}: field 'coordinates' must be a float tensor, got {_describe(coords)}")
    if coords.ndim != 3 or coords.shape[-1] != 2:
        raise DataError(f"{where}: field 'coordinates' must have shape (N, T, 2), got {tuple(coords.shape)}")
    n, T = coords.shape[:2]
    if n < 1 or T < 1:
        raise DataError(f"{where}: field 'coordinates' holds no sequences or no frames (shape {tuple(coords.shape)})")
    if not isinstance(masks, torch.Tensor) or masks.dtype != torch.bool:
        raise DataError(f"{where}: field 'masks' must be a bool tensor, got {_describe(masks)}")
    if tuple(masks.shape) != (n, T):
        raise DataError(f"{where}: field 'masks' must have shape (N, T) = {(n, T)} like 'coordinates', got {tuple(masks.shape)}")
    motion = obj.get("motion")
    if motion is not None:
        if not isinstance(motion, torch.Tensor) or motion.is_floating_point() or motion.dtype == torch.bool:
            raise DataError(f"{where}: field {names['motion']!r} must be an integer tensor, got {_describe(motion)}")
        if tuple(motion.shape) != (n, T):
            raise DataError(f"{where}: field {names['motion']!r} must have shape (N, T) = {(n, T)}, got {tuple(motion.shape)}")
    if "meta" in obj and not isinstance(obj["meta"], dict):
        raise DataError(f"{where}: field 'meta' must be a dict, got {type(obj['meta']).__name__}")

    policy = policy or BadInputPolicy(skip=False)
    keep = torch.ones(n, dtype=torch.bool)
    c = coords.double()
    bad_value = masks & ~torch.isfinite(c).all(-1)
    out_of_range = masks & torch.isfinite(c).all(-1) & ((c < -0.5) | (c >= size - 0.5)).any(-1)
    for i, t in torch.nonzero(bad_value | out_of_range).tolist():
        if not keep[i]:
            continue
        x, y = coords[i, t].tolist()
        kind = "is not finite" if bad_value[i, t] else f"is outside [-0.5, {size - 0.5}) for size {size}"
        value = f"({x:g}, {y:g})"
        if raw_coordinates is not None:
            a, b = raw_coordinates[i, t].tolist()
            value = f"({a:g}, {b:g}) in the file, ({x:g}, {y:g}) as x=column, y=row with pixel centres at integers,"
        policy.report(where, f"field {names['coordinates']!r} of sequence {i}, frame {t} = {value} {kind}")
        keep[i] = False
    if motion is not None:
        allowed = torch.tensor([UNKNOWN_MOTION, *MOTION_NAMES])
        bad_motion = ~torch.isin(motion.long(), allowed)
        for i, t in torch.nonzero(bad_motion).tolist():
            if keep[i]:
                policy.report(where, f"field {names['motion']!r} of sequence {i}, frame {t} = {int(motion[i, t])}; allowed: -1, 0, 1, 2")
                keep[i] = False
    if not keep.all():
        if not keep.any():
            raise DataError(f"{where}: every sequence is bad; nothing left to use")
        obj = dict(obj)
        obj["coordinates"], obj["masks"] = coords[keep], masks[keep]
        if motion is not None:
            obj["motion"] = motion[keep]
    return obj


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def describe_keys(obj: dict[str, Any]) -> str:
    """``key: dtype shape, ...`` of a loaded file, for errors that help fix a key mapping."""
    return ", ".join(f"{k!r}: {_describe(v)}" for k, v in obj.items()) or "no keys"


def read_pt(path: str | Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU; a missing or unreadable file is a DataError naming it."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file (expected {what})")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated, foreign or pickled-object files
        raise DataError(f"{p}: cannot be read as {what} ({type(e).__name__}: {e})") from None


def load_sequences(path: str | Path, policy: BadInputPolicy | None = None) -> dict[str, Any]:
    """Read and validate one split file (``weights_only=True``: never unpickles arbitrary objects)."""
    return validate_sequences(read_pt(path, "a split file written by make-synthetic or import-csv"), path, policy)


def split_path(root: str | Path, split: str, files: Any = None) -> Path:
    """The file of ``split`` under ``root``: ``<split>.pt``, or the name ``files`` (``SplitFiles``) gives it."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    return Path(root) / (getattr(files, split) if files is not None else f"{split}.pt")
