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

from perception_shared.cli import resolve_run
from perception_shared.distributed import init_distributed
from perception_shared.errors import DataError
from perception_shared.inputs import expand_inputs
from perception_shared.logging import get_logger, progress
from perception_shared.plotting import plt

from .data import keep_aspect_size, load_image
from .evaluate import describe_weights, load_run_model, weights_record
from .models import SaliencyModel

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


def _overlay(image: np.ndarray, log_density: np.ndarray, title: str, path: Path) -> None:
    h, w = log_density.shape
    fig, ax = plt.subplots(figsize=(6, 6 * h / w + 0.4))
    ax.imshow(image)
    density = np.exp(log_density)
    ax.imshow(density / density.max(), cmap="inferno", alpha=0.55, extent=(0, w, h, 0))
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@torch.no_grad()
def predict_images(
    run: str | Path,
    inputs: list[str | Path],
    out_dir: str | Path,
    *,
    device: str = "auto",
    batch_size: int | None = None,
) -> list[Prediction]:
    """Predict every image in ``inputs`` with the run ``run`` (directory or checkpoint) into ``out_dir``."""
    ref = resolve_run(run)
    ctx = init_distributed(device)
    model, cfg, state = load_run_model(ref.checkpoint, ctx.device)
    weights = describe_weights(weights_record(state, cfg))
    files = expand_inputs(inputs, IMAGE_SUFFIXES, what="images")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    box = (cfg.data.image_size[0], cfg.data.image_size[1])
    factor = cfg.model.saliency_map_factor
    step = batch_size or cfg.data.eval_batch_size
    results: list[Prediction] = []
    for start in progress(range(0, len(files), step), desc="predict", leave=False):
        chunk = files[start : start + step]
        sizes = [_original_size(f) for f in chunk]
        model_sizes = [keep_aspect_size(h, w, box, factor) for w, h in sizes]
        images = [load_image(f, s).to(ctx.device) for f, s in zip(chunk, model_sizes)]
        logps, _ = model(images)
        for f, (w, h), ms, image, lp in zip(chunk, sizes, model_sizes, images, logps):
            results.append(_write(model, f, w, h, ms, image, lp, out, weights))
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
    model: SaliencyModel,
    path: Path,
    width: int,
    height: int,
    model_size: tuple[int, int],
    image: torch.Tensor,
    log_probs: torch.Tensor,
    out: Path,
    weights: str,
) -> Prediction:
    full = to_image_grid(model.full_resolution(log_probs).cpu(), height, width)
    npy, png = out / f"{path.stem}_log_density.npy", out / f"{path.stem}_saliency.png"
    np.save(npy, full.float().numpy())
    original = np.asarray(Image.open(path).convert("RGB"))
    entropy = float(-(full.exp() * full).sum())
    row, col = divmod(int(full.argmax()), width)
    _overlay(
        original,
        full.numpy(),
        f"{path.name}: entropy {entropy:.3f} nats of max {math.log(width * height):.3f}; {weights}",
        png,
    )
    return Prediction(path, width, height, model_size, npy, png, entropy, (col, row))


def _write_table(results: list[Prediction], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "width", "height", "model_height", "model_width", "log_density", "overlay", "entropy_nats", "peak_x", "peak_y"])
        for r in results:
            w.writerow([r.image, r.width, r.height, *r.model_size, r.log_density.name, r.overlay.name, f"{r.entropy_nats:.6f}", *r.peak_xy])
