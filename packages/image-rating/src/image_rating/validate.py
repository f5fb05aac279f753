"""``validate-data``: read a whole rating data set as training would, without training, and list every problem.

The checks are the loaders' own (``data.inspect_ratings``: the CSV's columns, every row's name and
ratings, every listed image found and decoded; ``TargetScaler.fit``: no dimension with one rating for
every image; ``data.load_split`` for a configured split file), so a data set that passes here loads in
``train``. Besides, every image file in the folder that the CSV does not list is decoded too and
reported as a warning (training ignores it), and the summary gives per dimension the range of the
mean ratings and of the rater sds, and the range of image sizes.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perception_shared.errors import DataError

from .config import DataConfig
from .data import IMAGE_EXTENSIONS, inspect_ratings, load_split, probe_images
from .scaler import TargetScaler

MAX_NAMED = 10  # unlisted files named in a warning; the rest are counted


@dataclass
class DataReport:
    """What ``validate_data`` found. ``problems`` would stop training; ``warnings`` would not."""

    csv: Path
    images_dir: Path
    n_rows: int = 0
    n_valid_rows: int = 0
    n_image_files: int = 0  # image files in the folder (listed or not)
    n_decoded: int = 0  # image files opened and decoded
    dimensions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    ratings: dict[str, dict[str, float]] = field(default_factory=dict)  # per dimension, valid rows only
    image_sizes: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "ratings_csv": str(self.csv),
            "images_dir": str(self.images_dir),
            "n_rows": self.n_rows,
            "n_valid_rows": self.n_valid_rows,
            "n_image_files": self.n_image_files,
            "n_decoded": self.n_decoded,
            "dimensions": self.dimensions,
            "problems": self.problems,
            "warnings": self.warnings,
            "ratings": self.ratings,
            "image_sizes": self.image_sizes,
            "seconds": round(self.seconds, 3),
            "ms_per_image": round(1000 * self.seconds / max(self.n_decoded, 1), 3),
        }


def _folder_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def validate_data(cfg: DataConfig) -> DataReport:
    """Check the data set of ``cfg`` completely (module docstring); never raises for a data problem."""
    start = time.perf_counter()
    cfg = dataclasses.replace(cfg, check_images="decode")  # every listed image, whatever training does
    report = DataReport(cfg.csv_path, cfg.images_path)
    folder_files = _folder_images(cfg.images_path)
    report.n_image_files = len(folder_files)
    listed: set[Path] = set()
    sizes: list[tuple[int, int]] = []
    try:
        found = inspect_ratings(cfg)
    except DataError as e:  # the file as a whole is unusable; still look at every image
        report.problems.append(str(e))
        found = None
    if found is not None:
        report.n_rows = len(found.names)
        report.dimensions = found.dimensions
        for i, row in enumerate(found.row_problems):
            if row:
                report.problems.append(f"{found.where(i)}: {'; '.join(row)}")
        valid = [i for i, row in enumerate(found.row_problems) if not row]
        report.n_valid_rows = len(valid)
        report.n_decoded = sum(p is not None for p in found.paths)
        sizes += [s for s in found.image_sizes if s is not None]
        listed = {p.resolve() for p in found.paths if p is not None}
        if len(valid) >= 2:
            try:
                TargetScaler.fit(found.means[valid], found.dimensions)
            except DataError as e:
                report.problems.append(f"ratings CSV {found.csv}: {e}")
        report.ratings = _rating_ranges(found.dimensions, found.means[valid], found.sds[valid])
        missing_sd = {d: int(v["n_missing_sd"]) for d, v in report.ratings.items() if v["n_missing_sd"]}
        if missing_sd:
            report.warnings.append(
                "empty sd cells (allowed; the noise ceiling ignores them): "
                + ", ".join(f"{d} {n}" for d, n in missing_sd.items())
            )
    if cfg.split_file:
        try:
            split = load_split(cfg.split_file)
            if found is not None:
                names = set(found.names)
                unknown = [n for n in split["train"] + split["val"] if n not in names]
                if unknown:
                    report.problems.append(
                        f"split file {cfg.split_file}: {len(unknown)} image(s) not in {found.csv}, e.g. "
                        + ", ".join(unknown[:5])
                    )
        except DataError as e:
            report.problems.append(str(e))

    unlisted = [p for p in folder_files if p.resolve() not in listed]
    if unlisted:
        report.warnings.append(
            f"{len(unlisted)} image file(s) in {cfg.images_path} are not in the CSV and are not used: "
            + ", ".join(p.name for p in unlisted[:MAX_NAMED])
            + (" ..." if len(unlisted) > MAX_NAMED else "")
        )
        for probe in probe_images(unlisted):
            report.n_decoded += 1
            if probe.problem:
                # a problem only when nothing could be checked through the CSV: then it may be listed
                target = report.warnings if found is not None else report.problems
                target.append(f"{probe.path}: {probe.problem}")
            else:
                sizes.append(probe.size)  # type: ignore[arg-type]
    if sizes:
        w = np.array([s[0] for s in sizes])
        h = np.array([s[1] for s in sizes])
        report.image_sizes = {
            "n": len(sizes),
            "width_min": int(w.min()),
            "width_max": int(w.max()),
            "height_min": int(h.min()),
            "height_max": int(h.max()),
            "shorter_side_min": int(np.minimum(w, h).min()),
        }
    report.seconds = time.perf_counter() - start
    return report


def _rating_ranges(dims: list[str], means: np.ndarray, sds: np.ndarray) -> dict[str, dict[str, float]]:
    out = {}
    for j, d in enumerate(dims):
        m, s = means[:, j], sds[:, j]
        has_sd = np.isfinite(s)
        out[d] = {
            "mean_min": float(m.min()) if len(m) else float("nan"),
            "mean_max": float(m.max()) if len(m) else float("nan"),
            "mean_mean": float(m.mean()) if len(m) else float("nan"),
            "mean_sd": float(m.std()) if len(m) else float("nan"),
            "sd_min": float(s[has_sd].min()) if has_sd.any() else float("nan"),
            "sd_max": float(s[has_sd].max()) if has_sd.any() else float("nan"),
            "n_missing_sd": int((~has_sd).sum()),
        }
    return out


def format_report(report: DataReport) -> str:
    """The summary, then every problem and warning, one per line."""
    lines = [
        f"ratings CSV {report.csv}: {report.n_rows} rows, {report.n_valid_rows} valid; "
        f"{len(report.dimensions)} dimensions",
        f"image folder {report.images_dir}: {report.n_image_files} image file(s), {report.n_decoded} decoded "
        f"in {report.seconds:.2f} s ({1000 * report.seconds / max(report.n_decoded, 1):.2f} ms per image)",
    ]
    if report.image_sizes:
        s = report.image_sizes
        lines.append(
            f"image sizes: width {s['width_min']}-{s['width_max']}, height {s['height_min']}-{s['height_max']} px"
        )
    if report.ratings:
        lines.append("per dimension (valid rows): mean rating min / mean / max, sd of the means; rater sd min-max")
        width = max(len(d) for d in report.ratings)
        for d, v in report.ratings.items():
            lines.append(
                f"  {d.ljust(width)}  {v['mean_min']:8.3f} / {v['mean_mean']:8.3f} / {v['mean_max']:8.3f}, "
                f"sd {v['mean_sd']:.3f}; rater sd {v['sd_min']:.3f}-{v['sd_max']:.3f}"
            )
    lines += [f"WARNING {w}" for w in report.warnings]
    lines += [f"PROBLEM {p}" for p in report.problems]
    verdict = "data OK" if report.ok else f"{len(report.problems)} problem(s)"
    lines.append(f"{verdict}, {len(report.warnings)} warning(s)")
    return "\n".join(lines)
