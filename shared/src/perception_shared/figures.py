"""The one figure style of perception-lab: labels with units, titles that fit, a subtitle with the run's status.

Every figure a package writes goes through :func:`save_figure`, after :func:`set_header` gave it a title
and the subtitle ``run <name> · TOY SETTINGS · RANDOM INIT``. Axis labels come from one table of metric
keys (:data:`QUANTITIES`, e.g. ``angular_error`` -> ``angular error (deg)``) that a package extends with its
own keys by passing ``labels={key: Quantity(...)}`` to the functions that take it.

:func:`check_figure` lists what a figure lacks (an axis label, an image's colour bar, a colour bar's label,
a text cut off at the figure's edge), from matplotlib's own objects; :func:`record_figures` collects that
check for every figure saved inside it, so a test runs a small pipeline once and checks each figure kind.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on clusters or CI; must run before pyplot is imported anywhere
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

DPI = 120
TITLE_SIZE = 11
# matplotlib's default font is on average about 0.55 em wide per character
_CHAR_WIDTH_EM = 0.55
TRAIN_COLOR = "tab:blue"
VAL_COLOR = "tab:orange"
REFERENCE_COLOR = "0.35"
BEST_COLOR = "black"


@dataclass(frozen=True)
class Quantity:
    """What a metric key means on an axis: ``label`` and ``unit`` (``""``: dimensionless)."""

    label: str
    unit: str = ""
    log_scale: bool = False  # spans decades (a learning rate): drawn on a log axis

    @property
    def axis_label(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


# Keys that more than one package logs; a package adds its own with ``labels={...}``.
QUANTITIES: dict[str, Quantity] = {
    "loss": Quantity("loss"),
    "lr": Quantity("learning rate", log_scale=True),
    "grad_norm": Quantity("gradient norm"),
    "time_s": Quantity("epoch time", "s"),
    "angular_error": Quantity("angular error", "deg"),
    "ig": Quantity("information gain", "bits/fixation"),
    "ll": Quantity("log-likelihood", "bits/fixation"),
    "nll": Quantity("negative log-likelihood", "nats/fixation"),
    "auc": Quantity("AUC"),
    "nss": Quantity("NSS"),
    "cc": Quantity("CC"),
    "r": Quantity("Pearson r"),
    "pearson_r": Quantity("Pearson r"),
    "mae": Quantity("mean absolute error"),
    "rmse": Quantity("root-mean-square error"),
    "precision": Quantity("precision"),
    "recall": Quantity("recall"),
    "f1": Quantity("F1"),
    "loc_error_px": Quantity("localization error", "pixels"),
}


def quantity(key: str, labels: Mapping[str, Quantity] | None = None) -> Quantity:
    """The quantity of a metric key (``val/`` or ``train/`` prefix ignored): ``labels``, then the shared
    table, then the longest table key that ``key`` ends with (``select_angular_error`` -> angular error,
    deg), else the key itself with spaces for underscores."""
    name = key.split("/", 1)[1] if key.startswith(("train/", "val/")) else key
    table = {**QUANTITIES, **(labels or {})}
    if name in table:
        return table[name]
    endings = [k for k in table if name.endswith("_" + k)]
    if endings:
        q = table[max(endings, key=len)]
        return Quantity(name.replace("_", " "), q.unit, q.log_scale)
    return Quantity(name.replace("_", " "))


def run_status(*, toy: bool = False, random_init: bool = False) -> str:
    """The status words every figure of a run carries: ``TOY SETTINGS``, ``RANDOM INIT`` (empty: neither)."""
    return " · ".join(w for w, on in (("TOY SETTINGS (not a research result)", toy), ("RANDOM INIT", random_init)) if on)


def subtitle(run_name: str | None = None, status: str = "", extra: str = "") -> str:
    """``run <name> · <status> · <extra>`` without the empty parts."""
    return " · ".join(p for p in (f"run {run_name}" if run_name else "", status, extra) if p)


def wrap(text: str, width_in: float, fontsize: float) -> str:
    """``text`` wrapped (each of its lines) to fit ``width_in`` inches at ``fontsize`` points."""
    chars = max(int(width_in * 72 / (fontsize * _CHAR_WIDTH_EM)), 10)
    return "\n".join(textwrap.fill(line, chars) if line else "" for line in text.split("\n"))


def set_header(fig: Figure, title: str, sub: str = "") -> None:
    """The figure's title and, under it in smaller type, ``sub`` (run, status, split), both wrapped to the
    figure's width. Use a figure made with ``layout="constrained"`` so the layout makes room for them."""
    width = fig.get_figwidth() * 0.95
    text = wrap(title, width, TITLE_SIZE)
    if sub:  # in the same text as the title: constrained layout makes room for one suptitle
        text += "\n" + wrap(sub, width, TITLE_SIZE)
    fig.suptitle(text, fontsize=TITLE_SIZE)


def set_title(ax: matplotlib.axes.Axes, title: str, fontsize: float = 9) -> None:
    """A panel title wrapped to the panel's width (never cut off at the panel's or figure's edge)."""
    fig = ax.get_figure()
    width = ax.get_position().width * fig.get_figwidth()  # type: ignore[union-attr]
    ax.set_title(wrap(title, width, fontsize), fontsize=fontsize)


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Save ``fig`` as PNG (parents created) and close it; inside :func:`record_figures` check it first."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    for found in _recorders:
        found[str(p)] = check_figure(fig)
    fig.savefig(p, dpi=dpi)
    plt.close(fig)
    return p


_recorders: list[dict[str, list[str]]] = []


@contextlib.contextmanager
def record_figures() -> Iterator[dict[str, list[str]]]:
    """Collect ``{path: check_figure(fig)}`` for every figure that :func:`save_figure` writes inside the block."""
    found: dict[str, list[str]] = {}
    _recorders.append(found)
    try:
        yield found
    finally:
        _recorders.remove(found)


def _is_colorbar(ax: matplotlib.axes.Axes) -> bool:
    return getattr(ax, "_colorbar", None) is not None


def _name(ax: matplotlib.axes.Axes, i: int) -> str:
    title = ax.get_title().replace("\n", " ")
    return f"axes {i}" + (f" ({title[:40]!r})" if title else "")


def check_figure(fig: Figure) -> list[str]:
    """What ``fig`` lacks, as one line each (empty: nothing).

    * every axes in use (not a colour bar, axis shown) has an x and a y label, its own or the figure's
      ``supxlabel`` / ``supylabel``;
    * every map (a 2-D ``imshow``, ``pcolormesh``; RGB(A) photos need none) has a colour bar: its own, or one drawn for another image
      with the same colour map and limits (a shared colour bar);
    * every colour bar has a label (its units);
    * every title and label lies inside the figure (not cut off).
    """
    fig.canvas.draw()
    problems: list[str] = []
    sup_x = fig._supxlabel is not None and fig._supxlabel.get_text()  # noqa: SLF001 (matplotlib keeps it here)
    sup_y = fig._supylabel is not None and fig._supylabel.get_text()  # noqa: SLF001
    colorbars = [ax._colorbar for ax in fig.axes if _is_colorbar(ax)]  # noqa: SLF001
    shared = {(cb.mappable.get_cmap().name, cb.mappable.norm.vmin, cb.mappable.norm.vmax) for cb in colorbars}
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        if _is_colorbar(ax):
            if not (ax.get_ylabel() or ax.get_xlabel()):
                problems.append(f"{_name(ax, i)}: colour bar without a label")
            continue
        if ax.axison and (ax.lines or ax.collections or ax.patches or ax.images):
            if not (ax.get_xlabel() or sup_x):
                problems.append(f"{_name(ax, i)}: no x-axis label")
            if not (ax.get_ylabel() or sup_y):
                problems.append(f"{_name(ax, i)}: no y-axis label")
        # an RGB(A) photo (a stimulus, an eye crop) has no scale to show: only 2-D arrays need a colour bar
        images = [im for im in ax.images if getattr(im.get_array(), "ndim", 2) == 2]
        maps = [*images, *(c for c in ax.collections if isinstance(c, matplotlib.collections.QuadMesh))]
        for m in maps:
            key = (m.get_cmap().name, m.norm.vmin, m.norm.vmax)
            if m.colorbar is None and key not in shared:
                problems.append(f"{_name(ax, i)}: image without a colour bar")
    bounds = fig.bbox
    texts = [fig._suptitle, fig._supxlabel, fig._supylabel]  # noqa: SLF001
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]  # noqa: SLF001
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    for t in texts:
        if t is None or not t.get_visible() or not t.get_text():
            continue
        box = t.get_window_extent(renderer)
        if box.x0 < bounds.x0 - 1 or box.x1 > bounds.x1 + 1 or box.y0 < bounds.y0 - 1 or box.y1 > bounds.y1 + 1:
            problems.append(f"text {t.get_text()[:40]!r} is cut off at the figure's edge")
    return problems
