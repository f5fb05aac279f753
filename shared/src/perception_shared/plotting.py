"""Headless matplotlib and the plots every run makes."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on clusters or CI; must run before pyplot is imported anywhere
import matplotlib.pyplot as plt  # noqa: E402


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


def plot_history(history: Sequence[dict[str, Any]], path: str | Path, title: str = "training history") -> Path:
    """One panel per metric name (``loss``, ``nll``, ...), train and val curves over epochs."""
    groups: dict[str, list[str]] = {}
    for row in history:
        for k in row:
            if k in ("epoch", "time_s") or "/" not in k:
                continue
            split, name = k.split("/", 1)
            if split not in ("train", "val"):
                continue
            groups.setdefault(name, [])
            if k not in groups[name]:
                groups[name].append(k)
    n = max(len(groups), 1)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, (name, keys) in zip(axes.flat, sorted(groups.items())):
        for k in keys:
            pts = [(r["epoch"], r[k]) for r in history if k in r and r[k] is not None and r[k] == r[k]]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=k.split("/")[0])
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(groups) :]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p, dpi=100)
    plt.close(fig)
    return p
