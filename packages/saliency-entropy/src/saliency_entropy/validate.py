"""``validate-data``: read an MIT1003 or CAT2000 folder completely, as the loaders do, and list every problem.

Every file the loaders would read is opened and decoded with the loaders' own functions (images
decoded whole, raw gaze files read and run through the fixation detector, fixation maps and CSV rows
checked against their image, synthetic ground-truth densities checked for shape, sign and sum), and so
is every other file in the release folders (a raw-data or fixation-map file without its image is a
problem too). Problems are collected, not raised: the command prints a summary and every problem by
file, and exits 1 when there is one.

Layouts (``PATH``): an MIT1003 root (``ALLSTIMULI/``), a CAT2000 train set (``Stimuli/`` and
``FIXATIONLOCS/``), or a folder holding both as ``MIT1003/`` and ``CAT2000/`` (what ``make-synthetic``
writes). The MIT1003 fixation source is the config's ``data.fixations`` (raw by default).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from perception_shared.errors import DataError
from perception_shared.validation import ValidationReport, collecting_policy

from .config import TrainConfig
from .data import (
    ImageRecord,
    cat2000_names,
    cat2000_records,
    mit1003_fixation_source,
    read_ground_truth,
)
from .fixation_extraction import BadFileError
from .train import load_mit_records


def _check_ground_truth(records: list[ImageRecord], problems: list[str]) -> int:
    count = 0
    for r in records:
        if r.ground_truth is not None:
            count += 1
            try:
                read_ground_truth(r.ground_truth, r.height, r.width)
            except BadFileError as e:
                problems.append(f"{e.path}: {e.problem}")
    return count


def _summary(records: list[ImageRecord]) -> dict[str, Any]:
    sizes = sorted({(r.width, r.height) for r in records})
    n = np.array([len(r.fixations) for r in records])
    return {
        "images": len(records),
        "fixations": int(n.sum()),
        "fixations_per_image": f"{n.min()}-{n.max()}" if len(n) else "0",
        "image_sizes": ", ".join(f"{w}x{h}" for w, h in sizes[:6]) + (f" (+{len(sizes) - 6} more)" if len(sizes) > 6 else ""),
    }


def _files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else []


def validate_mit1003(root: Path, cfg: TrainConfig, report: ValidationReport) -> None:
    d = cfg.data
    policy = collecting_policy()
    try:
        records = load_mit_records(cfg, policy, root=root)
    except DataError as e:  # nothing usable at all (a missing folder, no image with fixations)
        records = []
        report.problems.append(f"{root}: {e}")
    report.problems += policy.skipped
    stems = {p.stem for p in (root / "ALLSTIMULI").glob("*.jpeg")}
    source = mit1003_fixation_source(root, d.fixations, d.fixations_csv, d.fixlocs_dir)
    if d.fixations == "raw":
        for mat in _files(source):
            if mat.suffix == ".mat" and mat.stem not in stems:
                report.problems.append(f"{mat}: raw gaze file for an image that is not in ALLSTIMULI")
    gt = _check_ground_truth(records, report.problems)
    files = _files(root / "ALLSTIMULI") + (_files(source) if source.is_dir() else [source] if source.is_file() else [])
    report.files += len(files) + gt
    report.sections["MIT1003"] = {**_summary(records), "fixation_source": d.fixations, "ground_truth_files": gt}


def validate_cat2000(root: Path, cfg: TrainConfig, report: ValidationReport) -> None:
    policy = collecting_policy()
    try:
        names = cat2000_names(root)
        records = cat2000_records(root, key=cfg.data.cat2000_key, policy=policy, names=names)
    except DataError as e:
        names, records = [], []
        report.problems.append(f"{root}: {e}")
    report.problems += policy.skipped
    known = set(names)
    for mat in _files(root / "FIXATIONLOCS"):
        name = f"{mat.parent.name}/{mat.stem}"
        if mat.suffix == ".mat" and mat.parent.parent == root / "FIXATIONLOCS" and name not in known:
            report.problems.append(f"{mat}: fixation map without an image in Stimuli")
    gt = _check_ground_truth(records, report.problems)
    images = [f for f in _files(root / "Stimuli") if f.suffix == ".jpg" and f.parent.parent == root / "Stimuli"]
    maps = [f for f in _files(root / "FIXATIONLOCS") if f.suffix == ".mat"]
    report.files += len(images) + len(maps) + gt
    summary = _summary(records)
    summary["categories"] = len({r.category for r in records})
    report.sections["CAT2000"] = {**summary, "ground_truth_files": gt}


def validate_data(path: str | Path, cfg: TrainConfig) -> ValidationReport:
    """Validate the data set(s) at ``path`` (see the module docstring)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"validate-data: {root} is not a folder")
    report = ValidationReport(root, "")
    start = time.perf_counter()
    for mit in (root, root / "MIT1003"):
        if (mit / "ALLSTIMULI").is_dir():
            validate_mit1003(mit, cfg, report)
            break
    for cat in (root, root / "CAT2000"):
        if (cat / "Stimuli").is_dir() or (cat / "FIXATIONLOCS").is_dir():
            validate_cat2000(cat, cfg, report)
            break
    if not report.sections:
        raise DataError(
            f"validate-data: {root} holds neither MIT1003 (ALLSTIMULI/) nor CAT2000 (Stimuli/, FIXATIONLOCS/), "
            "nor MIT1003/ and CAT2000/ folders"
        )
    report.kind = " and ".join(report.sections)
    report.seconds = time.perf_counter() - start
    return report
