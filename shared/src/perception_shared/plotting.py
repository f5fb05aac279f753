"""Headless matplotlib (configured in ``figures``) and the plots every run makes: the training history."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .figures import (
    BEST_COLOR,
    REFERENCE_COLOR,
    TRAIN_COLOR,
    VAL_COLOR,
    Quantity,
    plt,
    quantity,
    save_figure,
    set_header,
    set_title,
    subtitle,
)

__all__ = ["plt", "write_history_csv", "plot_history", "history_figure", "Series"]


def write_history_csv(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """One row per epoch; columns are the union of keys (``epoch`` first)."""
    keys: list[str] = []
    for row in history:
        for k in row:
            if k not in keys:
                keys.append(k)
    if "epoch" in keys:
        keys.remove("epoch")
        keys.insert(0, "epoch")
    p = Path(path)
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for row in history:
            w.writerow(row)
    return p


def plot_history(history: Sequence[dict[str, Any]], path: str | Path, title: str = "training history", **style: Any) -> Path:
    """The training curves of a run saved as PNG: ``history_figure(history, title, **style)``, whose
    ``run_name`` defaults to the name of the folder that ``path`` is in (the run directory)."""
    style.setdefault("run_name", Path(path).parent.name)
    return save_figure(history_figure(history, title, **style), path)


@dataclass(frozen=True)
class Series:
    """Where a history column goes: the ``quantity`` (panel) it is drawn in and its legend ``label``."""

    quantity: str
    label: str


def _column_series(key: str, series: Mapping[str, str | Series]) -> Series | None:
    if key in series:
        s = series[key]
        split = key.split("/", 1)[0] if "/" in key else key
        return Series(s, split) if isinstance(s, str) else s
    if "/" not in key:
        return Series(key, "learning rate") if key == "lr" else None
    split, name = key.split("/", 1)
    return Series(name, split) if split in ("train", "val") else None


def _points(history: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in history:
        v = row.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            xs.append(row["epoch"])
            ys.append(float(v))
    return xs, ys


def history_figure(
    history: Sequence[dict[str, Any]],
    title: str = "training history",
    *,
    run_name: str | None = None,
    status: str = "",
    labels: Mapping[str, Quantity] | None = None,
    series: Mapping[str, str | Series] | None = None,
    constants: Sequence[str] = (),
    hide: Sequence[str] = (),
    best_epoch: int | None = None,
) -> Figure:
    """Training curves in the shared figure style.

    Columns ``train/<q>`` and ``val/<q>`` share the panel of quantity ``<q>`` (label and unit from
    ``figures.quantity(q, labels)``; train always blue, val always orange), ``lr`` gets its own panel;
    ``series`` maps other columns to a panel and a legend label
    (``{"val/select_loss": Series("loss", "val (selection)")}``; a plain string keeps the split as label).
    ``constants`` (columns the same in every epoch, e.g. a baseline's error) are dashed reference lines
    with their value in the panel of their quantity, not panels of their own; a column that turns out
    constant without being named there is written under the figure. ``hide`` leaves columns out (one
    quantity logged in several units). ``best_epoch`` (the checkpoint selected) is marked in every panel.
    """
    mapping = dict(series or {})
    drawn: dict[str, list[tuple[str, Series]]] = {}
    refs: dict[str, list[tuple[str, Series]]] = {}
    for row in history:
        for key in row:
            if key in ("epoch", "step", "time_s") or key in hide:
                continue
            s = _column_series(key, mapping)
            if s is None:
                continue
            target = refs if key in constants else drawn
            if key not in [k for k, _ in target.get(s.quantity, [])]:
                target.setdefault(s.quantity, []).append((key, s))
    footnotes: list[str] = []
    for q in list(drawn):
        if q in refs:
            continue
        values = [_points(history, k)[1] for k, _ in drawn[q]]
        if len(history) >= 3 and all(len(v) >= 3 and max(v) == min(v) for v in values):
            qty = quantity(q, labels)
            unit = f" {qty.unit}" if qty.unit else ""
            footnotes += [f"{qty.label if s.label == qty.label else s.label + ' ' + qty.label}: {v[0]:.4g}{unit}"
                          for (_, s), v in zip(drawn.pop(q), values)]
    for q in refs:  # a reference with no curve of its quantity still needs its panel
        drawn.setdefault(q, [])
    order = sorted(drawn, key=lambda q: (q != "loss", q == "lr", quantity(q, labels).label))
    n = max(len(order), 1)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.1 * rows + 1.0), squeeze=False, layout="constrained")
    colors = {"train": TRAIN_COLOR, "val": VAL_COLOR}
    epochs = [row["epoch"] for row in history if "epoch" in row]
    extra_colors = iter(["tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"])
    for ax, q in zip(axes.flat, order):
        qty = quantity(q, labels)
        for key, s in drawn[q]:
            xs, ys = _points(history, key)
            if not xs:
                continue
            if s.label not in colors:
                colors[s.label] = next(extra_colors, "tab:gray")
            ax.plot(xs, ys, marker="o", ms=3, color=colors[s.label], label=s.label)
        for style, (key, s) in zip(["--", ":", "-."] * 3, refs.get(q, [])):
            _, ys = _points(history, key)
            if ys:
                ax.axhline(ys[-1], color=REFERENCE_COLOR, ls=style, lw=1, label=f"{s.label}: {ys[-1]:.4g}")
        if best_epoch is not None:
            ax.axvline(best_epoch, color=BEST_COLOR, ls=":", lw=1, label=f"best epoch ({best_epoch})")
        if qty.log_scale and all(v > 0 for key, _s in drawn[q] for v in _points(history, key)[1]):
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(qty.axis_label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if epochs:  # whole epochs on the axis, even for a run of one
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
            if len(set(epochs)) <= 10:  # the integer locator falls back to fractions on a span of one epoch
                ax.set_xticks(sorted(set(epochs)))
        ax.grid(alpha=0.3)
        set_title(ax, qty.label[:1].upper() + qty.label[1:])
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best", framealpha=0.8)
    for ax in list(axes.flat)[len(order):]:
        ax.axis("off")
    if footnotes:
        fig.supxlabel("constant over epochs: " + "; ".join(footnotes), fontsize=8)
    set_header(fig, title, subtitle(run_name, status))
    return fig

