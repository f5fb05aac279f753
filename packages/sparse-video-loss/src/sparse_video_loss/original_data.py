"""The study's original data files (``data/train_data.pt``, ``val_data.pt``, ``test_data.pt``), read as they are.

Each file is a ``dict`` saved with ``torch.save`` that holds the gaze points of ``N`` sequences of ``T``
frames and a mask of the frames that have a point. Which key holds what, and how a point is written,
comes from the config (``data.original``, see ``config.OriginalFormatConfig``); the study's own files use
``coordinates`` (float ``(N, T, 2)``, grid pixels, component 0 the row, pixel ``i`` covering ``[i, i + 1)``)
and ``fixation_mask`` (``(N, T)``, 0/1 or bool).

Loading converts the points to this package's convention (``x`` = column, ``y`` = row, pixel centres at
integers, see ``sequences``) and then runs the same checks as the native format (``sequences.validate_sequences``):

* a key the mapping names but the file lacks, or a shape that does not fit, is a ``DataError`` that lists
  every key of the file with its type and shape, so the mapping can be fixed from the message;
* the declared convention is checked against the grid: normalized values above 1, or pixel values that
  all lie in [0, 1] on a larger grid, are an error naming the convention and the range seen; points
  outside the grid go to the bad-input policy (sequence and frame named, or skipped with ``--skip-bad``);
* when the file also holds rendered frames (``keys.frames``), every valid frame's active pixel must be the
  pixel the declared convention renders; otherwise the error says how many disagree and which
  convention would agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from perception_shared.badinput import BadInputPolicy
from perception_shared.errors import DataError

from .config import CoordinateConvention, OriginalFormatConfig
from .sequences import create_sparse_frames, describe_keys, pixel_indices, read_pt, validate_sequences

FORMAT_NAME = "original"


def to_native(coords: torch.Tensor, convention: CoordinateConvention, size: int) -> torch.Tensor:
    """``(..., 2)`` points in ``convention`` -> ``(..., 2)`` float64 ``(x, y)`` with pixel centres at integers."""
    c = coords.double()
    if convention.order == "yx":
        c = c.flip(-1)
    if convention.units == "normalized":
        c = c * (size if convention.origin == "corner" else size - 1)
    return c - 0.5 if convention.origin == "corner" else c


def from_native(coords: torch.Tensor, convention: CoordinateConvention, size: int) -> torch.Tensor:
    """The inverse of ``to_native``: this package's ``(x, y)`` -> points written in ``convention``."""
    c = coords.double()
    if convention.origin == "corner":
        c = c + 0.5
    if convention.units == "normalized":
        c = c / (size if convention.origin == "corner" else size - 1)
    return c.flip(-1) if convention.order == "yx" else c


def _describe_convention(convention: CoordinateConvention) -> str:
    return f"units={convention.units}, order={convention.order}, origin={convention.origin}"


def _valid_range(convention: CoordinateConvention, size: int) -> str:
    if convention.units == "normalized":
        return "[0, 1]"
    return f"[0, {size})" if convention.origin == "corner" else f"[-0.5, {size - 0.5})"


def _mask_tensor(value: Any, where: str, key: str, shape: tuple[int, int], found: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
        raise DataError(f"{where}: key {key!r} (data.original.keys.mask) must be a (N, T) = {shape} tensor; the file holds: {found}")
    if value.dtype == torch.bool:
        return value
    if value.is_complex():
        raise DataError(f"{where}: key {key!r} must be a bool or 0/1 tensor, got {value.dtype}")
    bad = ~((value == 0) | (value == 1))
    if bad.any():
        i, t = torch.nonzero(bad)[0].tolist()
        raise DataError(f"{where}: key {key!r} must hold 0/1 or bool, but sequence {i}, frame {t} is {value[i, t].item()!r}")
    return value != 0


def _stored_frames(value: Any, where: str, key: str, n: int, T: int, size: int, found: str) -> torch.Tensor:
    """Stored frames as ``(N, T, H, W)``; accepts ``(N, T, H, W)``, ``(N, T, 1, H, W)`` and ``(N, 1, T, H, W)``."""
    if isinstance(value, torch.Tensor):
        shape = tuple(value.shape)
        if shape == (n, T, size, size):
            return value
        if shape == (n, T, 1, size, size):
            return value[:, :, 0]
        if shape == (n, 1, T, size, size):
            return value[:, 0]
    raise DataError(
        f"{where}: key {key!r} (data.original.keys.frames) must be frames of shape (N, T, H, W), (N, T, 1, H, W) "
        f"or (N, 1, T, H, W) with N={n}, T={T}, H=W={size}; the file holds: {found}"
    )


def _check_against_frames(frames: torch.Tensor, raw: torch.Tensor, native: torch.Tensor, masks: torch.Tensor,
                          convention: CoordinateConvention, size: int, where: str) -> None:
    """Every valid frame's stored active pixel must be the one the declared convention renders."""
    valid = masks & torch.isfinite(native).all(-1)
    if not valid.any():
        return
    flat = frames[valid].reshape(-1, size * size).argmax(-1)
    stored = torch.stack([flat // size, flat % size], -1)

    def disagreements(conv: CoordinateConvention) -> int:
        rc = pixel_indices(to_native(raw[valid], conv, size))
        return int((rc != stored).any(-1).sum())

    wrong = disagreements(convention)
    if wrong == 0:
        return
    alternatives = [
        CoordinateConvention(units=convention.units, order=o, origin=g)
        for o in ("xy", "yx") for g in ("corner", "center")
        if (o, g) != (convention.order, convention.origin)
    ]
    better = [c for c in alternatives if disagreements(c) == 0]
    hint = f"; {_describe_convention(better[0])} renders every one of them" if better else ""
    raise DataError(
        f"{where}: with the declared convention ({_describe_convention(convention)}, data.original.convention) "
        f"{wrong} of {int(valid.sum())} points fall on another pixel than the file's stored frames{hint}"
    )


def convert_original(obj: Any, path: str | Path, cfg: OriginalFormatConfig, policy: BadInputPolicy | None = None) -> dict[str, Any]:
    """A loaded original file -> the native dict (``coordinates``, ``masks``, ``size``, ``motion``, ``meta``), checked."""
    where = str(path)
    keys = cfg.keys
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a dict holding {keys.coordinates!r} and {keys.mask!r}, got {type(obj).__name__}")
    found = describe_keys(obj)
    missing = [(name, k) for name, k in (("coordinates", keys.coordinates), ("mask", keys.mask), ("frames", keys.frames),
                                          ("motion", keys.motion)) if k is not None and k not in obj]
    if missing:
        named = ", ".join(f"{k!r} (data.original.keys.{name})" for name, k in missing)
        raise DataError(f"{where}: no key {named}; the file holds: {found}")
    coords = obj[keys.coordinates]
    if not isinstance(coords, torch.Tensor) or not coords.is_floating_point() or coords.ndim != 3 or coords.shape[-1] != 2:
        raise DataError(f"{where}: key {keys.coordinates!r} (data.original.keys.coordinates) must be a float (N, T, 2) tensor; the file holds: {found}")
    n, T = int(coords.shape[0]), int(coords.shape[1])
    masks = _mask_tensor(obj[keys.mask], where, keys.mask, (n, T), found)
    conv, size = cfg.convention, cfg.size
    finite = coords[masks & torch.isfinite(coords).all(-1)]
    if finite.numel():
        lo, hi = float(finite.min()), float(finite.max())
        seen = f"valid points span [{lo:g}, {hi:g}]"
        if conv.units == "normalized" and hi > 1.0 + 1e-6 and hi >= 2.0:
            raise DataError(
                f"{where}: data.original.convention.units is normalized, but {seen}: these look like pixels of "
                f"the {size}x{size} grid; set data.original.convention.units: pixels"
            )
        if conv.units == "pixels" and size > 4 and lo >= 0.0 and hi <= 1.0 and len(finite) >= 10:
            raise DataError(
                f"{where}: data.original.convention.units is pixels of a {size}x{size} grid, but {seen}: these "
                "look normalized; set data.original.convention.units: normalized"
            )
    native = to_native(coords, conv, size).float()
    if keys.frames is not None:
        frames = _stored_frames(obj[keys.frames], where, keys.frames, n, T, size, found)
        _check_against_frames(frames, coords, native, masks, conv, size, where)
    out: dict[str, Any] = {"coordinates": native, "masks": masks, "size": size}
    if keys.motion is not None:
        out["motion"] = obj[keys.motion]
    out["meta"] = {
        "source": f"original files ({FORMAT_NAME} format)",
        "file": where,
        "convention": _describe_convention(conv),
        "valid_range_declared": _valid_range(conv, size),
        "keys": found,
    }
    names = {"coordinates": keys.coordinates, "masks": keys.mask, "motion": keys.motion or "motion"}
    return validate_sequences(out, where, policy, field_names=names, raw_coordinates=coords)


def load_original(path: str | Path, cfg: OriginalFormatConfig, policy: BadInputPolicy | None = None) -> dict[str, Any]:
    """Read one original split file (``weights_only=True``) and convert it (see ``convert_original``)."""
    return convert_original(read_pt(path, "an original data file (data/train_data.pt, ...)"), path, cfg, policy)


def write_original(path: str | Path, coordinates: torch.Tensor, masks: torch.Tensor, cfg: OriginalFormatConfig,
                   *, motion: torch.Tensor | None = None) -> Path:
    """Write this package's ``(x, y)`` points as an original file in ``cfg``'s keys and convention.

    The mask is stored as float 0/1 as in the study's files; masked frames hold NaN. Used by the
    synthetic generator (``make-synthetic --format original``) and the tests.
    """
    coords = from_native(coordinates, cfg.convention, cfg.size).float()
    coords = torch.where(masks[..., None].bool(), coords, torch.full_like(coords, float("nan")))
    obj: dict[str, Any] = {cfg.keys.coordinates: coords.contiguous(), cfg.keys.mask: masks.float().contiguous()}
    if cfg.keys.motion is not None and motion is not None:
        obj[cfg.keys.motion] = motion.to(torch.int8).contiguous()
    if cfg.keys.frames is not None:
        obj[cfg.keys.frames] = torch.stack([create_sparse_frames(c, m, cfg.size)[:, 0] for c, m in zip(coordinates, masks.bool())])
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, p)
    return p
