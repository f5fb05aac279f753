"""Figures and tables: per-horizon curves, predicted vs true frames, and the loss comparison table."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from perception_shared.figures import plt, save_figure, set_header, set_title

from .metrics import REPORT_KEYS

PANELS = (
    ("loc_error_px", "localization error (pixels)"),
    ("hit@1px", "hit rate within 1 pixel"),
    ("hit@2px", "hit rate within 2 pixels"),
    ("f1@best", "F1 at the val-chosen threshold"),
    ("f1@0.5", "F1 at threshold 0.5"),
    ("collapsed_fraction", "collapsed frames (peak/mean < 3)"),
)
# The comparison table: the report order (headline first), the threshold beside the F1 it maximizes.
_LEFT_OUT = ("argmax_hit", "precision@best", "recall@best", "peak_to_mean")
TABLE_COLUMNS = tuple(c for k in REPORT_KEYS if k not in _LEFT_OUT for c in ((k, "threshold_best") if k == "f1@best" else (k,)))


def plot_per_horizon(
    results: Mapping[str, Mapping[str, Any]],
    path: str | Path,
    baselines: Mapping[str, Mapping[str, Any]] | None = None,
    title: str = "Test metrics against the prediction horizon",
    sub: str = "",
) -> Path:
    """One panel per metric against the horizon (1..T): a line per model, with a +-sd band where the rows
    carry ``<metric>_sd`` (means over seeds), and dashed grey lines for the baselines; one legend for all
    panels (a model keeps its colour in every panel)."""
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5), layout="constrained")
    colors = {name: f"C{i}" for i, name in enumerate(results)}
    for ax, (key, label) in zip(axes.flat, PANELS):
        for name, m in results.items():
            rows = m["per_horizon"]
            h = [r["horizon"] for r in rows]
            mean = np.array([_num(r.get(key)) for r in rows])
            ax.plot(h, mean, marker="o", ms=3, color=colors[name], label=name)
            sd = np.array([_num(r.get(f"{key}_sd")) for r in rows])
            if np.isfinite(sd).any():
                ax.fill_between(h, mean - sd, mean + sd, color=colors[name], alpha=0.2, linewidth=0)
        for name, b in (baselines or {}).items():
            rows = b["per_horizon"]
            values = [_num(r.get(key)) for r in rows]
            if not all(np.isnan(values)):
                style = ":" if name == "blank" else "--"
                ax.plot([r["horizon"] for r in rows], values, style, color="grey", label=f"{name} (baseline)")
        set_title(ax, label[:1].upper() + label[1:])
        ax.set_ylabel(label)
        ax.set_xlabel("horizon (frames after the last input)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, labels = [], []
    for ax in axes.flat:  # one legend: every model and baseline once
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 8), fontsize=8)
    set_header(fig, title, sub)
    return save_figure(fig, path)


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


MAP_LABEL = "probability of the point at the pixel (true frames: 1 at the point)"


def plot_prediction_grid(
    panels: Mapping[str, np.ndarray],
    path: str | Path,
    inputs: np.ndarray | None = None,
    title: str = "Predicted against true future frames (cyan square: the true position)",
    sub: str = "",
) -> Path:
    """Predicted vs true frames for a few sequences, as one mosaic image with one colour bar.

    Args:
        panels: ``{row name: (n, T, H, W) maps in [0, 1]}``; the first entry is the truth (one active
            pixel per frame), the others predicted probabilities, on which the true pixel is outlined in cyan.
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
    fig = plt.figure(figsize=(mosaic.shape[1] * scale + 3.0, mosaic.shape[0] * scale + 1.6), layout="constrained")
    ax = fig.add_subplot()
    cmap = plt.get_cmap("magma").with_extremes(bad="white")
    image = ax.imshow(np.ma.masked_invalid(mosaic), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    if outline_x:
        ax.scatter(outline_x, outline_y, s=(72 * scale * 1.6) ** 2, marker="s", facecolors="none", edgecolors="cyan", linewidths=0.6)
    labels = (["last input"] if inputs is not None else []) + [f"+{t + 1}" for t in range(T)]
    ax.set_xticks([c * (W + gap) + W / 2 - 0.5 for c in range(cols)], labels, fontsize=7)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("frame: the last input, then frames ahead (an all-black true frame has no point)", fontsize=8)
    ax.set_yticks([(k * (H + gap)) + H / 2 - 0.5 for k in range(rows)], [f"#{k // len(names)} {names[k % len(names)]}" for k in range(rows)], fontsize=7)
    ax.set_ylabel("test sequence and predictor", fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    bar = fig.colorbar(image, ax=ax, shrink=min(1.0, 6.0 / fig.get_figheight()), aspect=30)
    bar.set_label(MAP_LABEL, fontsize=8)
    set_header(fig, title, sub)
    return save_figure(fig, path, dpi=100)


def plot_prediction_strip(
    last_inputs: np.ndarray, probs: np.ndarray, peaks: np.ndarray, names: Sequence[str], path: str | Path, sub: str = ""
) -> Path:
    """One row per trace: its last input frame, then the predicted maps of the future frames, each divided
    by its own maximum (one shared colour bar), with the predicted position (argmax) circled.

    Args:
        last_inputs: ``(n, H, W)`` last input frame of each trace.
        probs: ``(n, T, H, W)`` predicted probabilities.
        peaks: ``(n, T, 2)`` ``(row, col)`` of each predicted map's maximum.
        names: the traces' names, for the row labels.
    """
    n, T, H, W = probs.shape
    scaled = probs / np.maximum(probs.max(axis=(2, 3), keepdims=True), 1e-6)
    fig, axes = plt.subplots(n, T + 1, figsize=(1.1 * (T + 1) + 2.2, 1.15 * n + 1.4), squeeze=False, layout="constrained")
    image = None
    for i in range(n):
        axes[i, 0].imshow(last_inputs[i], cmap="magma", vmin=0, vmax=1, interpolation="nearest")
        axes[i, 0].set_ylabel(str(names[i]), fontsize=7, rotation=0, ha="right", va="center")
        for t in range(T):
            ax = axes[i, t + 1]
            image = ax.imshow(scaled[i, t], cmap="magma", vmin=0, vmax=1, interpolation="nearest")
            ax.scatter([peaks[i, t, 1]], [peaks[i, t, 0]], s=40, facecolors="none", edgecolors="cyan", linewidths=0.8)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("last input", fontsize=7)
    for t in range(T):
        axes[0, t + 1].set_title(f"+{t + 1}", fontsize=7)
    bar = fig.colorbar(image, ax=axes, shrink=0.9, aspect=25)
    bar.set_label("p / frame's max", fontsize=7)
    fig.supxlabel(
        "frame: the last input (1 at the point), then frames ahead: predicted probability p divided by its "
        "frame's maximum; cyan circle: predicted position",
        fontsize=7,
        wrap=True,
    )
    fig.supylabel("trace", fontsize=8)
    set_header(fig, "Predicted future frames of each trace", sub)
    return save_figure(fig, path)


def comparison_rows(summary: Mapping[str, Mapping[str, Any]], baselines: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per predictor: each loss's overall mean and sd over seeds (``<metric>``, ``<metric>_sd``),
    then the baselines (deterministic: no sd)."""
    rows = []
    for name, m in summary.items():
        row: dict[str, Any] = {"predictor": name, "kind": "loss", "n_seeds": m["n_seeds"]}
        for k in TABLE_COLUMNS:
            row[k], row[f"{k}_sd"] = m["overall"].get(k), m["overall"].get(f"{k}_sd")
        rows.append(row)
    for name, b in baselines.items():
        row = {"predictor": name, "kind": "baseline", "n_seeds": None}
        for k in TABLE_COLUMNS:
            row[k], row[f"{k}_sd"] = b["overall"].get(k), None
        rows.append(row)
    return rows


def _cell(value: Any, sd: Any) -> str:
    if value is None:
        return "–"
    return f"{float(value):.3f}" if sd is None else f"{float(value):.3f} ± {float(sd):.3f}"


def write_comparison(
    rows: Sequence[Mapping[str, Any]], md_path: str | Path, csv_path: str | Path, title: str = "", notes: Sequence[str] = ()
) -> tuple[Path, Path]:
    """The comparison table as CSV (full precision; ``<metric>`` and ``<metric>_sd`` columns, empty when
    undefined) and Markdown (``mean ± sd``, 3 decimals) with ``notes`` under the title."""
    columns = ["predictor", "kind", "n_seeds"] + [c for k in TABLE_COLUMNS for c in (k, f"{k}_sd")]
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
    lines = [f"# {title}", ""] if title else []
    lines += [f"- {n}" for n in notes] + ([""] if notes else [])
    lines.append("| predictor | kind | " + " | ".join(TABLE_COLUMNS) + " |")
    lines.append("|" + "|".join(["---"] * 2 + ["---:"] * len(TABLE_COLUMNS)) + "|")
    for r in rows:
        cells = [str(r["predictor"]), str(r["kind"])] + [_cell(r.get(c), r.get(f"{c}_sd")) for c in TABLE_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    Path(md_path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(md_path), Path(csv_path)
