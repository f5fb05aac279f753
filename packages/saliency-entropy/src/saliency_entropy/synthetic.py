"""Synthetic MIT1003-like and CAT2000-like data in the real on-disk layouts, with known fixation densities.

``make_synthetic(out)`` writes::

    out/MIT1003/ALLSTIMULI/<stem>.jpeg
    out/MIT1003/DATA/<subject>/<stem>.mat        raw 240 Hz gaze, variable <stem> with DATA(1).eyeData
    out/MIT1003/fixations.csv                     x,y,image,subject: the fixations the gaze was made from
    out/MIT1003/GROUND_TRUTH/<stem>.npy           the fixation density (H, W), sums to 1
    out/CAT2000/Stimuli/<Category>/<NNN>.jpg
    out/CAT2000/FIXATIONLOCS/<Category>/<NNN>.mat binary fixation map under 'fixLocs'
    out/CAT2000/GROUND_TRUTH/<Category>/<NNN>.npy
    out/synthetic.json                            the generating parameters

Images are a smooth gray-brown texture with 1-3 bright coloured disks. Every image's fixation density
is a mixture over its pixels: ``object_weight`` spread over Gaussians on the disks (sigma = 0.6 radius),
``center_weight`` on an anisotropic Gaussian at the image center (sigma = 0.18 of each side), and the
rest uniform. The out-of-domain (CAT2000-like) set has the same content rule but a different aspect
ratio, background and a much weaker center bias, so a model that leans on the center bias loses there.

Fixations are i.i.d. draws from the density (a pixel, then a uniform position inside it). For
MIT1003-like data each subject's draws become a scanpath: a forced central fixation first (dropped when
loading, as for the real data), then the draws, each 150-400 ms long, joined by minimum-jerk saccades
whose duration follows the main sequence (21 ms + 2.2 ms/deg at 34 px/deg), sampled at 240 Hz with 0.3 px
of Gaussian noise. Extraction with ``check_fixations`` recovers the draws, except that draws closer than
about 12 px to the previous one merge with it, as in real recordings.

**Scanpath mode** (``SyntheticSpec.saccades``, ``make-synthetic --scanpaths``): the MIT1003-like images
carry no content (texture only) and each subject's fixations form a Markov chain with a preferred saccade
length: from the forced central start, the next fixation is drawn from ``saccade_density`` of the
previous one (a ring of radius ``distance`` and Gaussian width ``spread`` around it, restricted to the
image and renormalized, mixed with ``uniform_weight`` of the uniform density). That conditional density is
known exactly (``saccade_density``), so the best conditional information gain on any fixations is known;
``GROUND_TRUTH/<stem>.npy`` then holds the marginal density of the (non-initial) fixations
(``saccade_marginal``), the best a spatial model can do, so ``gt_ig`` is the spatial optimum.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat
from scipy.ndimage import gaussian_filter
from scipy.signal import fftconvolve
from scipy.stats import poisson

from perception_shared.errors import ConfigError

from .fixation_extraction import PX_PER_DEG, SAMPLING_RATE, matlab_variable_name

CAT2000_CATEGORIES = ["Action", "Indoor", "Pattern", "Social"]


@dataclass
class DomainSpec:
    """One synthetic domain: image size (width, height), subjects and the density mixture weights."""

    width: int
    height: int
    subjects: int
    fixations_per_subject: int  # mean number of (non-initial) fixations of one subject on one image
    object_weight: float
    center_weight: float
    background: str  # 'warm' or 'cool': a visible domain shift in the textures

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16:
            raise ConfigError(f"synthetic image size must be at least 16x16 pixels, got {self.width}x{self.height}")
        if self.subjects < 1:
            raise ConfigError(f"--subjects must be at least 1, got {self.subjects}")
        if self.fixations_per_subject < 1:
            raise ConfigError(f"fixations per subject must be at least 1, got {self.fixations_per_subject}")
        if not (0 <= self.object_weight and 0 <= self.center_weight and self.object_weight + self.center_weight <= 1):
            raise ConfigError(
                f"object and center weights must be >= 0 and sum to at most 1, got {self.object_weight}, {self.center_weight}"
            )


@dataclass
class SaccadeSpec:
    """The scanpath generator: the next fixation lies at ``distance`` +- ``spread`` pixels (Gaussian in
    the distance) from the previous one, in any direction, with ``uniform_weight`` of the uniform density."""

    distance: float = 32.0
    spread: float = 5.0
    uniform_weight: float = 0.05

    def __post_init__(self) -> None:
        if self.distance <= 0 or self.spread <= 0 or not 0 < self.uniform_weight < 1:
            raise ConfigError(
                f"saccade distance and spread must be > 0 and uniform weight in (0, 1); got {self.distance}, "
                f"{self.spread}, {self.uniform_weight}"
            )


@dataclass
class SyntheticSpec:
    seed: int = 0
    mit_images: int = 24
    cat_per_category: int = 5
    cat_categories: list[str] = field(default_factory=lambda: list(CAT2000_CATEGORIES))
    mit: DomainSpec = field(default_factory=lambda: DomainSpec(256, 192, 6, 8, 0.6, 0.35, "warm"))
    cat: DomainSpec = field(default_factory=lambda: DomainSpec(256, 144, 8, 8, 0.85, 0.05, "cool"))
    saccades: SaccadeSpec | None = None  # scanpath mode for the MIT1003-like set (module docstring)

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"--seed must be >= 0, got {self.seed}")
        if self.mit_images < 1:
            raise ConfigError(f"--mit-images must be at least 1, got {self.mit_images}")
        if self.cat_per_category < 1:
            raise ConfigError(f"--cat-per-category must be at least 1, got {self.cat_per_category}")
        if not self.cat_categories:
            raise ConfigError("the CAT2000-like data set needs at least one category")


def density_map(width: int, height: int, objects: list[tuple[float, float, float]], spec: DomainSpec) -> np.ndarray:
    """The fixation density over pixels (H, W), float64, sums to 1. ``objects``: (x, y, radius) in pixels."""
    ys, xs = np.mgrid[0:height, 0:width] + 0.5  # pixel centers
    obj = np.zeros((height, width))
    for ox, oy, r in objects:
        s = 0.6 * r
        obj += np.exp(-((xs - ox) ** 2 + (ys - oy) ** 2) / (2 * s**2))
    obj /= obj.sum()
    sx, sy = 0.18 * width, 0.18 * height
    center = np.exp(-((xs - width / 2) ** 2) / (2 * sx**2) - ((ys - height / 2) ** 2) / (2 * sy**2))
    center /= center.sum()
    uniform_weight = 1.0 - spec.object_weight - spec.center_weight
    p = spec.object_weight * obj + spec.center_weight * center + uniform_weight / (width * height)
    return p / p.sum()


def _ring(dy: np.ndarray, dx: np.ndarray, spec: SaccadeSpec) -> np.ndarray:
    return np.exp(-((np.hypot(dx, dy) - spec.distance) ** 2) / (2 * spec.spread**2))


def saccade_density(previous: tuple[float, float], height: int, width: int, spec: SaccadeSpec) -> np.ndarray:
    """(H, W) float64 density over pixels (sums to 1) of the fixation after one at ``previous`` = (x, y)
    pixels: the ring around it (distances from pixel centers) renormalized over the image, mixed with
    ``uniform_weight`` of the uniform density."""
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    ring = _ring(ys - previous[1], xs - previous[0], spec)
    return (1 - spec.uniform_weight) * ring / ring.sum() + spec.uniform_weight / (height * width)


def saccade_marginal(height: int, width: int, spec: SaccadeSpec, mean_fixations: float) -> np.ndarray:
    """(H, W) density of a non-initial fixation drawn at random from the scanpaths: the chain's density
    after t saccades from the center (each previous fixation taken at its pixel's center), weighted by how
    often a scanpath has a t-th fixation (``max(1, Poisson(mean_fixations))`` fixations per scanpath)."""
    dy, dx = np.mgrid[-(height - 1) : height, -(width - 1) : width].astype(np.float64)
    kernel = _ring(dy, dx, spec)
    # the ring's mass inside the image around each pixel (its renormalization there)
    inside = fftconvolve(np.ones((height, width)), kernel, mode="valid")
    current = saccade_density((width / 2, height / 2), height, width, spec)
    counts = np.arange(1, 200)
    at_least = poisson.sf(counts - 1, mean_fixations)  # P(N >= t) of N ~ Poisson(m) ...
    at_least[0] = 1.0  # ... and at least one fixation
    total = np.zeros((height, width))
    for weight in at_least[at_least > 1e-9]:
        total += weight * current
        moved = fftconvolve(current / inside, kernel, mode="valid").clip(min=0)
        current = (1 - spec.uniform_weight) * moved / moved.sum() + spec.uniform_weight / (height * width)
    return total / total.sum()


def saccade_scanpath(start: np.ndarray, n: int, spec: SaccadeSpec, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) fixations after ``start``, each drawn from ``saccade_density`` of the one before."""
    out, previous = [], start
    for _ in range(n):
        previous = sample_fixations(saccade_density((previous[0], previous[1]), height, width, spec), 1, rng)[0]
        out.append(previous)
    return np.asarray(out)


def render_image(
    width: int, height: int, objects: list[tuple[float, float, float]], background: str, rng: np.random.Generator
) -> np.ndarray:
    """An (H, W, 3) uint8 image: smooth texture plus bright disks at ``objects``."""
    texture = gaussian_filter(rng.normal(size=(height, width)), sigma=max(width, height) / 24)
    texture = (texture - texture.min()) / (np.ptp(texture) + 1e-12)
    tint = np.array([1.0, 0.85, 0.7]) if background == "warm" else np.array([0.7, 0.85, 1.0])
    img = (40 + 80 * texture)[..., None] * tint[None, None, :]
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    for ox, oy, r in objects:
        color = 255 * np.clip(np.array([1.0, rng.uniform(0.1, 0.9), rng.uniform(0.0, 0.4)])[rng.permutation(3)], 0, 1)
        inside = (xs - ox) ** 2 + (ys - oy) ** 2 <= r**2
        img[inside] = color
    return np.clip(img, 0, 255).astype(np.uint8)


def random_objects(width: int, height: int, rng: np.random.Generator) -> list[tuple[float, float, float]]:
    count = int(rng.integers(1, 4))
    out = []
    for _ in range(count):
        r = float(rng.uniform(0.05, 0.08) * width)
        out.append((float(rng.uniform(r, width - r)), float(rng.uniform(r, height - r)), r))
    return out


def sample_fixations(density: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) continuous (x, y): a pixel drawn from ``density``, then a uniform position inside it."""
    height, width = density.shape
    flat = rng.choice(density.size, size=n, p=density.ravel())
    rows, cols = np.divmod(flat, width)
    return np.stack([cols + rng.random(n), rows + rng.random(n)], axis=1)


def gaze_trace(points: np.ndarray, rng: np.random.Generator, noise_px: float = 0.3) -> np.ndarray:
    """A 240 Hz gaze trace (T, 2) that fixates ``points`` in order (see the module docstring)."""
    samples = []
    current = points[0]
    for i, target in enumerate(points):
        if i:
            amplitude = float(np.hypot(*(target - current)))
            duration_s = (21.0 + 2.2 * amplitude / PX_PER_DEG) / 1000.0
            n = max(2, round(duration_s * SAMPLING_RATE))
            t = np.arange(1, n + 1) / n
            s = 10 * t**3 - 15 * t**4 + 6 * t**5  # minimum-jerk profile
            samples.append(current + s[:, None] * (target - current))
        dwell_ms = rng.uniform(200, 300) if i == 0 else rng.uniform(150, 400)
        count = round(dwell_ms / 1000 * SAMPLING_RATE)
        samples.append(target + rng.normal(0.0, noise_px, size=(count, 2)))
        current = target
    return np.concatenate(samples)


def write_mit_raw_mat(path: Path, stem: str, eye_data: np.ndarray) -> None:
    """One DATA/<subject>/<stem>.mat file in the MIT1003 release's structure."""
    data = np.empty((1, 1), dtype=[("eyeData", object)])
    data[0, 0]["eyeData"] = np.asarray(eye_data, dtype=np.float64)
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {matlab_variable_name(stem): {"DATA": data}}, do_compression=True)


def _save_jpeg(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=95)


def _subject_names(n: int) -> list[str]:
    return [f"s{i:02d}" for i in range(n)]


def write_mit1003(root: Path, spec: SyntheticSpec, rng: np.random.Generator) -> dict[str, int]:
    d = spec.mit
    subjects = _subject_names(d.subjects)
    rows: list[tuple[float, float, str, str]] = []
    saccades = spec.saccades
    marginal = saccade_marginal(d.height, d.width, saccades, d.fixations_per_subject) if saccades else None
    start = np.array([[d.width / 2, d.height / 2]])
    for i in range(spec.mit_images):
        stem = f"synth{i:04d}"
        objects = [] if saccades else random_objects(d.width, d.height, rng)
        _save_jpeg(render_image(d.width, d.height, objects, d.background, rng), root / "ALLSTIMULI" / f"{stem}.jpeg")
        density = marginal if marginal is not None else density_map(d.width, d.height, objects, d)
        (root / "GROUND_TRUTH").mkdir(parents=True, exist_ok=True)
        np.save(root / "GROUND_TRUTH" / f"{stem}.npy", density.astype(np.float32))
        for subject in subjects:
            n = max(1, int(rng.poisson(d.fixations_per_subject)))
            if saccades:
                fix = saccade_scanpath(start[0], n, saccades, d.height, d.width, rng)
            else:
                fix = sample_fixations(density, n, rng)
            write_mit_raw_mat(
                root / "DATA" / subject / f"{stem}.mat", stem, gaze_trace(np.concatenate([start, fix]), rng)
            )
            rows.extend((float(x), float(y), f"{stem}.jpeg", subject) for x, y in fix)
    with open(root / "fixations.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["x", "y", "image", "subject"])
        w.writerows((f"{x:.3f}", f"{y:.3f}", im, s) for x, y, im, s in rows)
    return {"images": spec.mit_images, "subjects": len(subjects), "fixations": len(rows)}


def write_cat2000(root: Path, spec: SyntheticSpec, rng: np.random.Generator) -> dict[str, int]:
    d = spec.cat
    count = 0
    for category in spec.cat_categories:
        for j in range(1, spec.cat_per_category + 1):
            name = f"{j:03d}"
            objects = random_objects(d.width, d.height, rng)
            _save_jpeg(
                render_image(d.width, d.height, objects, d.background, rng), root / "Stimuli" / category / f"{name}.jpg"
            )
            density = density_map(d.width, d.height, objects, d)
            gt = root / "GROUND_TRUTH" / category / f"{name}.npy"
            gt.parent.mkdir(parents=True, exist_ok=True)
            np.save(gt, density.astype(np.float32))
            n = sum(max(1, int(rng.poisson(d.fixations_per_subject))) for _ in range(d.subjects))
            fix = sample_fixations(density, n, rng)
            locs = np.zeros((d.height, d.width), dtype=bool)
            locs[fix[:, 1].astype(int), fix[:, 0].astype(int)] = True
            mat = root / "FIXATIONLOCS" / category / f"{name}.mat"
            mat.parent.mkdir(parents=True, exist_ok=True)
            savemat(mat, {"fixLocs": locs}, do_compression=True)
            count += int(locs.sum())
    return {"images": spec.cat_per_category * len(spec.cat_categories), "fixated_pixels": count}


def make_synthetic(out: str | Path, spec: SyntheticSpec | None = None) -> dict[str, object]:
    """Write both layouts under ``out`` (see the module docstring); returns a summary."""
    spec = spec or SyntheticSpec()
    out = Path(out)
    rng = np.random.default_rng(spec.seed)
    summary = {
        "mit1003": write_mit1003(out / "MIT1003", spec, rng),
        "cat2000": write_cat2000(out / "CAT2000", spec, rng),
        "spec": asdict(spec),
    }
    (out / "synthetic.json").write_text(json.dumps(summary, indent=2))
    return summary
