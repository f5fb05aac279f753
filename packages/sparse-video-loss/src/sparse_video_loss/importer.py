"""Import raw gaze or event traces from CSV into the split files (``train.pt``, ``val.pt``, ``test.pt``).

Input: a CSV file with a header row and one row per sample. Columns (by name, any order; other columns
are ignored):

* ``sequence``: an identifier of the trace (participant, trial, recording, ...); rows of a sequence may
  come in any order;
* ``t``: time in seconds (any origin; each sequence starts at its own first sample);
* ``x``, ``y``: the point in screen pixels, origin at the top-left corner, x to the right, y down.
  An empty cell or ``nan`` marks a missing sample (blink, track loss);
* ``split`` (optional): ``train``, ``val`` or ``test``, the same on every row of a sequence. Without it,
  whole sequences are assigned at random (seeded) in the proportions given by ``fractions``.

Binning:

* time: frame ``k`` of a sequence holds the samples with ``k / frame_rate <= t - t0 < (k + 1) / frame_rate``
  (up to a millionth of a frame, so samples written at exactly the frame times stay in their frames);
* space: the screen (``screen_width x screen_height`` pixels) maps onto the ``size x size`` grid, grid
  coordinate ``x_g = x * size / screen_width - 0.5`` (likewise ``y``), so grid pixel ``c`` covers screen
  columns ``[c * W / size, (c + 1) * W / size)``; samples outside the screen count as missing;
* a frame's point is the mean of its samples' grid coordinates; a frame without samples is invalid
  (mask False);
* each sequence is cut into windows of ``frames`` consecutive frames starting every ``stride`` frames
  (non-overlapping by default); trailing frames that do not fill a window are dropped, and so are
  windows without any valid frame.

The windows' origins are kept in ``meta["window_sequence"]`` and ``meta["window_start_frame"]``.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perception_shared.badinput import BadInputPolicy
from perception_shared.errors import DataError
from perception_shared.logging import get_logger

from .sequences import SPLITS, save_sequences

REQUIRED_COLUMNS = ("sequence", "t", "x", "y")
# Gaze is sampled at 15 Hz (webcams) to 2000 Hz (lab trackers): 0.5-67 ms between samples. A median
# interval of 0.25 s or more is not a gaze trace in seconds but one written in milliseconds (a 250 Hz
# trace then shows 4 "seconds" between samples) or microseconds.
MAX_SAMPLE_INTERVAL_S = 0.25
log = get_logger("sparse_video_loss.importer")


def _number(text: str, allow_missing: bool) -> float | None:
    """A float, None for a missing value (empty or nan, when allowed); raises ValueError otherwise."""
    s = text.strip()
    if s == "" or s.lower() == "nan":
        if allow_missing:
            return None
        raise ValueError("is empty")
    try:
        v = float(s)
    except ValueError:
        raise ValueError("is not a number") from None
    if not math.isfinite(v):
        if allow_missing:
            return None
        raise ValueError("is not finite")
    return v


def check_sample_interval(traces: dict[str, np.ndarray], path: str | Path, max_interval_s: float = MAX_SAMPLE_INTERVAL_S) -> float | None:
    """The median interval between consecutive samples (seconds, all traces pooled); a DataError when it
    is implausible for seconds, naming the column ``t``, the interval seen and the unit it suggests.

    Returns None when no trace has two samples at different times.
    """
    gaps = [np.diff(a[:, 0]) for a in traces.values() if len(a) > 1]
    positive = np.concatenate(gaps)[np.concatenate(gaps) > 0] if gaps else np.zeros(0)
    if not len(positive):
        return None
    median = float(np.median(positive))
    if median >= max_interval_s:
        rate_ms, rate_us = 1000.0 / median, 1e6 / median
        guess = (
            f"in milliseconds it would be a {rate_ms:g} Hz trace: divide t by 1000"
            if 10 <= rate_ms <= 5000
            else f"in microseconds it would be a {rate_us:g} Hz trace: divide t by 1e6"
            if 10 <= rate_us <= 5000
            else "check the unit of t"
        )
        raise DataError(
            f"{path}: column 't' must be in seconds, but the median interval between samples is {median:g} "
            f"(a {1 / median:.3g} Hz trace if these were seconds; gaze is sampled at 15-2000 Hz); {guess}. "
            f"(Traces this slow on purpose: raise --max-sample-interval above {max_interval_s:g} s.)"
        )
    return median


def read_traces(
    path: str | Path, policy: BadInputPolicy | None = None, *, max_interval_s: float = MAX_SAMPLE_INTERVAL_S
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read the CSV: ``{sequence: (n, 3) array of t, x, y}`` (x, y NaN where missing) and ``{sequence: split}``.

    The time column must be in seconds (``check_sample_interval``)."""
    policy = policy or BadInputPolicy(skip=False)
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such CSV file")
    rows: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    splits: dict[str, str] = {}
    with open(p, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise DataError(
                f"{p}: missing column(s) {', '.join(missing)}; the header must name sequence, t, x, y "
                f"(optional: split), found: {', '.join(header) or 'no header'}"
            )
        has_split = "split" in header
        for line, row in enumerate(reader, start=2):
            where = f"{p}, line {line}"
            seq = (row.get("sequence") or "").strip()
            if not seq:
                policy.report(where, "column 'sequence' is empty")
                continue
            try:
                t = _number(row.get("t") or "", allow_missing=False)
            except ValueError as e:
                policy.report(where, f"column 't' = {row.get('t')!r} {e}")
                continue
            try:
                x = _number(row.get("x") or "", allow_missing=True)
                y = _number(row.get("y") or "", allow_missing=True)
            except ValueError:
                policy.report(where, f"columns 'x', 'y' = {row.get('x')!r}, {row.get('y')!r} are not numbers (leave empty or write nan for a missing sample)")
                continue
            if has_split:
                split = (row.get("split") or "").strip()
                if split not in SPLITS:
                    policy.report(where, f"column 'split' = {split!r}; expected one of {', '.join(SPLITS)}")
                    continue
                if splits.setdefault(seq, split) != split:
                    raise DataError(f"{where}: sequence {seq!r} is in split {split!r} here but {splits[seq]!r} earlier; a sequence belongs to one split")
            missing_xy = x is None or y is None
            rows[seq].append((t, math.nan if missing_xy else x, math.nan if missing_xy else y))  # type: ignore[arg-type]
    if not rows:
        raise DataError(f"{p}: no usable rows")
    traces = {}
    for seq, r in rows.items():
        a = np.asarray(r, dtype=np.float64)
        traces[seq] = a[np.argsort(a[:, 0], kind="stable")]
    check_sample_interval(traces, p, max_interval_s)
    return traces, splits


def bin_trace(
    trace: np.ndarray, *, screen_width: float, screen_height: float, size: int, frame_rate: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """One trace ``(n, 3)`` of t, x, y -> per-frame grid ``coordinates (K, 2)``, ``masks (K,)``, off-screen count."""
    t, x, y = trace[:, 0], trace[:, 1], trace[:, 2]
    # Times are decimal text: a sample written at exactly k / frame_rate (a trace recorded at the frame
    # rate) can parse to a hair below the boundary and land one frame early; a millionth of a frame of
    # tolerance keeps boundary samples in the frame they name.
    k = np.floor((t - t[0]) * frame_rate + 1e-6).astype(np.int64)
    n_frames = int(k[-1]) + 1
    present = np.isfinite(x) & np.isfinite(y)
    on_screen = present & (x >= 0) & (x < screen_width) & (y >= 0) & (y < screen_height)
    off_screen = int(np.sum(present & ~on_screen))
    gx = x * size / screen_width - 0.5
    gy = y * size / screen_height - 0.5
    counts = np.bincount(k[on_screen], minlength=n_frames).astype(np.float64)
    sx = np.bincount(k[on_screen], weights=gx[on_screen], minlength=n_frames)
    sy = np.bincount(k[on_screen], weights=gy[on_screen], minlength=n_frames)
    masks = counts > 0
    coords = np.full((n_frames, 2), np.nan)
    coords[masks, 0] = sx[masks] / counts[masks]
    coords[masks, 1] = sy[masks] / counts[masks]
    # A mean of in-range values can round up to size - 0.5 (here or when stored as float32); keep it inside
    # the last pixel.
    upper = float(np.nextafter(np.float32(size - 0.5), np.float32(-np.inf)))
    np.clip(coords, -0.5, upper, out=coords, where=masks[:, None])
    return coords, masks, off_screen


def import_csv(
    csv_path: str | Path,
    out_dir: str | Path,
    *,
    screen_width: float,
    screen_height: float,
    size: int = 32,
    frame_rate: float = 25.0,
    frames: int = 20,
    stride: int | None = None,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    policy: BadInputPolicy | None = None,
    max_interval_s: float = MAX_SAMPLE_INTERVAL_S,
) -> dict[str, Any]:
    """Bin the traces of ``csv_path`` and write ``train.pt``, ``val.pt`` and ``test.pt`` under ``out_dir``.

    ``max_interval_s``: a median sample interval at or above it means ``t`` is not in seconds (refused).
    Returns ``{"paths": {split: path}, "windows": {split: count}, ...counts of what was dropped}``.
    """
    if screen_width <= 0 or screen_height <= 0:
        raise DataError(f"screen size must be positive, got {screen_width} x {screen_height}")
    if size < 1 or frames < 1 or frame_rate <= 0:
        raise DataError(f"size, frames and frame rate must be positive, got {size}, {frames}, {frame_rate}")
    stride = frames if stride is None else stride
    if stride < 1:
        raise DataError(f"stride must be at least 1 frame, got {stride}")
    if len(fractions) != 3 or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise DataError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    policy = policy or BadInputPolicy(skip=False)
    traces, given = read_traces(csv_path, policy, max_interval_s=max_interval_s)
    names = sorted(traces)
    if given:
        assignment = {s: given[s] for s in names}
    else:
        order = np.random.default_rng(seed).permutation(len(names))
        n_train = round(fractions[0] * len(names))
        n_val = round(fractions[1] * len(names))
        assignment = {}
        for rank, i in enumerate(order):
            assignment[names[i]] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"

    windows: dict[str, list[tuple[np.ndarray, np.ndarray, str, int]]] = {s: [] for s in SPLITS}
    off_screen = empty_windows = short = 0
    for seq in names:
        coords, masks, off = bin_trace(traces[seq], screen_width=screen_width, screen_height=screen_height, size=size, frame_rate=frame_rate)
        off_screen += off
        if len(masks) < frames:
            short += 1
            continue
        for start in range(0, len(masks) - frames + 1, stride):
            m = masks[start : start + frames]
            if not m.any():
                empty_windows += 1
                continue
            windows[assignment[seq]].append((coords[start : start + frames], m, seq, start))
    if off_screen:
        log.warning("%s: %d sample(s) outside the %gx%g screen were treated as missing", csv_path, off_screen, screen_width, screen_height)
    if short:
        log.warning("%s: %d sequence(s) shorter than %d frames at %g Hz were dropped", csv_path, short, frames, frame_rate)
    empty = [s for s in SPLITS if not windows[s]]
    if empty:
        counts = ", ".join(f"{s}: {len(windows[s])}" for s in SPLITS)
        raise DataError(
            f"{csv_path}: split(s) {', '.join(empty)} would hold no window of {frames} frames ({counts}); "
            "give more or longer sequences, other split fractions, or a 'split' column"
        )
    paths = {}
    for split in SPLITS:
        w = windows[split]
        meta = {
            "source": "csv",
            "csv": str(csv_path),
            "screen_width": float(screen_width),
            "screen_height": float(screen_height),
            "frame_rate_hz": float(frame_rate),
            "stride": int(stride),
            "window_sequence": [s for _, _, s, _ in w],
            "window_start_frame": [int(st) for _, _, _, st in w],
        }
        coords = torch.from_numpy(np.stack([c for c, _, _, _ in w])).float()
        masks = torch.from_numpy(np.stack([m for _, m, _, _ in w]))
        paths[split] = save_sequences(Path(out_dir) / f"{split}.pt", coords, masks, size, meta=meta)
    return {
        "paths": paths,
        "windows": {s: len(windows[s]) for s in SPLITS},
        "sequences": len(names),
        "off_screen_samples": off_screen,
        "dropped_short_sequences": short,
        "dropped_empty_windows": empty_windows,
        "skipped_rows": policy.count,
    }
