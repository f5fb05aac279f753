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
from typing import ClassVar

import numpy as np

from perception_shared.errors import DataError
from perception_shared.validation import ValidationReport

from .config import DataConfig
from .data import IMAGE_EXTENSIONS, SPLIT_PARTS, inspect_ratings, load_split, probe_images
from .scaler import TargetScaler

MAX_NAMED = 10  # unlisted files named in a warning; the rest are counted


@dataclass
class DataReport(ValidationReport):
    """What ``validate_data`` found. ``problems`` would stop training; ``warnings`` would not.

    ``files`` counts the images decoded (listed or not). ``sections`` hold ``image folder`` (its path and
    image files, listed or not), ``image sizes`` (px) and ``ratings`` (per dimension, valid rows only:
    range, mean and sd of the mean ratings, range of the rater sds, empty sd cells).
    """

    csv: Path | None = None
    n_rows: int = 0
    n_valid_rows: int = 0
    dimensions: list[str] = field(default_factory=list)

    unit: ClassVar[str] = "image"

    def summary_lines(self) -> list[str]:
        """The CSV's rows, the image folder and sizes, and a table of the ratings per dimension."""
        folder = self.sections.get("image folder", {})
        lines = [
            f"ratings CSV {self.csv}: {self.n_rows} rows, {self.n_valid_rows} valid; {len(self.dimensions)} dimensions",
            f"image folder {folder.get('path')}: {folder.get('image_files', 0)} image file(s)",
        ]
        sizes = self.sections.get("image sizes")
        if sizes:
            lines.append(
                f"image sizes: width {sizes['width_min']}-{sizes['width_max']}, "
                f"height {sizes['height_min']}-{sizes['height_max']} px"
            )
        ratings = self.sections.get("ratings")
        if ratings:
            lines.append("per dimension (valid rows): mean rating min / mean / max, sd of the means; rater sd min-max")
            width = max(len(d) for d in ratings)
            for d, v in ratings.items():
                lines.append(
                    f"  {d.ljust(width)}  {v['mean_min']:8.3f} / {v['mean_mean']:8.3f} / {v['mean_max']:8.3f}, "
                    f"sd {v['mean_sd']:.3f}; rater sd {v['sd_min']:.3f}-{v['sd_max']:.3f}"
                )
        return lines


def _folder_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def validate_data(cfg: DataConfig) -> DataReport:
    """Check the data set of ``cfg`` completely (module docstring); never raises for a data problem."""
    start = time.perf_counter()
    cfg = dataclasses.replace(cfg, check_images="decode")  # every listed image, whatever training does
    report = DataReport(cfg.root, "ratings CSV and image folder", csv=cfg.csv_path)
    folder_files = _folder_images(cfg.images_path)
    report.sections["image folder"] = {"path": str(cfg.images_path), "image_files": len(folder_files)}
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
        report.files = sum(p is not None for p in found.paths)
        sizes += [s for s in found.image_sizes if s is not None]
        listed = {p.resolve() for p in found.paths if p is not None}
        if len(valid) >= 2:
            try:
                TargetScaler.fit(found.means[valid], found.dimensions)
            except DataError as e:
                report.problems.append(f"ratings CSV {found.csv}: {e}")
        ratings = report.sections["ratings"] = _rating_ranges(found.dimensions, found.means[valid], found.sds[valid])
        missing_sd = {d: int(v["n_missing_sd"]) for d, v in ratings.items() if v["n_missing_sd"]}
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
                unknown = [n for part in SPLIT_PARTS for n in split.get(part, []) if n not in names]
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
            report.files += 1
            if probe.problem:
                # a problem only when nothing could be checked through the CSV: then it may be listed
                target = report.warnings if found is not None else report.problems
                target.append(f"{probe.path}: {probe.problem}")
            else:
                sizes.append(probe.size)  # type: ignore[arg-type]
    if sizes:
        w = np.array([s[0] for s in sizes])
        h = np.array([s[1] for s in sizes])
        report.sections["image sizes"] = {
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
