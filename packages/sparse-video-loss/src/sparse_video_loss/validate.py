"""``validate-data PATH``: read a whole data set in its real format, as training would, and list every problem.

PATH is a data directory (the three split files of ``data.format``: ``train.pt``/``val.pt``/``test.pt``,
or the study's ``train_data.pt``/... mapped by ``data.original``), one split file, or a CSV gaze trace
(the ``import-csv`` / ``predict`` format). The checks are the loaders' own (``data.load_split_data`` and
``importer.read_traces``), run with every bad sequence or row collected instead of stopping at the
first, so a data set that passes here loads in ``train``. On top of them:

* every split must hold at least ``n_input + n_output`` frames per sequence (the study's longer files
  keep their first frames) and all splits one grid size;
* the summary counts sequences, frames with a point, motion kinds, and the coordinate range per file,
  and gives the time spent per file.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perception_shared.badinput import BadInputPolicy
from perception_shared.errors import DataError
from perception_shared.validation import ValidationReport, collecting_policy

from .config import DataConfig
from .data import load_split_data
from .importer import MAX_SAMPLE_INTERVAL_S, check_sample_interval, read_traces
from .sequences import MOTION_NAMES, SPLITS, load_sequences, split_path


def _summarize_sequences(path: Path, data: dict[str, Any], raw_count: int, seconds: float) -> dict[str, Any]:
    coords, masks = data["coordinates"], data["masks"]
    valid = coords[masks]
    info: dict[str, Any] = {
        "path": str(path),
        "sequences": raw_count,
        "usable_sequences": int(len(coords)),
        "frames_per_sequence": int(coords.shape[1]),
        "grid": f"{data['size']}x{data['size']}",
        "frames_with_point": f"{int(masks.sum())} of {masks.numel()} ({100 * float(masks.float().mean()):.1f}%)",
        "x_range": [round(float(valid[:, 0].min()), 3), round(float(valid[:, 0].max()), 3)] if len(valid) else None,
        "y_range": [round(float(valid[:, 1].min()), 3), round(float(valid[:, 1].max()), 3)] if len(valid) else None,
        "ms": round(1000 * seconds, 1),
    }
    motion = data.get("motion")
    if motion is not None:
        counts = torch.bincount((motion.long() + 1).flatten(), minlength=4).tolist()
        info["motion"] = {"unknown": counts[0], **{MOTION_NAMES[c]: counts[c + 1] for c in MOTION_NAMES}}
    return info


def _check_split(report: ValidationReport, name: str, load: Any, path: Path, window: int, first_frames: bool) -> dict[str, Any] | None:
    policy = collecting_policy()
    start = time.perf_counter()
    try:
        data = load(policy)
    except DataError as e:
        report.problems.append(str(e))
        report.sections[name] = {"path": str(path), "readable": False}
        return None
    seconds = time.perf_counter() - start
    report.problems += policy.skipped
    # every dropped sequence is reported exactly once
    report.sections[name] = _summarize_sequences(path, data, len(data["coordinates"]) + policy.count, seconds)
    T = data["coordinates"].shape[1]
    if T < window or (T > window and not first_frames):
        need = f"at least {window}" if first_frames else f"exactly {window}"
        report.problems.append(f"{path}: sequences have {T} frames; the config's n_input + n_output needs {need}")
    return data


def validate_data(path: str | Path, cfg: DataConfig, *, max_interval_s: float = MAX_SAMPLE_INTERVAL_S) -> ValidationReport:
    """Check ``path`` completely (module docstring); never raises for a problem of the data."""
    start = time.perf_counter()
    p = Path(path)
    window = cfg.n_input + cfg.n_output
    original = cfg.format == "original"
    if p.suffix.lower() == ".csv":
        report = ValidationReport(p, "csv trace")
        _check_csv(report, p, max_interval_s)
    elif p.is_dir():
        report = ValidationReport(p, "directory")
        sizes = {}
        for split in SPLITS:
            file = split_path(p, split, cfg.original.files if original else None)
            data = _check_split(report, split, lambda pol, s=split: load_split_data(cfg, s, pol, p)[1], file, window, original)
            if data is not None:
                sizes[split] = data["size"]
        if len(set(sizes.values())) > 1:
            report.problems.append(f"{p}: the splits have different grid sizes: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    else:
        report = ValidationReport(p, "split file")
        if original:
            from .original_data import load_original

            def load(pol: BadInputPolicy) -> dict[str, Any]:
                return load_original(p, cfg.original, pol)
        else:
            def load(pol: BadInputPolicy) -> dict[str, Any]:
                return load_sequences(p, pol)
        _check_split(report, p.name, load, p, window, original)
    report.files = len(report.sections)
    report.seconds = time.perf_counter() - start
    return report


def _check_csv(report: ValidationReport, path: Path, max_interval_s: float) -> None:
    policy = collecting_policy()
    start = time.perf_counter()
    try:
        # the interval is checked below, so that a wrong unit is reported beside the other problems
        traces, splits = read_traces(path, policy, max_interval_s=float("inf"))
    except DataError as e:
        report.problems.append(str(e))
        report.sections[path.name] = {"path": str(path), "readable": False}
        return
    report.problems += policy.skipped
    try:
        interval = check_sample_interval(traces, path, max_interval_s)
    except DataError as e:
        report.problems.append(str(e))
        interval = None
    samples = sum(len(a) for a in traces.values())
    missing = sum(int(np.sum(~np.isfinite(a[:, 1]))) for a in traces.values())
    report.sections[path.name] = {
        "path": str(path),
        "sequences": len(traces),
        "samples": samples,
        "missing_samples": missing,
        "median_interval_s": None if interval is None else round(interval, 6),
        "duration_s": round(sum(float(a[-1, 0] - a[0, 0]) for a in traces.values()), 3),
        "splits": sorted(set(splits.values())) or "assigned at import",
        "ms": round(1000 * (time.perf_counter() - start), 1),
    }
