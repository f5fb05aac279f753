"""``predict``: a trained run's saliency for any images, at any size and aspect ratio.

Each image is given to the model at its own aspect ratio, scaled so that its longer side is the longer
side of the run's ``data.image_size`` (the scale the model was trained at; sides rounded to multiples of
``model.saliency_map_factor``), with the run's center prior rescaled to that grid as the center bias.
The model's density is then resampled to the image's own pixel grid (bilinear on the probability per
pixel, renormalized), so the output belongs to the input image as it is:

* ``<stem>_log_density.npy``: (H, W) float32 log-density over the input image's pixels, nats;
  ``exp`` sums to 1 (row = y, column = x, as the image);
* ``<stem>_saliency.png``: the image with the density as a heat map on top;
* ``predictions.csv``: per image the file, its size, the size the model saw, the output files, the
  density's entropy (nats) and its peak (x, y).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import zoom
from scipy.special import logsumexp

from perception_shared.cli import resolve_run
from perception_shared.distributed import init_distributed
from perception_shared.errors import DataError
from perception_shared.figures import plt, save_figure, set_header, subtitle
from perception_shared.inputs import expand_inputs
from perception_shared.logging import get_logger, progress

from .data import keep_aspect_size, load_image
from .evaluate import load_run_model, weights_record
from .figures import PER_PIXEL, show_density, status_of

log = get_logger("saliency_entropy.predict")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Prediction:
    image: Path
    width: int
    height: int
    model_size: tuple[int, int]
    log_density: Path
    overlay: Path
    entropy_nats: float
    peak_xy: tuple[int, int]


def to_image_grid(log_density: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """An (h, w) log-density over pixels resampled to (height, width): bilinear on the probability per
    pixel, renormalized to sum to 1 (float64)."""
    p = log_density.double().exp()[None, None]
    if tuple(p.shape[-2:]) != (height, width):
        p = F.interpolate(p, size=(height, width), mode="bilinear", align_corners=False)
    p = p[0, 0].clamp_min(0)
    return p.log() - p.sum().log()


def _overlay(image: np.ndarray, log_density: np.ndarray, title: str, sub: str, path: Path) -> None:
    h, w = log_density.shape
    fig, ax = plt.subplots(figsize=(6.4, 6 * h / w + 1.2), layout="constrained")
    ax.imshow(image)
    show_density(fig, ax, log_density, "", PER_PIXEL, extent=(0, w, h, 0), alpha=0.55)
    set_header(fig, title, sub)
    save_figure(fig, path)


def read_centerbias(path: str | Path) -> np.ndarray:
    """A center-bias template: a 2-D array of finite log-densities (.npy, e.g. DeepGaze's
    ``centerbias_mit1003.npy``, 1024 x 1024)."""
    try:
        template = np.load(path, allow_pickle=False)
    except Exception as e:  # numpy raises several types for damaged or foreign files
        raise DataError(f"--centerbias {path}: cannot read a .npy array ({type(e).__name__}: {e})") from None
    if template.ndim != 2 or not np.isfinite(template).all():
        raise DataError(f"--centerbias {path}: expected a 2-D array of finite log-densities, got shape {template.shape}")
    return template.astype(np.float64)


def centerbias_for(template: np.ndarray, height: int, width: int) -> torch.Tensor:
    """The template resized to (height, width) with nearest interpolation and renormalized, as DeepGaze's
    README does (``scipy.ndimage.zoom(order=0, mode='nearest')``, minus its ``logsumexp``)."""
    resized = zoom(template, (height / template.shape[0], width / template.shape[1]), order=0, mode="nearest")
    if resized.shape != (height, width):
        raise DataError(f"--centerbias: the template cannot be resized to {height}x{width} (got {resized.shape})")
    return torch.from_numpy(resized - logsumexp(resized)).float()


def read_fixation_histories(path: str | Path, files: list[Path]) -> dict[Path, np.ndarray]:
    """``image,x,y`` rows (previous fixations in image pixels, most recent last) by image; ``image`` names a
    file as on the command line (or its path as expanded from a folder, or its file name)."""
    names: dict[str, Path] = {}
    for f in files:
        names.setdefault(str(f), f)
        names.setdefault(f.name, f)
    rows: dict[Path, list[tuple[float, float]]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"image", "x", "y"} <= set(reader.fieldnames):
                raise DataError(f"--fixations {path}: expected the columns image,x,y; got {reader.fieldnames}")
            for line, row in enumerate(reader, start=2):
                if row["image"] not in names:
                    raise DataError(f"--fixations {path} line {line}: image {row['image']!r} is not one of the inputs")
                try:
                    xy = (float(row["x"]), float(row["y"]))
                except ValueError:
                    raise DataError(f"--fixations {path} line {line}: x, y must be numbers, got {row['x']!r}, {row['y']!r}") from None
                if not all(math.isfinite(v) for v in xy):
                    raise DataError(f"--fixations {path} line {line}: x, y must be finite, got {xy}")
                rows.setdefault(names[row["image"]], []).append(xy)
    except OSError as e:
        raise DataError(f"--fixations {path}: cannot read ({e})") from None
    return {f: np.asarray(v, dtype=np.float64) for f, v in rows.items()}


@torch.no_grad()
def predict_images(
    run: str | Path,
    inputs: list[str | Path],
    out_dir: str | Path,
    *,
    device: str = "auto",
    centerbias: str | Path | None = None,
    fixations: str | Path | None = None,
    scale: str = "run",
) -> list[Prediction]:
    """Predict every image in ``inputs`` with the run ``run`` (directory or checkpoint) into ``out_dir``.

    ``scale``: ``run`` (the run's training scale, above) or ``native`` (the image as given). ``centerbias``:
    a .npy log-density template (``centerbias_for``) instead of the run's center prior. ``fixations``: a
    CSV of previous fixations per image (``read_fixation_histories``) for scanpath models; images without
    rows get one central fixation."""
    if scale not in ("run", "native"):
        raise DataError(f"--scale must be 'run' or 'native', got {scale!r}")
    ref = resolve_run(run)
    ctx = init_distributed(device)
    model, cfg, state = load_run_model(ref.checkpoint, ctx.device)
    weights = weights_record(state, cfg)
    sub = subtitle(ref.run_dir.name, status_of(cfg.toy, weights), f"backbone {weights.get('identifier')}")
    files = expand_inputs(inputs, IMAGE_SUFFIXES, what="images")
    template = read_centerbias(centerbias) if centerbias is not None else None
    histories = read_fixation_histories(fixations, files) if fixations is not None else {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    box = (cfg.data.image_size[0], cfg.data.image_size[1])
    results: list[Prediction] = []
    for f in progress(files, desc="predict", leave=False):
        w, h = _original_size(f)
        ms = (h, w) if scale == "native" else keep_aspect_size(h, w, box, cfg.model.saliency_map_factor)
        image = load_image(f, ms).to(ctx.device)
        cb = centerbias_for(template, *ms).to(ctx.device) if template is not None else None
        history = None
        if f in histories:
            history = torch.from_numpy(histories[f] * np.array([ms[1] / w, ms[0] / h])).to(ctx.device)
        try:
            full = model.predict_log_density(image, cb, history)
        except ValueError as e:  # sides the variant cannot take at --scale native
            raise DataError(f"{f}: {e}") from None
        results.append(_write(f, w, h, ms, full.cpu(), out, sub))
    _write_table(results, out / "predictions.csv")
    log.info("predicted %d image(s) into %s", len(results), out)
    return results


def _original_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as e:  # PIL raises many types for damaged files
        raise DataError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None


def _write(
    path: Path,
    width: int,
    height: int,
    model_size: tuple[int, int],
    log_density: torch.Tensor,
    out: Path,
    sub: str,
) -> Prediction:
    full = to_image_grid(log_density, height, width)
    npy, png = out / f"{path.stem}_log_density.npy", out / f"{path.stem}_saliency.png"
    np.save(npy, full.float().numpy())
    original = np.asarray(Image.open(path).convert("RGB"))
    entropy = float(-(full.exp() * full).sum())
    row, col = divmod(int(full.argmax()), width)
    _overlay(
        original,
        full.numpy(),
        f"{path.name} ({width}x{height}, model saw {model_size[1]}x{model_size[0]}): predicted fixation density, "
        f"entropy {entropy:.3f} nats of at most {math.log(width * height):.3f}",
        sub,
        png,
    )
    return Prediction(path, width, height, model_size, npy, png, entropy, (col, row))


def _write_table(results: list[Prediction], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "width", "height", "model_height", "model_width", "log_density", "overlay", "entropy_nats", "peak_x", "peak_y"])
        for r in results:
            w.writerow([r.image, r.width, r.height, *r.model_size, r.log_density.name, r.overlay.name, f"{r.entropy_nats:.6f}", *r.peak_xy])
