"""The package's figure pieces in the shared style (``perception_shared.figures``): a stimulus with its
fixations, a density map with a colour bar in its units, and the status words of a run.

Densities are drawn as probabilities (``exp`` of the log-density) from 0, so that two maps on one colour
scale compare; the colour bar names the cell the probability belongs to (a pixel, or a saliency-grid cell
of ``model.saliency_map_factor`` x ``model.saliency_map_factor`` pixels).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from perception_shared.figures import Quantity, run_status, set_title

DENSITY_CMAP = "magma"
# the package's history columns beyond the shared table (perception_shared.figures.QUANTITIES)
LABELS = {"bias_entropy_bits": Quantity("bias-map entropy", "bits")}
PER_PIXEL = "probability per pixel"


def per_cell(factor: int) -> str:
    """The colour-bar label of a density on the saliency grid of ``factor`` x ``factor``-pixel cells."""
    return PER_PIXEL if factor == 1 else f"probability per {factor}x{factor}-pixel cell"


def status_of(toy: bool, weights: dict[str, Any]) -> str:
    """TOY SETTINGS / RANDOM INIT for a run's config ``toy`` and its weights record."""
    return run_status(toy=toy, random_init=not weights.get("pretrained"))


def show_stimulus(ax: Axes, image: np.ndarray, title: str, fixations: np.ndarray | None = None) -> None:
    """An (H, W, 3) image with its (N, 2) fixations (x, y in pixels, pixel centres at +0.5) in cyan."""
    ax.imshow(image)
    if fixations is not None and len(fixations):
        ax.scatter(fixations[:, 0] - 0.5, fixations[:, 1] - 0.5, s=6, c="cyan", edgecolors="k", linewidths=0.3)
    ax.axis("off")
    set_title(ax, title, fontsize=8)


def show_density(
    fig: Figure,
    ax: Axes,
    log_density: np.ndarray,
    title: str,
    label: str,
    *,
    extent: tuple[float, float, float, float] | None = None,
    vmax: float | None = None,
    colorbar: bool = True,
    alpha: float | None = None,
) -> AxesImage:
    """A log-density drawn as probability on ``[0, vmax]`` (default: its peak), with a colour bar named
    ``label`` unless ``colorbar`` is False (a map that shares another map's colour bar: same ``vmax``)."""
    p = np.exp(log_density)
    im = ax.imshow(p, cmap=DENSITY_CMAP, vmin=0, vmax=float(p.max()) if vmax is None else vmax, extent=extent, alpha=alpha)
    ax.axis("off")
    set_title(ax, title, fontsize=8)
    if colorbar:
        bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        bar.set_label(label, fontsize=8)
        bar.ax.tick_params(labelsize=7)
    return im
