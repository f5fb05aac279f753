"""The ratings CSV, the image folder, the train/val/test split and the torch dataset.

Ratings CSV (wide format, as ``per_image_Slider_mean_sd_from_wide.csv``): one row per image; a column
with the image's file name (``data.image_column``, default ``image``), relative to the image folder (an
extension may be left out); and, per dimension, a mean column and an sd column named by the templates
``data.mean_column`` / ``data.sd_column`` (default ``<Dimension>_mean`` / ``<Dimension>_sd``): the mean
and standard deviation over raters, in rating units. Other columns are ignored. Stray quotes and spaces
around header names (as in ``""image""``, which some R exports write) are removed.

Checks (``inspect_ratings``; ``load_ratings`` and ``validate-data`` both use them), all reported
together: missing columns, including a dimension with an sd column but no mean column or the reverse
(named by the dimension); then per row an empty or duplicated image name, a missing, NaN or
non-numeric mean rating, a non-numeric or negative sd, an image file that does not exist, and one that
cannot be decoded. Missing columns always fail; bad rows fail with the full list, or with
``--skip-bad`` are skipped and counted (``perception_shared.badinput.BadInputPolicy``).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from perception_shared.badinput import BadInputPolicy
from perception_shared.errors import DataError
from perception_shared.inputs import expand_inputs
from perception_shared.logging import get_logger

from .config import DataConfig

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
SPLIT_FORMAT = "image-rating-split/1"
SPLIT_JSON = "split.json"
SPLIT_PARTS = ("train", "val", "test")

log = get_logger("image_rating.data")


def _clean_header(name: Any) -> str:
    return str(name).strip().strip("\"'").strip()


def read_ratings_csv(path: str | Path) -> pd.DataFrame:
    """Read the CSV as strings with cleaned header names; an unreadable file is a DataError."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"ratings CSV {p} does not exist")
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheet exports often start with a BOM
            header = [_clean_header(c) for c in next(csv.reader(f), [])]
        df = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"ratings CSV {p} cannot be parsed: {e}") from None
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:  # pandas would silently rename the second one to "<name>.1"
        raise DataError(f"ratings CSV {p}: duplicated column name(s) {', '.join(dupes)}")
    df.columns = header
    return df


def _template_regex(template: str) -> re.Pattern[str]:
    before, after = template.split("{dim}")
    return re.compile(re.escape(before) + r"(?P<dim>.+?)" + re.escape(after) + r"\Z")


def find_dimensions(columns: Sequence[str], mean_column: str = "{dim}_mean") -> list[str]:
    """Dimension names of the columns that match the ``mean_column`` template, in column order."""
    pattern = _template_regex(mean_column)
    return [m.group("dim") for c in columns if (m := pattern.match(c))]


def check_columns(
    columns: Sequence[str], cfg: DataConfig, csv: Path, dimensions: Sequence[str] | None = None
) -> list[str]:
    """The dimensions of a ratings CSV with header ``columns``; every column problem in one DataError.

    The dimensions are ``dimensions`` (e.g. a checkpoint's), else ``data.dimensions``, else every
    dimension with a mean or an sd column. A dimension needs both: a ``X_sd`` column without ``X_mean``
    (or the reverse) is an error that names ``X`` and the column it lacks, not a silently dropped
    dimension. The image column must be there too.
    """
    explicit = list(dimensions or cfg.dimensions)
    if explicit:
        dims = explicit
    else:
        found = find_dimensions(columns, cfg.mean_column)
        if not found:  # then the pattern is wrong, not one dimension
            raise DataError(
                f"ratings CSV {csv}: no column matches the mean-column pattern {cfg.mean_column!r} "
                f"(set data.mean_column or data.dimensions); columns: {', '.join(columns)}"
            )
        dims = found + [d for d in find_dimensions(columns, cfg.sd_column) if d not in found]
    have = set(columns)
    problems = [] if cfg.image_column in have else [f"no image column {cfg.image_column!r}"]
    for d in dims:
        mean_col, sd_col = cfg.mean_column.format(dim=d), cfg.sd_column.format(dim=d)
        lacking = [c for c in (mean_col, sd_col) if c not in have]
        if len(lacking) == 2:
            problems.append(f"dimension {d!r}: no {mean_col!r} and no {sd_col!r} column")
        elif lacking:
            present = sd_col if lacking[0] == mean_col else mean_col
            problems.append(f"dimension {d!r}: column {present!r} but no {lacking[0]!r}")
    if problems:
        raise DataError(
            f"ratings CSV {csv}: missing column(s): " + "; ".join(problems) + f" (columns: {', '.join(columns)})"
        )
    return dims


@dataclass
class RatingsTable:
    """Validated ratings: row i is image ``names[i]`` at ``paths[i]``."""

    source: Path
    dimensions: list[str]
    names: list[str]
    paths: list[Path]
    means: np.ndarray  # (N, D) float64, rating units
    sds: np.ndarray  # (N, D) float64, rating units; NaN where the CSV gave none
    skipped: list[str] = field(default_factory=list)  # image names dropped as bad rows (--skip-bad)

    def __len__(self) -> int:
        return len(self.names)

    def select(self, names: Sequence[str]) -> RatingsTable:
        """The rows of ``names``, in that order."""
        pos = {n: i for i, n in enumerate(self.names)}
        idx = np.asarray([pos[n] for n in names], dtype=np.int64)
        return RatingsTable(
            self.source,
            list(self.dimensions),
            [self.names[i] for i in idx],
            [self.paths[i] for i in idx],
            self.means[idx],
            self.sds[idx],
            list(self.skipped),
        )


def resolve_image_path(images_dir: Path, name: str) -> tuple[Path | None, str | None]:
    """The file for ``name`` (trying the known extensions when it has none), or ``(None, problem)``."""
    p = images_dir / name
    if p.is_file():
        return p, None
    if p.suffix.lower() not in IMAGE_EXTENSIONS:
        found = [q for ext in IMAGE_EXTENSIONS for q in (p.with_name(p.name + ext), p.with_name(p.name + ext.upper()))]
        found = sorted({q for q in found if q.is_file()})
        if len(found) == 1:
            return found[0], None
        if len(found) > 1:
            return None, f"image name {name!r} matches several files: {', '.join(q.name for q in found)}"
    return None, f"image file {p} not found"


def open_rgb(path: str | Path, min_size: int | None = None) -> Image.Image:
    """Decode an image as RGB; an unreadable file is a DataError naming it.

    With ``min_size``, a JPEG is decoded at the smallest power-of-two reduction whose sides stay at least
    ``min_size`` (libjpeg's DCT scaling): several times faster for photos much larger than the network
    input, and a proper low-pass, since the image is resized below that size anyway.
    """
    try:
        with Image.open(path) as img:
            if min_size is not None and img.format == "JPEG":
                img.draft("RGB", (min_size, min_size))
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None


@dataclass(frozen=True)
class ImageProbe:
    """The result of decoding one image file: ``problem`` is None when it decoded."""

    path: Path
    problem: str | None
    size: tuple[int, int] | None = None  # (width, height) in pixels


def probe_image(path: str | Path) -> ImageProbe:
    """Open and decode ``path`` completely; what went wrong, or its size."""
    p = Path(path)
    try:
        with Image.open(p) as img:
            size = img.size
            if img.format == "JPEG":  # decoding at 1/8 scale still reads (and checks) the whole stream
                img.draft("RGB", (max(img.width // 8, 1), max(img.height // 8, 1)))
            img.load()
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        return ImageProbe(p, f"unreadable image ({type(e).__name__}: {e})")
    return ImageProbe(p, None, size)


def probe_images(paths: Sequence[Path]) -> list[ImageProbe]:
    """``probe_image`` for each path, in order, in 4 threads (PIL decodes without the GIL)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(probe_image, paths))


def _numeric(df: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray]:
    """Float values of a string column and a mask of cells that hold text that is not a number."""
    raw = df[col].str.strip()
    values = pd.to_numeric(raw.where(raw != "", None), errors="coerce").to_numpy(dtype=np.float64)
    textual = (
        np.isnan(values) & (raw != "").to_numpy() & ~raw.str.lower().isin(["na", "nan", "null", "none"]).to_numpy()
    )
    return values, textual


@dataclass
class RatingsInspection:
    """Every row of a ratings CSV with what is wrong with it (``row_problems[i]``, empty when fine).

    Rows are in CSV order (row ``i`` is line ``i + 2`` of the file); ``paths[i]`` is None when the image
    was not found; ``image_sizes[i]`` is ``(width, height)`` of a decoded image, None when not decoded.
    """

    csv: Path
    images_dir: Path
    dimensions: list[str]
    names: list[str]
    paths: list[Path | None]
    means: np.ndarray  # (N, D) float64, NaN where missing or not a number
    sds: np.ndarray  # (N, D) float64
    row_problems: list[list[str]]
    image_sizes: list[tuple[int, int] | None]

    def where(self, i: int) -> str:
        return f"{self.csv.name} row {i + 2} ({self.names[i] or '<empty>'})"


def inspect_ratings(cfg: DataConfig, dimensions: Sequence[str] | None = None) -> RatingsInspection:
    """Read the ratings CSV and check every row and listed image (the checks of the module docstring).

    Problems with the file as a whole (absent, unparseable, columns, dimension count, no rows, no image
    folder) raise a DataError; row problems are returned. ``dimensions`` (e.g. a checkpoint's) take
    precedence over the config's.
    """
    csv = cfg.csv_path
    images_dir = cfg.images_path
    df = read_ratings_csv(csv)
    if not images_dir.is_dir():
        raise DataError(f"image folder {images_dir} does not exist")

    dims = check_columns(list(df.columns), cfg, csv, dimensions)
    mean_cols = [cfg.mean_column.format(dim=d) for d in dims]
    sd_cols = [cfg.sd_column.format(dim=d) for d in dims]
    if cfg.num_dimensions is not None and dimensions is None and len(dims) != cfg.num_dimensions:
        raise DataError(
            f"ratings CSV {csv}: found {len(dims)} dimensions ({', '.join(dims)}) but data.num_dimensions is "
            f"{cfg.num_dimensions}; set data.dimensions or data.num_dimensions"
        )
    if len(df) == 0:
        raise DataError(f"ratings CSV {csv} has no rows")

    n = len(df)
    row_problems: list[list[str]] = [[] for _ in range(n)]
    names = [s.strip() for s in df[cfg.image_column].tolist()]
    first_row: dict[str, int] = {}
    for i, name in enumerate(names):
        if not name:
            row_problems[i].append(f"empty {cfg.image_column!r}")
        elif name in first_row:
            row_problems[i].append(f"duplicate image name (first in row {first_row[name] + 2})")
            if "image name repeated in a later row" not in row_problems[first_row[name]]:
                row_problems[first_row[name]].append("image name repeated in a later row")
        else:
            first_row[name] = i

    means = np.empty((n, len(dims)))
    sds = np.empty((n, len(dims)))
    for j, (mc, sc) in enumerate(zip(mean_cols, sd_cols)):
        means[:, j], text_m = _numeric(df, mc)
        sds[:, j], text_s = _numeric(df, sc)
        for i in np.flatnonzero(text_m):
            row_problems[i].append(f"non-numeric rating {df[mc].iat[i]!r} in {mc}")
        for i in np.flatnonzero(np.isnan(means[:, j]) & ~text_m):
            row_problems[i].append(f"missing (NaN) rating in {mc}")
        for i in np.flatnonzero(~np.isfinite(means[:, j]) & ~np.isnan(means[:, j])):
            row_problems[i].append(f"infinite rating in {mc}")
        for i in np.flatnonzero(text_s):
            row_problems[i].append(f"non-numeric sd {df[sc].iat[i]!r} in {sc}")
        for i in np.flatnonzero(sds[:, j] < 0):
            row_problems[i].append(f"negative sd in {sc}")

    paths: list[Path | None] = [None] * n
    for i, name in enumerate(names):
        if name:
            paths[i], problem = resolve_image_path(images_dir, name)
            if problem:
                row_problems[i].append(problem)
    sizes: list[tuple[int, int] | None] = [None] * n
    if cfg.check_images == "decode":
        to_check = [i for i in range(n) if paths[i] is not None]
        for i, probe in zip(to_check, probe_images([paths[i] for i in to_check])):  # type: ignore[misc]
            if probe.problem:
                row_problems[i].append(f"{paths[i]}: {probe.problem}")
            else:
                sizes[i] = probe.size
    return RatingsInspection(csv, images_dir, dims, names, paths, means, sds, row_problems, sizes)


def load_ratings(
    cfg: DataConfig,
    policy: BadInputPolicy | None = None,
    dimensions: Sequence[str] | None = None,
) -> RatingsTable:
    """Read and validate the ratings CSV and the image folder of ``cfg`` (``inspect_ratings``).

    Bad rows fail with one DataError listing them all, or with a skipping ``policy`` are dropped and
    counted. ``dimensions`` (for example those a checkpoint was trained on) take precedence over the config's.
    """
    policy = policy or BadInputPolicy()
    found = inspect_ratings(cfg, dimensions)
    csv, n = found.csv, len(found.names)
    bad = [i for i in range(n) if found.row_problems[i]]
    policy.report_all(f"ratings CSV {csv}", [(found.where(i), "; ".join(found.row_problems[i])) for i in bad], n)
    keep = [i for i in range(n) if not found.row_problems[i]]
    if not keep:
        raise DataError(f"ratings CSV {csv}: every row is bad; nothing to use")
    if bad:
        log.warning("ratings CSV %s: skipped %d of %d rows (--skip-bad); %d images remain", csv, len(bad), n, len(keep))
    return RatingsTable(
        source=csv,
        dimensions=found.dimensions,
        names=[found.names[i] for i in keep],
        paths=[found.paths[i] for i in keep],  # type: ignore[misc]
        means=found.means[keep],
        sds=found.sds[keep],
        skipped=[found.names[i] for i in bad if found.names[i]],
    )


# ----- split ---------------------------------------------------------------------------------------


def make_split(
    names: Sequence[str], val_fraction: float = 0.2, seed: int = 42, test_fraction: float = 0.15
) -> dict[str, Any]:
    """A seeded random split by image into train, val (selects the best epoch) and test (reported, never
    seen in training or selection); depends only on the set of names, not on the CSV's row order.

    val is drawn first, so a split with ``test_fraction`` 0 has the val part of earlier versions.
    """
    ordered = sorted(set(names))
    n = len(ordered)
    n_val = max(int(round(n * val_fraction)), 1)
    n_test = max(int(round(n * test_fraction)), 1) if test_fraction > 0 else 0
    if n - n_val - n_test < 1:
        raise DataError(
            f"{n} image(s) cannot be split into train, val ({val_fraction:g}) and test ({test_fraction:g}) parts of at "
            "least one image each; use more images or lower data.val_fraction / data.test_fraction"
        )
    perm = np.random.default_rng(seed).permutation(n)
    val = sorted(ordered[i] for i in perm[:n_val])
    test = sorted(ordered[i] for i in perm[n_val : n_val + n_test])
    train = sorted(ordered[i] for i in perm[n_val + n_test :])
    return {
        "format": SPLIT_FORMAT,
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "train": train,
        "val": val,
        "test": test,
    }


def save_split(split: dict[str, Any], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = dict(split)
    for key in SPLIT_PARTS:
        if key in split:
            data[f"n_{key}"] = len(split[key])
    p.write_text(json.dumps(data, indent=1) + "\n")
    return p


def load_split(path: str | Path) -> dict[str, Any]:
    """Read a split JSON; train, val and (since 0.3) test must be disjoint lists of image names.

    A split without ``test`` comes from an older run: it is returned as it is (see ``has_test``).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"split file {p} does not exist")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"split file {p} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or data.get("format") != SPLIT_FORMAT:
        raise DataError(f'split file {p} is not an image-rating split (expected "format": "{SPLIT_FORMAT}")')
    for key in SPLIT_PARTS:
        if key == "test" and key not in data:
            continue
        if not isinstance(data.get(key), list) or not all(isinstance(x, str) for x in data[key]):
            raise DataError(f"split file {p}: {key!r} must be a list of image names")
    present = [k for k in SPLIT_PARTS if k in data]
    for i, a in enumerate(present):
        for b in present[i + 1 :]:
            both = sorted(set(data[a]) & set(data[b]))
            if both:
                raise DataError(f"split file {p}: {len(both)} image(s) are in both {a} and {b}, e.g. {both[0]}")
    return data


def has_test(split: dict[str, Any]) -> bool:
    """Whether ``split`` holds a held-out test part (runs of image-rating before 0.3 have train and val only)."""
    return bool(split.get("test"))


def apply_split(
    table: RatingsTable, split: dict[str, Any], source: str = "the split"
) -> tuple[RatingsTable, RatingsTable]:
    """The train and val rows of ``table`` (see ``split_part``); table rows in no part are left out with a warning."""
    have = set(table.names)
    unused = len(have.difference(*(split.get(k, []) for k in SPLIT_PARTS)))
    if unused:
        log.warning("%s: %d image(s) of %s are in no part of the split and are not used", source, unused, table.source)
    return split_part(table, split, "train", source), split_part(table, split, "val", source)


def split_part(table: RatingsTable, split: dict[str, Any], key: str, source: str = "the split") -> RatingsTable:
    """The rows of ``table`` in part ``key`` (train, val or test) of ``split``.

    A split name that the table lacks is an error, unless its row was skipped as bad (``--skip-bad``).
    """
    have = set(table.names)
    skipped = set(table.skipped)
    wanted = split.get(key) or []
    unknown = [n for n in wanted if n not in have and n not in skipped]
    if unknown:
        raise DataError(
            f"{source}: {len(unknown)} {key} image(s) are not in {table.source}, e.g. " + ", ".join(unknown[:5])
        )
    dropped = sum(1 for n in wanted if n in skipped)
    if dropped:
        log.warning("%s: %d %s image(s) were skipped as bad rows", source, dropped, key)
    part = table.select([n for n in wanted if n in have])
    if len(part) == 0:
        raise DataError(f"{source}: the {key} part is empty after matching it to {table.source}")
    return part


# ----- dataset -------------------------------------------------------------------------------------


class RatingImageDataset(Dataset):
    """Images with their (standardized) ratings.

    Item ``i`` is ``{"image": (3, H, W) float32, "target": (D,) float32, "index": int}`` (no ``target``
    when ``targets`` is None). The transform runs here, inside ``__getitem__``, so that
    ``SeededDataset`` seeds every random augmentation per sample.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        targets: np.ndarray | None,
        transform: Callable[[Image.Image], torch.Tensor],
        decode_min_size: int | None = None,
    ) -> None:
        if targets is not None and len(targets) != len(paths):
            raise ValueError(f"{len(paths)} images but {len(targets)} target rows")
        self.paths = list(paths)
        self.targets = None if targets is None else torch.as_tensor(np.asarray(targets), dtype=torch.float32)
        self.transform = transform
        self.decode_min_size = decode_min_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = self.transform(open_rgb(self.paths[index], self.decode_min_size))
        item: dict[str, Any] = {"image": image, "index": index}
        if self.targets is not None:
            item["target"] = self.targets[index]
        return item


def list_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files of ``inputs``: ``perception_shared.inputs.expand_inputs`` with the image suffixes.

    Folders give their images (sorted, not recursive), ``.txt``/``.lst`` lists one path per line (relative
    to the list, ``#`` comments), files are taken as named; a missing input or listed file is a DataError.
    """
    return expand_inputs(inputs, IMAGE_EXTENSIONS, what="images")
