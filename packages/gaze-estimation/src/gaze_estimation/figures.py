"""Figures in the shared style: crops with predicted (red) and true (green) gaze arrows, per-participant errors.

Every figure gets a header (``perception_shared.figures.set_header``: what it shows, the run, its status
and the split) and is saved with ``save_figure`` by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from perception_shared.figures import run_status, set_header, set_title, subtitle
from perception_shared.plotting import Series, plt

from .config import TrainConfig, is_random_init
from .metrics import per_sample_errors

# An arrow's length is the gaze's projection into the image: ARROW_FRACTION of the crop's width for a gaze
# ARROW_REF_DEG off the camera's axis (typical gazes are 10-30 deg: a unit-length arrow would be a few
# pixels long), never longer than to the crop's edge.
ARROW_FRACTION = 0.35
ARROW_REF_DEG = 25.0
ARROW_LEGEND = f"arrows: gaze projected into the image, {ARROW_FRACTION:g} x crop width at {ARROW_REF_DEG:g} deg off the camera axis"


# Model selection's columns (the held-out training participants) on the panels of train's loss and error.
HISTORY_SERIES = {
    "val/select_loss": Series("loss", "val"),
    "val/select_angular_error": Series("angular_error", "val"),
    "val/select_angular_error_median": Series("angular_error", "val median"),
    "val/select_mean_predictor_error": Series("angular_error", "val mean predictor"),
}


def run_subtitle(run_name: str, cfg: TrainConfig, data: str) -> str:
    """``run <name> · TOY SETTINGS · RANDOM INIT · <data>`` for a run trained with ``cfg``."""
    return subtitle(run_name, run_status(toy=cfg.purpose == "toy", random_init=is_random_init(cfg)), data)


def history_plot(cfg: TrainConfig) -> dict[str, Any]:
    """How ``training_history.png`` shows a gaze run (``Trainer(history_plot=...)``): model selection on the val
    axes, the mean predictor as a reference line, the run's TOY / RANDOM INIT status."""
    return {
        "title": "Training history (val: held-out training participants, who select best_model.pth; mean and median)",
        "status": run_status(toy=cfg.purpose == "toy", random_init=is_random_init(cfg)),
        "series": HISTORY_SERIES,
        "constants": ["val/select_mean_predictor_error"],
    }


def gaze_arrow(pitchyaw: np.ndarray, length: float) -> tuple[float, float]:
    """Image-plane (dx right, dy down) of the gaze direction ``-pitchyaw_to_vector``, scaled to ``length`` px."""
    pitch, yaw = float(pitchyaw[0]), float(pitchyaw[1])
    return -length * np.cos(pitch) * np.sin(yaw), -length * np.sin(pitch)


def _draw(ax, image: np.ndarray, pred: np.ndarray, true: np.ndarray | None) -> None:
    h, w = image.shape[:2]
    ax.imshow(image)
    cx, cy = w / 2, h / 2
    length = ARROW_FRACTION * w / np.sin(np.radians(ARROW_REF_DEG))
    for py, color in ((true, "lime"), (pred, "red")):
        if py is None:
            continue
        dx, dy = gaze_arrow(py, length)
        shrink = min(1.0, 0.48 * w / max(np.hypot(dx, dy), 1e-9))
        ax.annotate("", xy=(cx + shrink * dx, cy + shrink * dy), xytext=(cx, cy),
                    arrowprops={"arrowstyle": "->", "color": color, "lw": 2})
    ax.axis("off")


def gaze_figure(
    faces: Sequence[np.ndarray],
    leyes: Sequence[np.ndarray],
    reyes: Sequence[np.ndarray],
    pred: np.ndarray,
    true: np.ndarray | None,
    titles: Sequence[str],
    *,
    title: str = "Gaze: predicted (red), true (green)",
    sub: str = "",
) -> Figure:
    """One column per sample: face, right eye (image left), left eye; arrows from each crop's centre.

    Crops are ``(H, W, 3)`` uint8; ``pred``/``true`` ``(K, 2)`` pitch/yaw radians (``true`` may be None).
    Each column's title is ``titles[j]`` and, with ``true``, the sample's angular error; ``sub`` (run,
    status, split) goes under ``title``.
    """
    k = len(faces)
    fig, axes = plt.subplots(
        3, k, figsize=(max(2.1 * k, 6.0), 6.8), squeeze=False, layout="constrained", gridspec_kw={"height_ratios": [2, 1, 1]}
    )
    errors = None if true is None else per_sample_errors(np.asarray(pred, np.float64), np.asarray(true, np.float64))
    for j in range(k):
        t = None if true is None else true[j]
        for row, crop in enumerate((faces[j], reyes[j], leyes[j])):
            _draw(axes[row, j], crop, pred[j], t)
        head = titles[j] if errors is None else f"{titles[j]}\nerror {errors[j]:.1f} deg"
        set_title(axes[0, j], head, fontsize=8)
    for row, name in ((1, "right eye"), (2, "left eye")):
        axes[row, 0].text(-0.06, 0.5, name, transform=axes[row, 0].transAxes, rotation=90, ha="right", va="center", fontsize=8)
    set_header(fig, title, "; ".join(p for p in (sub, ARROW_LEGEND) if p))
    return fig


def participant_figure(
    per_participant: dict[str, dict[str, float]], baseline_deg: float | None = None, *, title: str, sub: str = ""
) -> Figure:
    """Bar chart of the mean angular error per participant (degrees), the median as a dot, the mean
    predictor as a dashed line; the legend sits right of the axes so that it never hides a bar or the line."""
    ids = list(per_participant)
    means = [per_participant[p]["mean_deg"] for p in ids]
    medians = [per_participant[p]["median_deg"] for p in ids]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(ids) + 4), 4.2), layout="constrained")
    x = np.arange(len(ids))
    ax.bar(x, means, color="tab:blue", label="mean")
    ax.plot(x, medians, "o", color="black", ms=4, label="median")
    if baseline_deg is not None:
        ax.axhline(baseline_deg, color="tab:red", ls="--", lw=1, label=f"mean predictor: {baseline_deg:.1f} deg")
    ax.set_xticks(x)
    ax.set_xticklabels(ids, rotation=60, ha="right", fontsize=8)
    ax.set_xlabel("participant")
    ax.set_ylabel("angular error (deg)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    set_header(fig, title, sub)
    return fig


def position_figure(by_position: Sequence[dict[str, float]], overall_deg: float, *, title: str, sub: str = "") -> Figure:
    """Mean (line) and median (dots) angular error by the number of frames of context a prediction had."""
    ctx = [p["context_frames"] for p in by_position]
    fig, ax = plt.subplots(figsize=(6.5, 4.0), layout="constrained")
    ax.plot(ctx, [p["mean_deg"] for p in by_position], "-o", color="tab:blue", ms=4, label="mean")
    ax.plot(ctx, [p["median_deg"] for p in by_position], "o", color="black", ms=3, label="median")
    ax.axhline(overall_deg, color="tab:gray", ls="--", lw=1, label=f"all frames (mean): {overall_deg:.1f} deg")
    ax.set_xlabel("frames seen, this one included (position in the window + 1)")
    ax.set_ylabel("angular error (deg)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    set_header(fig, title, sub)
    return fig
