"""Figures and tables: per-horizon curves, predicted vs true frames, and the loss comparison table."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from perception_shared.plotting import plt  # headless matplotlib, configured once in perception_shared

PANELS = (
    ("f1@0.5", "F1 at threshold 0.5"),
    ("f1@best", "F1 at the val-chosen threshold"),
    ("ap", "average precision"),
    ("loc_error_px", "localization error (pixels)"),
)
TABLE_COLUMNS = (
    "f1@0.5",
    "precision@0.5",
    "recall@0.5",
    "f1@best",
    "threshold_best",
    "ap",
    "loc_error_px",
    "argmax_hit",
    "predicted_mass",
)


def plot_per_horizon(
    results: Mapping[str, Mapping[str, Any]], path: str | Path, baselines: Mapping[str, Mapping[str, Any]] | None = None
) -> Path:
    """One panel per metric against the horizon (1..T); a line per model, dashed grey lines for baselines."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (key, title) in zip(axes.flat, PANELS):
        for name, m in results.items():
            rows = m["per_horizon"]
            ax.plot([r["horizon"] for r in rows], [_num(r.get(key)) for r in rows], marker="o", ms=3, label=name)
        for name, b in (baselines or {}).items():
            rows = b["per_horizon"]
            values = [_num(r.get(key)) for r in rows]
            if not all(np.isnan(values)):
                style = ":" if name == "blank" else "--"
                ax.plot([r["horizon"] for r in rows], values, style, color="grey", label=f"{name} (baseline)")
        ax.set_title(title)
        ax.set_xlabel("horizon (frames after the last input)")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p, dpi=100)
    plt.close(fig)
    return p


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def plot_prediction_grid(panels: Mapping[str, np.ndarray], path: str | Path, inputs: np.ndarray | None = None) -> Path:
    """Predicted vs true frames for a few sequences, as one mosaic image.

    Args:
        panels: ``{row name: (n, T, H, W) maps in [0, 1]}``; the first entry is the truth (one active
            pixel per frame), the others predictions, on which the true pixel is outlined in cyan.
        inputs: optional ``(n, H, W)`` last input frame, shown in a first column.
    """
    names = list(panels)
    truth = panels[names[0]]
    n, T, H, W = truth.shape
    offset = 1 if inputs is not None else 0
    cols, rows, gap = T + offset, n * len(names), 2
    mosaic = np.full((rows * (H + gap) - gap, cols * (W + gap) - gap), np.nan)  # NaN gaps are drawn white
    outline_x, outline_y = [], []
    for i in range(n):
        for j, name in enumerate(names):
            r = (i * len(names) + j) * (H + gap)
            if inputs is not None and j == 0:
                mosaic[r : r + H, :W] = inputs[i]
            for t in range(T):
                c = (t + offset) * (W + gap)
                mosaic[r : r + H, c : c + W] = panels[name][i, t]
                if j > 0 and truth[i, t].max() > 0:
                    row, col = np.unravel_index(np.argmax(truth[i, t]), (H, W))
                    outline_x.append(c + col)
                    outline_y.append(r + row)
    scale = 0.04  # inches per frame pixel: 4 screen pixels per frame pixel at 100 dpi, so dots stay crisp
    width, height = mosaic.shape[1] * scale + 1.4, mosaic.shape[0] * scale + 0.4
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((1.3 / width, 0.1 / height, 1 - 1.4 / width, 1 - 0.4 / height))
    cmap = plt.get_cmap("magma").with_extremes(bad="white")
    ax.imshow(np.ma.masked_invalid(mosaic), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    if outline_x:
        ax.scatter(outline_x, outline_y, s=(72 * scale * 1.6) ** 2, marker="s", facecolors="none", edgecolors="cyan", linewidths=0.6)
    labels = (["last input"] if inputs is not None else []) + [f"+{t + 1}" for t in range(T)]
    ax.set_xticks([c * (W + gap) + W / 2 - 0.5 for c in range(cols)], labels, fontsize=7)
    ax.xaxis.tick_top()
    ax.set_yticks([(k * (H + gap)) + H / 2 - 0.5 for k in range(rows)], [f"#{k // len(names)} {names[k % len(names)]}" for k in range(rows)], fontsize=7)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    p = Path(path)
    fig.savefig(p, dpi=100)
    plt.close(fig)
    return p


def comparison_rows(results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per predictor: the overall metrics of each loss, then the baselines of the first result."""
    rows = []
    for name, m in results.items():
        row = {"predictor": name, "kind": "loss"}
        row.update({k: m["overall"].get(k) for k in TABLE_COLUMNS if k != "threshold_best"})
        row["threshold_best"] = m.get("threshold_best")
        rows.append(row)
    if results:
        first = next(iter(results.values()))
        for name, b in first.get("baselines", {}).items():
            row = {"predictor": name, "kind": "baseline"}
            row.update({k: b["overall"].get(k) for k in TABLE_COLUMNS if k != "threshold_best"})
            row["threshold_best"] = None
            rows.append(row)
    return rows


def write_comparison(rows: Sequence[Mapping[str, Any]], md_path: str | Path, csv_path: str | Path, title: str = "") -> tuple[Path, Path]:
    """The comparison table as CSV (full precision, empty for undefined) and Markdown (3 decimals)."""
    columns = ["predictor", "kind", *TABLE_COLUMNS]
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
    lines = [f"# {title}", ""] if title else []
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join(["---"] * 2 + ["---:"] * len(TABLE_COLUMNS)) + "|")
    for r in rows:
        cells = [str(r["predictor"]), str(r["kind"])]
        cells += ["–" if r.get(c) is None else f"{float(r[c]):.3f}" for c in TABLE_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    Path(md_path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(md_path), Path(csv_path)
