"""Figures: crops with predicted (red) and true (green) gaze arrows, per-participant errors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from perception_shared.plotting import plt


def gaze_arrow(pitchyaw: np.ndarray, length: float) -> tuple[float, float]:
    """Image-plane (dx right, dy down) of the gaze direction ``-pitchyaw_to_vector``, scaled to ``length`` px."""
    pitch, yaw = float(pitchyaw[0]), float(pitchyaw[1])
    return -length * np.cos(pitch) * np.sin(yaw), -length * np.sin(pitch)


def _draw(ax, image: np.ndarray, pred: np.ndarray, true: np.ndarray | None) -> None:
    h, w = image.shape[:2]
    ax.imshow(image)
    cx, cy, length = w / 2, h / 2, 0.4 * w
    for py, color in ((true, "lime"), (pred, "red")):
        if py is None:
            continue
        dx, dy = gaze_arrow(py, length)
        ax.annotate("", xy=(cx + dx, cy + dy), xytext=(cx, cy), arrowprops={"arrowstyle": "->", "color": color, "lw": 2})
    ax.set_xticks([])
    ax.set_yticks([])


def gaze_figure(
    faces: Sequence[np.ndarray],
    leyes: Sequence[np.ndarray],
    reyes: Sequence[np.ndarray],
    pred: np.ndarray,
    true: np.ndarray | None,
    titles: Sequence[str],
) -> Figure:
    """One column per sample: face, right eye (image left), left eye; arrows from each crop's centre.

    Crops are ``(H, W, 3)`` uint8; ``pred``/``true`` ``(K, 2)`` pitch/yaw radians (``true`` may be None).
    """
    k = len(faces)
    fig, axes = plt.subplots(3, k, figsize=(2.1 * k, 6.0), squeeze=False, gridspec_kw={"height_ratios": [2, 1, 1]})
    for j in range(k):
        t = None if true is None else true[j]
        _draw(axes[0, j], faces[j], pred[j], t)
        _draw(axes[1, j], reyes[j], pred[j], t)
        _draw(axes[2, j], leyes[j], pred[j], t)
        axes[0, j].set_title(titles[j], fontsize=8)
    axes[1, 0].set_ylabel("right eye", fontsize=8)
    axes[2, 0].set_ylabel("left eye", fontsize=8)
    fig.suptitle("gaze: predicted (red), true (green)", fontsize=10)
    fig.tight_layout()
    return fig


def participant_figure(
    per_participant: dict[str, dict[str, float]], baseline_deg: float | None = None, subtitle: str | None = None
) -> Figure:
    """Bar chart of the mean angular error per participant (degrees), with the median as a dot.

    ``subtitle`` (e.g. the weights the model started from) is printed under the chart's title.
    """
    ids = list(per_participant)
    means = [per_participant[p]["mean_deg"] for p in ids]
    medians = [per_participant[p]["median_deg"] for p in ids]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(ids) + 2), 3.5))
    x = np.arange(len(ids))
    ax.bar(x, means, color="tab:blue", label="mean")
    ax.plot(x, medians, "o", color="black", ms=4, label="median")
    if baseline_deg is not None:
        ax.axhline(baseline_deg, color="tab:red", ls="--", lw=1, label="mean predictor")
    ax.set_xticks(x)
    ax.set_xticklabels(ids, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("angular error (deg)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    if subtitle:
        ax.set_title(subtitle, fontsize=7, wrap=True)
    fig.tight_layout()
    return fig


def position_figure(by_position: Sequence[dict[str, float]], overall_deg: float, subtitle: str | None = None) -> Figure:
    """Mean (line) and median (dots) angular error by the number of frames of context a prediction had."""
    ctx = [p["context_frames"] for p in by_position]
    fig, ax = plt.subplots(figsize=(5.0, 3.5))
    ax.plot(ctx, [p["mean_deg"] for p in by_position], "-o", color="tab:blue", ms=4, label="mean")
    ax.plot(ctx, [p["median_deg"] for p in by_position], "o", color="black", ms=3, label="median")
    ax.axhline(overall_deg, color="tab:gray", ls="--", lw=1, label="all frames (mean)")
    ax.set_xlabel("frames seen, this one included (position in the window + 1)")
    ax.set_ylabel("angular error (deg)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if subtitle:
        ax.set_title(subtitle, fontsize=7, wrap=True)
    fig.tight_layout()
    return fig
