"""MIT1003 and CAT2000 from their release layouts, the image split, and the torch dataset.

Files read (``root`` = ``data.mit_root`` or ``data.cat2000_root``):

* MIT1003 images: ``root/ALLSTIMULI/*.jpeg`` (every image is decoded once while indexing).
* MIT1003 fixations, by ``data.fixations``:
  - ``raw``: ``root/DATA/<subject>/<stem>.mat`` for every subject folder that has the file; fixations
    are extracted with ``fixation_extraction.mit1003_fixations`` (the release's ``checkFixations.m``
    ported, first fixation dropped, fixations outside the image discarded as in pysaliency). Each
    subject's scanpath is kept too (``ImageRecord.scanpaths``: ordered, the initial central fixation
    first, as ``fixation_extraction.mit1003_scanpath`` says), for DeepGaze III's scanpath model.
  - ``csv``: ``data.fixations_csv`` with a header and columns ``x,y,image,subject``; ``image`` is the
    file name or stem; coordinates are pixels of the original image (``0 <= x < width``).
  - ``fixlocs``: ``data.fixlocs_dir/<stem>.mat`` (a binary fixation map under ``data.fixlocs_key``) or
    ``<stem>_fixPts.jpg``/``.png`` (MIT's ALLFIXATIONMAPS, thresholded at 128). Every nonzero pixel
    ``(row, col)`` is one fixation at ``(col + 0.5, row + 0.5)``.
* CAT2000 (train set): ``root/Stimuli/<Category>/<NNN>.jpg`` and the binary maps
  ``root/FIXATIONLOCS/<Category>/<NNN>.mat`` under ``data.cat2000_key`` (``fixLocs`` in the release),
  read like ``fixlocs`` above. Subfolders of a category (the release's ``Output``) are ignored.
* Synthetic ground truth, when present: ``root/GROUND_TRUTH/<stem>.npy`` (MIT1003) or
  ``root/GROUND_TRUTH/<Category>/<NNN>.npy`` (CAT2000), an (H, W) density over the original pixels.

Preprocessing: images are resized (PIL bilinear, antialiased) to ``data.image_size`` (CAT2000:
``data.ood_image_size``), or with ``data.aspect: keep`` to their own aspect ratio at that size's longer
side (``keep_aspect_size``), and given to the model as RGB in [0, 1] (the model applies its weights'
normalization); fixation coordinates are scaled exactly by ``new_size / old_size`` per axis.

Bad input (a missing folder is always an error): an unreadable image or .mat file, a .mat without the
expected variable, a fixation outside its image and an image without fixations are reported through
``BadInputPolicy``: an error naming the file, or with ``--skip-bad`` a counted warning and the item left out.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from perception_shared.badinput import BadInputPolicy
from perception_shared.errors import DataError
from perception_shared.logging import get_logger, progress

from .fixation_extraction import BadFileError, load_mat, mit1003_fixations, mit1003_scanpath, read_eye_data

log = get_logger("saliency_entropy.data")


@dataclass
class ImageRecord:
    """One image and its fixations (x, y) in pixels of the original image."""

    name: str  # MIT1003: the stem; CAT2000: '<Category>/<NNN>'
    image_path: Path
    width: int
    height: int
    fixations: np.ndarray  # (N, 2) float64
    category: str | None = None
    ground_truth: Path | None = None  # synthetic data: the density the fixations were drawn from
    subjects: list[str] | None = None  # per fixation, when the source names subjects (raw, csv)
    # raw source: per subject its (K + 1, 2) ordered fixations, the initial (central) one first; the
    # others, in order, are ``fixations``
    scanpaths: list[np.ndarray] | None = None


def _resolve(root: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else root / p


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise DataError(f"{what} folder {path} does not exist")


def image_size(path: Path, policy: BadInputPolicy) -> tuple[int, int] | None:
    """(width, height) of a decodable image, or None after reporting it (decodes the whole file)."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.size
    except Exception as e:  # PIL raises many types for damaged files
        policy.report(path, f"cannot read image ({type(e).__name__}: {e})")
        return None


def binary_map_fixations(fmap: np.ndarray) -> np.ndarray:
    """(N, 2) fixations at the centers of the nonzero pixels of a binary map."""
    rows, cols = np.nonzero(fmap)
    return np.stack([cols + 0.5, rows + 0.5], axis=1).astype(np.float64)


def read_fixation_map(path: Path, key: str, size: tuple[int, int]) -> np.ndarray:
    """Fixations from a binary fixation map (.mat under ``key``, or a _fixPts image); BadFileError if unusable."""
    width, height = size
    if path.suffix.lower() == ".mat":
        mat = load_mat(path)
        if key not in mat:
            found = sorted(k for k in mat if not k.startswith("__"))
            raise BadFileError(path, f"no variable '{key}' (the binary fixation map); found {found}")
        fmap = np.asarray(mat[key])
    else:
        try:
            with Image.open(path) as im:
                fmap = np.asarray(im.convert("L")) >= 128
        except Exception as e:
            raise BadFileError(path, f"cannot read fixation map image ({type(e).__name__}: {e})") from None
    if fmap.shape != (height, width):
        raise BadFileError(path, f"fixation map is {fmap.shape[1]}x{fmap.shape[0]}, the image is {width}x{height}")
    return binary_map_fixations(fmap)


def _mit_images(
    root: Path, policy: BadInputPolicy, names: list[str] | None
) -> tuple[list[tuple[str, Path, int, int]], set[str]]:
    """(stem, path, width, height) of the decodable images (restricted to ``names``), and all stems."""
    stim = root / "ALLSTIMULI"
    _require_dir(stim, "MIT1003 ALLSTIMULI")
    paths = sorted(stim.glob("*.jpeg"))
    if not paths:
        raise DataError(f"MIT1003 ALLSTIMULI folder {stim} holds no .jpeg images")
    stems = {p.stem for p in paths}
    if names is not None:
        wanted = set(names)
        paths = [p for p in paths if p.stem in wanted]
    out = []
    for p in progress(paths, desc="MIT1003 images", leave=False):
        size = image_size(p, policy)
        if size is not None:
            out.append((p.stem, p, size[0], size[1]))
    return out, stems


# per image: (N, 2) fixations, the subject of each (or None), the scanpaths (raw source, or None)
Fixations = dict[str, tuple[np.ndarray, list[str] | None, list[np.ndarray] | None]]


def _raw_fixations(
    root: Path, images: list[tuple[str, Path, int, int]], drop_first: bool, policy: BadInputPolicy
) -> Fixations:
    data_dir = root / "DATA"
    _require_dir(data_dir, "MIT1003 DATA")
    subjects = sorted(p for p in data_dir.iterdir() if p.is_dir())
    if not subjects:
        raise DataError(f"MIT1003 DATA folder {data_dir} has no subject folders")
    out: Fixations = {}
    outside = 0
    for stem, _, width, height in progress(images, desc="extracting fixations", leave=False):
        parts, names, scanpaths = [], [], []
        for subject in subjects:
            mat = subject / f"{stem}.mat"
            if not mat.is_file():
                continue
            try:
                eye = read_eye_data(mat, stem)
            except BadFileError as e:
                policy.report(e.path, e.problem)
                continue
            if drop_first:
                path, n_out = mit1003_scanpath(eye, width, height)
                xy = path[1:]
                if len(path):
                    scanpaths.append(path)
            else:
                xy, n_out = mit1003_fixations(eye, width, height, drop_first=False)
            outside += n_out
            parts.append(xy)
            names += [subject.name] * len(xy)
        out[stem] = (np.concatenate(parts) if parts else np.zeros((0, 2)), names, scanpaths if drop_first else None)
    log.info("MIT1003 raw data: %d subjects; %d fixations outside their image discarded", len(subjects), outside)
    return out


def _csv_fixations(
    path: Path, images: list[tuple[str, Path, int, int]], all_stems: set[str], policy: BadInputPolicy
) -> Fixations:
    if not path.is_file():
        raise DataError(f"fixations CSV {path} does not exist")
    sizes = {stem: (w, h) for stem, _, w, h in images}
    lists: dict[str, list[tuple[float, float]]] = {stem: [] for stem in sizes}
    subjects: dict[str, list[str]] = {stem: [] for stem in sizes}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"x", "y", "image", "subject"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}; expected x,y,image,subject")
        for line, row in enumerate(reader, start=2):
            stem = Path(row["image"]).stem
            if stem not in sizes:
                if stem not in all_stems:
                    policy.report(path, f"line {line}: image {row['image']!r} is not in ALLSTIMULI")
                continue
            try:
                x, y = float(row["x"]), float(row["y"])
            except ValueError:
                policy.report(path, f"line {line}: x={row['x']!r}, y={row['y']!r} are not numbers")
                continue
            w, h = sizes[stem]
            if not (0 <= x < w and 0 <= y < h):
                policy.report(path, f"line {line}: fixation ({x}, {y}) lies outside the {w}x{h} image {row['image']}")
                continue
            lists[stem].append((x, y))
            subjects[stem].append(row["subject"])
    return {stem: (np.asarray(v, dtype=np.float64).reshape(-1, 2), subjects[stem], None) for stem, v in lists.items()}


def _fixlocs_fixations(
    directory: Path, key: str, images: list[tuple[str, Path, int, int]], policy: BadInputPolicy
) -> Fixations:
    _require_dir(directory, "fixation locations")
    out: Fixations = {}
    for stem, _, w, h in images:
        candidates = [directory / f"{stem}.mat", directory / f"{stem}_fixPts.jpg", directory / f"{stem}_fixPts.png"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            out[stem] = (np.zeros((0, 2)), None, None)
            continue
        try:
            out[stem] = (read_fixation_map(found, key, (w, h)), None, None)
        except BadFileError as e:
            policy.report(e.path, e.problem)
    return out


def mit1003_records(
    root: str | Path,
    *,
    fixations: str = "raw",
    fixations_csv: str = "fixations.csv",
    fixlocs_dir: str = "ALLFIXATIONMAPS",
    fixlocs_key: str = "fixLocs",
    drop_first_fixation: bool = True,
    policy: BadInputPolicy | None = None,
    names: list[str] | None = None,
) -> list[ImageRecord]:
    """The MIT1003 images with their fixations (see the module docstring); ``names`` restricts the stems."""
    policy = policy or BadInputPolicy()
    root = Path(root)
    _require_dir(root, "MIT1003")
    images, all_stems = _mit_images(root, policy, names)
    if fixations == "raw":
        fix = _raw_fixations(root, images, drop_first_fixation, policy)
    elif fixations == "csv":
        fix = _csv_fixations(_resolve(root, fixations_csv), images, all_stems, policy)
    elif fixations == "fixlocs":
        fix = _fixlocs_fixations(_resolve(root, fixlocs_dir), fixlocs_key, images, policy)
    else:
        raise DataError(f"unknown MIT1003 fixation source {fixations!r}; use raw, csv or fixlocs")
    records = []
    for stem, path, w, h in images:
        if stem not in fix:
            continue
        xy, subjects, scanpaths = fix[stem]
        if len(xy) == 0:
            policy.report(path, f"image has no fixations (source: {fixations})")
            continue
        gt = root / "GROUND_TRUTH" / f"{stem}.npy"
        records.append(
            ImageRecord(
                stem, path, w, h, xy, ground_truth=gt if gt.is_file() else None, subjects=subjects, scanpaths=scanpaths
            )
        )
    if not records:
        raise DataError(f"no usable MIT1003 images with fixations in {root}")
    return records


def cat2000_names(root: str | Path) -> list[str]:
    """'<Category>/<NNN>' of every image in ``root/Stimuli`` (nothing is decoded)."""
    stimuli = Path(root) / "Stimuli"
    _require_dir(stimuli, "CAT2000 Stimuli")
    names = [
        f"{c.name}/{img.stem}"
        for c in sorted(p for p in stimuli.iterdir() if p.is_dir())
        for img in sorted(c.glob("*.jpg"))
    ]
    if not names:
        raise DataError(f"CAT2000 Stimuli folder {stimuli} holds no <Category>/*.jpg images")
    return names


def cat2000_records(
    root: str | Path, *, key: str = "fixLocs", policy: BadInputPolicy | None = None, names: list[str] | None = None
) -> list[ImageRecord]:
    """The CAT2000 training images with their fixation maps (see the module docstring)."""
    policy = policy or BadInputPolicy()
    root = Path(root)
    stimuli, locs = root / "Stimuli", root / "FIXATIONLOCS"
    _require_dir(stimuli, "CAT2000 Stimuli")
    _require_dir(locs, "CAT2000 FIXATIONLOCS")
    wanted = set(names) if names is not None else None
    records = []
    for category in sorted(p.name for p in stimuli.iterdir() if p.is_dir()):
        for img in sorted((stimuli / category).glob("*.jpg")):
            name = f"{category}/{img.stem}"
            if wanted is not None and name not in wanted:
                continue
            size = image_size(img, policy)
            if size is None:
                continue
            mat = locs / category / f"{img.stem}.mat"
            if not mat.is_file():
                policy.report(img, f"no fixation map {mat}")
                continue
            try:
                xy = read_fixation_map(mat, key, size)
            except BadFileError as e:
                policy.report(e.path, e.problem)
                continue
            if len(xy) == 0:
                policy.report(mat, "fixation map has no fixations")
                continue
            gt = root / "GROUND_TRUTH" / category / f"{img.stem}.npy"
            records.append(ImageRecord(name, img, size[0], size[1], xy, category, gt if gt.is_file() else None))
    if not records:
        raise DataError(f"no usable CAT2000 images with fixation maps in {root}")
    return records


def select_ood(names: list[str], n: int, seed: int) -> list[str]:
    """``n`` CAT2000 names spread over the categories: each category shuffled (seeded), then round-robin."""
    by_cat: dict[str, list[str]] = {}
    for name in sorted(names):
        by_cat.setdefault(name.split("/")[0], []).append(name)
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(v)) for _, v in sorted(by_cat.items())]
    out: list[str] = []
    while len(out) < min(n, len(names)):
        for q in queues:
            if q and len(out) < n:
                out.append(str(q.pop(0)))
    return sorted(out)


# ----- split ---------------------------------------------------------------------------------------


def make_split(names: list[str], val_fraction: float, seed: int) -> dict[str, Any]:
    """A seeded split by image: round(len * val_fraction) validation images (at least one each side)."""
    names = sorted(names)
    if len(names) < 2:
        raise DataError(f"need at least 2 images to split, found {len(names)}")
    n_val = min(max(1, round(len(names) * val_fraction)), len(names) - 1)
    order = np.random.default_rng(seed).permutation(len(names))
    val = sorted(names[i] for i in order[:n_val])
    train = sorted(names[i] for i in order[n_val:])
    return {
        "format": "saliency-entropy-split/1",
        "seed": seed,
        "val_fraction": val_fraction,
        "train": train,
        "val": val,
    }


def save_split(split: dict[str, Any], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(split, indent=1))
    return p


def load_split(path: str | Path, available: list[str]) -> dict[str, Any]:
    """Read a split JSON and check that every image it names is available."""
    p = Path(path)
    try:
        split = json.loads(p.read_text())
    except FileNotFoundError:
        raise DataError(f"split file {p} does not exist") from None
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"split file {p} is not readable JSON: {e}") from None
    if (
        not isinstance(split, dict)
        or not isinstance(split.get("train"), list)
        or not isinstance(split.get("val"), list)
    ):
        raise DataError(f"split file {p} must hold 'train' and 'val' lists of image names")
    missing = sorted((set(split["train"]) | set(split["val"])) - set(available))
    if missing:
        raise DataError(f"split file {p} names {len(missing)} image(s) that are not available, e.g. {missing[0]!r}")
    if set(split["train"]) & set(split["val"]):
        raise DataError(f"split file {p} puts the same image in train and val")
    return split


# ----- torch dataset -------------------------------------------------------------------------------


def load_image(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) float32 RGB in [0, 1], resized to ``size`` = (H, W) with PIL bilinear (antialiased)."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except Exception as e:
        raise DataError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def scale_fixations(fixations: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Scale (N, 2) (x, y) from an image of (width, height) ``from_size`` to (H, W) ``to_size``."""
    width, height = from_size
    out = np.asarray(fixations, dtype=np.float64).copy()
    out[:, 0] *= to_size[1] / width
    out[:, 1] *= to_size[0] / height
    return out


def read_ground_truth(path: Path, height: int, width: int) -> np.ndarray:
    """A synthetic ground-truth density: (height, width), finite, non-negative, summing to 1 (1e-3);
    BadFileError naming the file otherwise."""
    try:
        p = np.load(path, allow_pickle=False).astype(np.float64)
    except Exception as e:  # numpy raises several types for damaged files
        raise BadFileError(path, f"cannot read density ({type(e).__name__}: {e})") from None
    if p.shape != (height, width):
        raise BadFileError(path, f"density is {p.shape[1]}x{p.shape[0]}, the image is {width}x{height}")
    if not np.isfinite(p).all() or (p < 0).any() or abs(p.sum() - 1) > 1e-3:
        raise BadFileError(path, f"not a density: min {p.min():.3g}, sum {p.sum():.6g} (expected >= 0, sum 1)")
    return p


def ground_truth_log_density(record: ImageRecord, size: tuple[int, int]) -> torch.Tensor | None:
    """The synthetic ground-truth log-density on the (H, W) model grid (area resampling), or None."""
    if record.ground_truth is None:
        return None
    try:
        p = torch.from_numpy(read_ground_truth(record.ground_truth, record.height, record.width))
    except BadFileError as e:
        raise DataError(str(e)) from None
    resized = torch.nn.functional.interpolate(p[None, None], size=size, mode="area")[0, 0]
    resized = resized / resized.sum()
    return torch.log(resized.clamp_min(1e-300))


def keep_aspect_size(height: int, width: int, box: tuple[int, int] | list[int], multiple: int) -> tuple[int, int]:
    """(H, W) of an image of ``height`` x ``width`` scaled so that its longer side is ``max(box)``, each
    side rounded to a multiple of ``multiple`` (at least one): the aspect ratio changes by less than
    ``multiple / 2`` pixels per side, where squashing to ``box`` changes it as much as the shapes differ."""
    scale = max(box) / max(height, width)
    return (
        max(multiple, round(height * scale / multiple) * multiple),
        max(multiple, round(width * scale / multiple) * multiple),
    )


class FixationDataset(Dataset):
    """Items: ``{'image': (3, H, W) float32 in [0, 1], 'fixations': (N, 2) float64 (x, y) on the (H, W)
    grid, 'index': int}`` for each record; no augmentation (deterministic items).

    ``aspect='squash'``: every image is resized to ``size``; ``'keep'``: each to ``keep_aspect_size``
    (its own aspect ratio, ``size``'s longer side, sides multiples of ``multiple``).
    """

    def __init__(
        self, records: list[ImageRecord], size: tuple[int, int] | list[int], aspect: str = "squash", multiple: int = 1
    ) -> None:
        if aspect not in ("squash", "keep"):
            raise DataError(f"data.aspect must be squash or keep, got {aspect!r}")
        self.records = records
        self.size = (int(size[0]), int(size[1]))
        self.aspect = aspect
        self.multiple = multiple

    def __len__(self) -> int:
        return len(self.records)

    def image_size(self, index: int) -> tuple[int, int]:
        """(H, W) that record ``index`` is given to the model at."""
        if self.aspect == "squash":
            return self.size
        r = self.records[index]
        return keep_aspect_size(r.height, r.width, self.size, self.multiple)

    def __getitem__(self, index: int) -> dict[str, Any]:
        r = self.records[index]
        size = self.image_size(index)
        fix = scale_fixations(r.fixations, (r.width, r.height), size)
        return {"image": load_image(r.image_path, size), "fixations": torch.from_numpy(fix), "index": index}


def scanpath_histories(scanpaths: list[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Every fixation of the scanpaths after the first (the initial central fixation is history only, as
    DeepGaze III trains) with the ``length`` fixations before it, most recent first, NaN where the
    scanpath has fewer: ((N, 2) targets, (N, length, 2) histories)."""
    targets, histories = [], []
    for path in scanpaths:
        for t in range(1, len(path)):
            previous = path[max(0, t - length) : t][::-1]
            history = np.full((length, 2), np.nan)
            history[: len(previous)] = previous
            targets.append(path[t])
            histories.append(history)
    return np.asarray(targets, dtype=np.float64).reshape(-1, 2), np.asarray(histories, dtype=np.float64).reshape(-1, length, 2)


class ScanpathDataset(FixationDataset):
    """``FixationDataset`` over records with scanpaths (``data.fixations: raw``): the item's fixations are
    the scanpaths' targets (``scanpath_histories``, the same fixations as the record's, in scanpath order)
    and ``history`` (N, ``length``, 2) holds each one's previous fixations on the same grid, NaN-padded."""

    def __init__(
        self, records: list[ImageRecord], size: tuple[int, int] | list[int], length: int, aspect: str = "squash", multiple: int = 1
    ) -> None:
        super().__init__(records, size, aspect, multiple)
        missing = [r.name for r in records if r.scanpaths is None]
        if missing:
            raise DataError(
                f"{len(missing)} image(s) have no scanpaths (e.g. {missing[0]!r}): a scanpath model needs "
                "data.fixations: raw (ordered fixations per subject) with data.drop_first_fixation: true"
            )
        self.length = length

    def __getitem__(self, index: int) -> dict[str, Any]:
        r = self.records[index]
        size = self.image_size(index)
        targets, history = scanpath_histories(r.scanpaths or [], self.length)
        scale = (r.width, r.height)
        return {
            "image": load_image(r.image_path, size),
            "fixations": torch.from_numpy(scale_fixations(targets, scale, size)),
            "history": torch.from_numpy(scale_fixations(history.reshape(-1, 2), scale, size).reshape(history.shape)),
            "index": index,
        }


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack images (a list when their sizes differ, ``aspect: keep``); pad fixations to the batch's
    largest count: ``fixations`` (B, N, 2), ``mask`` (B, N); with scanpaths, ``history`` (B, N, n, 2)
    padded with NaN."""
    n = max(len(b["fixations"]) for b in batch)
    fix = torch.zeros(len(batch), n, 2, dtype=torch.float64)
    mask = torch.zeros(len(batch), n, dtype=torch.bool)
    for i, b in enumerate(batch):
        k = len(b["fixations"])
        fix[i, :k] = b["fixations"]
        mask[i, :k] = True
    images = [b["image"] for b in batch]
    same = all(img.shape == images[0].shape for img in images)
    out = {
        "image": torch.stack(images) if same else images,
        "fixations": fix,
        "mask": mask,
        "index": torch.tensor([b["index"] for b in batch], dtype=torch.long),
    }
    if "history" in batch[0]:
        history = torch.full((len(batch), n, batch[0]["history"].shape[1], 2), float("nan"), dtype=torch.float64)
        for i, b in enumerate(batch):
            history[i, : len(b["history"])] = b["history"]
        out["history"] = history
    return out


def fixation_count(records: list[ImageRecord]) -> int:
    return int(sum(len(r.fixations) for r in records))


def normalized_fixations(records: list[ImageRecord]) -> tuple[np.ndarray, np.ndarray]:
    """All fixations as (x / width, y / height) in [0, 1), and the index of the record of each."""
    xy = [r.fixations / np.array([r.width, r.height], dtype=np.float64) for r in records]
    owner = [np.full(len(r.fixations), i) for i, r in enumerate(records)]
    return np.concatenate(xy), np.concatenate(owner)


def mit1003_fixation_source(
    root: str | Path, fixations: str, fixations_csv: str, fixlocs_dir: str
) -> Path:
    """The file or folder the MIT1003 fixations are read from (``data.fixations``)."""
    root = Path(root)
    if fixations == "raw":
        return root / "DATA"
    if fixations == "csv":
        return _resolve(root, fixations_csv)
    if fixations == "fixlocs":
        return _resolve(root, fixlocs_dir)
    raise DataError(f"unknown MIT1003 fixation source {fixations!r}; use raw, csv or fixlocs")


def training_data_paths(cfg: Any) -> dict[str, Path]:
    """What training reads, for the run manifest (hashed there): the stimuli, the fixation source and
    a given split file. (CAT2000 is read by ``evaluate``, whose output records it.)"""
    d = cfg.data
    out = {
        "mit1003_stimuli": Path(d.mit_root) / "ALLSTIMULI",
        "mit1003_fixations": mit1003_fixation_source(d.mit_root, d.fixations, d.fixations_csv, d.fixlocs_dir),
    }
    if d.split_file:
        out["split_file"] = Path(d.split_file)
    return out
