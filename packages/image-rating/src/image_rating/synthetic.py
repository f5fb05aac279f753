"""Synthetic rating data with known ground truth, in the real on-disk format.

``make_synthetic(out)`` writes

* ``out/images/img_0000.png ...``: procedural RGB images (a background with a vertical light gradient,
  random ellipses and rectangles, achromatic texture, a bright or dark center, partial left-right mirror
  symmetry, blur), each drawn from random image parameters;
* ``out/per_image_Slider_mean_sd_from_wide.csv``: the wide ratings CSV (``image``, then
  ``<Dimension>_mean``, ``<Dimension>_sd`` per dimension) on a 0-100 slider;
* ``out/synthetic_truth.csv``: per image, each dimension's image feature and true score;
* ``out/synthetic_truth.json``: per dimension the feature, the rater noise sd and the achievable r.

Each dimension is a fixed function of the saved pixels (``image_features``). Its true score is
``50 + 15 * z``, with ``z`` the feature standardized over the generated set (population sd), so every
dimension's true scores have sd exactly 15. Each of ``n_raters`` raters rates every image with
independent Gaussian noise of sd ``rater_sd[dim] * noise_scale``; the CSV holds the raters' mean and
sample sd (ddof=1), not clipped to the slider range so the noise stays exactly Gaussian.

A model that recovers the true score perfectly correlates with the observed mean at
``achievable_r = sqrt(var_true / (var_true + rater_sd**2 / n_raters))``, the ceiling for Pearson r
against the CSV's means (``sample_r`` is the same correlation measured on the generated sample).
"""

from __future__ import annotations

import colorsys
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from perception_shared.logging import progress

CSV_NAME = "per_image_Slider_mean_sd_from_wide.csv"
TRUTH_JSON = "synthetic_truth.json"
TRUTH_CSV = "synthetic_truth.csv"
CENTER, SPREAD = 50.0, 15.0  # slider units: true scores are CENTER + SPREAD * z

# Dimension -> (what the feature measures, rater noise sd in slider units at noise_scale 1).
DIMENSIONS: dict[str, tuple[str, float]] = {
    "Brightness": ("mean luma (Rec. 601) in [0, 1]", 8.0),
    "Contrast": ("RMS contrast: standard deviation of luma", 12.0),
    "Colorfulness": ("Hasler-Suesstrunk colorfulness of RGB in [0, 1]", 12.0),
    "Saturation": ("mean HSV saturation (max - min) / max", 15.0),
    "Warmth": ("hue balance: mean R - mean B", 15.0),
    "Greenness": ("hue balance: mean G - (mean R + mean B) / 2", 20.0),
    "EdgeDensity": ("fraction of pixels whose Sobel luma gradient exceeds 0.05 per pixel", 20.0),
    "Symmetry": ("Pearson correlation of luma with its left-right mirror image", 30.0),
    "Texture": ("mean absolute Laplacian of luma (fine detail)", 25.0),
    "Entropy": ("Shannon entropy of the 64-bin luma histogram, bits", 30.0),
    "VerticalBalance": ("mean luma of the top half minus the bottom half", 20.0),
    "CenterFocus": ("mean luma inside the central disc (radius 1/4 side) minus outside", 30.0),
    "Highlights": ("fraction of pixels with luma above 0.85", 40.0),
    "Sharpness": ("mean Sobel luma gradient magnitude per pixel", 60.0),
}
EASY_DIMENSIONS = ("Brightness", "Contrast", "Colorfulness")


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def image_features(image: np.ndarray) -> dict[str, float]:
    """The 14 features of one ``(H, W, 3)`` uint8 RGB image (definitions in ``DIMENSIONS``)."""
    rgb = image.astype(np.float64) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    lum = _luma(rgb)
    h, w = lum.shape
    gx = ndimage.sobel(lum, axis=1, mode="reflect") / 8.0  # a unit step gives a gradient of 0.5
    gy = ndimage.sobel(lum, axis=0, mode="reflect") / 8.0
    grad = np.hypot(gx, gy)
    rg = r - g
    yb = 0.5 * (r + g) - b
    mx = rgb.max(axis=-1)
    sat = np.where(mx > 0, (mx - rgb.min(axis=-1)) / np.where(mx > 0, mx, 1.0), 0.0)
    mirror = lum[:, ::-1]
    lc, mc = lum - lum.mean(), mirror - mirror.mean()
    denom = math.sqrt(float((lc**2).sum() * (mc**2).sum()))
    hist = np.histogram(lum, bins=64, range=(0.0, 1.0))[0] / lum.size
    nz = hist[hist > 0]
    yy, xx = np.mgrid[0:h, 0:w]
    disc = (yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2 <= (min(h, w) / 4) ** 2
    return {
        "Brightness": float(lum.mean()),
        "Contrast": float(lum.std()),
        "Colorfulness": float(math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean())),
        "Saturation": float(sat.mean()),
        "Warmth": float(r.mean() - b.mean()),
        "Greenness": float(g.mean() - 0.5 * (r.mean() + b.mean())),
        "EdgeDensity": float((grad > 0.05).mean()),
        "Symmetry": float((lc * mc).sum() / denom) if denom > 0 else 1.0,
        "Texture": float(np.abs(ndimage.laplace(lum, mode="reflect")).mean()),
        "Entropy": float(-(nz * np.log2(nz)).sum()),
        "VerticalBalance": float(lum[: h // 2].mean() - lum[h - h // 2 :].mean()),
        "CenterFocus": float(lum[disc].mean() - lum[~disc].mean()),
        "Highlights": float((lum > 0.85).mean()),
        "Sharpness": float(grad.mean()),
    }


def render_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """One procedural ``(size, size, 3)`` uint8 RGB image from random image parameters."""
    s = size / 96.0  # spatial parameters are defined at 96 px and scaled
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    hue, sat, val = rng.random(), rng.uniform(0.0, 1.0), rng.uniform(0.2, 0.8)
    gradient = rng.uniform(-0.35, 0.35)
    base = np.asarray(colorsys.hsv_to_rgb(hue, sat, 1.0))
    img = (val + gradient * (0.5 - yy))[..., None] * base  # HSV value scales RGB linearly
    contrast, hue_spread = rng.uniform(0.0, 0.45), rng.uniform(0.0, 0.3)
    for _ in range(int(rng.integers(0, 13))):
        cx, cy = rng.random(2)
        rx, ry = rng.uniform(0.05, 0.25, 2)
        if rng.random() < 0.5:
            mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
        else:
            mask = (np.abs(xx - cx) <= rx) & (np.abs(yy - cy) <= ry)
        v = float(np.clip(val + contrast * rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0), 0.0, 1.0))
        color = colorsys.hsv_to_rgb(
            (hue + rng.normal(0.0, hue_spread)) % 1.0, float(np.clip(sat * rng.uniform(0.5, 1.3), 0, 1)), v
        )
        img[mask] = color
    texture = ndimage.gaussian_filter(rng.normal(size=(size, size)), rng.choice([0.6, 1.2, 2.5]) * s)
    img = img + rng.uniform(0.0, 0.2) * (texture / (texture.std() + 1e-12))[..., None]
    blob = np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / (2 * 0.15**2))
    img = img + rng.uniform(-0.25, 0.25) * blob[..., None]
    mirror_weight = rng.uniform(0.0, 1.0)
    img = (1 - mirror_weight) * img + mirror_weight * 0.5 * (img + img[:, ::-1])
    img = ndimage.gaussian_filter(img, (rng.uniform(0.0, 1.5) * s,) * 2 + (0.0,))
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


def achievable_r(true_sd: float, rater_sd: float, n_raters: int) -> float:
    """Pearson r between true scores and the mean of ``n_raters`` noisy ratings (its population value)."""
    return math.sqrt(true_sd**2 / (true_sd**2 + rater_sd**2 / n_raters))


@dataclass(frozen=True)
class SyntheticData:
    root: Path
    csv: Path
    images_dir: Path
    truth_json: Path
    truth_csv: Path
    dimensions: list[str]


def make_synthetic(
    out: str | Path,
    *,
    n_images: int = 160,
    size: int = 96,
    n_raters: int = 20,
    noise_scale: float = 1.0,
    seed: int = 0,
) -> SyntheticData:
    """Write a synthetic data set to ``out`` (see the module docstring); deterministic given ``seed``."""
    if n_images < 4 or size < 16 or n_raters < 2 or noise_scale < 0:
        raise ValueError("make_synthetic needs n_images >= 4, size >= 16, n_raters >= 2 and noise_scale >= 0")
    root = Path(out)
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    dims = list(DIMENSIONS)
    names, feats = [], []
    for i in progress(range(n_images), desc="synthetic images", leave=False):
        img = render_image(rng, size)
        name = f"img_{i:04d}.png"
        Image.fromarray(img).save(images_dir / name)
        names.append(name)
        values = image_features(img)
        feats.append([values[d] for d in dims])
    features = np.asarray(feats)  # (N, D)
    sd = features.std(axis=0)
    z = (features - features.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    true = CENTER + SPREAD * z
    rater_sd = np.asarray([DIMENSIONS[d][1] for d in dims]) * noise_scale
    ratings = true[None] + rng.normal(size=(n_raters, *true.shape)) * rater_sd  # (R, N, D)
    mean, rating_sd = ratings.mean(axis=0), ratings.std(axis=0, ddof=1)

    table = {"image": names}
    for j, d in enumerate(dims):
        table[f"{d}_mean"] = mean[:, j]
        table[f"{d}_sd"] = rating_sd[:, j]
    csv = root / CSV_NAME
    pd.DataFrame(table).to_csv(csv, index=False, float_format="%.6f")
    truth = {"image": names}
    for j, d in enumerate(dims):
        truth[f"{d}_feature"] = features[:, j]
        truth[f"{d}_true"] = true[:, j]
    truth_csv = root / TRUTH_CSV
    pd.DataFrame(truth).to_csv(truth_csv, index=False, float_format="%.8g")

    info = {
        "format": "image-rating-synthetic/1",
        "seed": seed,
        "n_images": n_images,
        "size": size,
        "n_raters": n_raters,
        "noise_scale": noise_scale,
        "rating_scale": {"slider": [0, 100], "center": CENTER, "true_sd": SPREAD},
        "dimensions": {
            d: {
                "feature": DIMENSIONS[d][0],
                "feature_mean": float(features[:, j].mean()),
                "feature_sd": float(sd[j]),
                "rater_sd": float(rater_sd[j]),
                "achievable_r": achievable_r(SPREAD, float(rater_sd[j]), n_raters),
                "sample_r": float(np.corrcoef(true[:, j], mean[:, j])[0, 1]) if rater_sd[j] > 0 else 1.0,
            }
            for j, d in enumerate(dims)
        },
    }
    truth_json = root / TRUTH_JSON
    truth_json.write_text(json.dumps(info, indent=2) + "\n")
    return SyntheticData(root, csv, images_dir, truth_json, truth_csv, dims)
