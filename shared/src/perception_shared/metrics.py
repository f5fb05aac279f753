"""Metrics that more than one package needs.

Means over ranks are exact: each rank keeps a sum and a count, and the reduction adds both, so an
uneven last batch (or a rank with fewer samples) is weighted correctly. The regression metrics are pure
functions over array-likes (numpy arrays, tensors, lists), computed in float64 and returned as numpy.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from .distributed import all_reduce_sum


class RunningMean:
    """A weighted running mean: ``update(value, n)`` adds ``value`` as the mean of ``n`` items."""

    def __init__(self) -> None:
        self.sum = 0.0
        self.count = 0.0

    def update(self, value: float | torch.Tensor, n: float = 1) -> None:
        v = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
        self.sum += v * n
        self.count += n

    def compute(self) -> float:
        return self.sum / self.count if self.count else float("nan")

    def reduce(self, device: torch.device | str = "cpu") -> float:
        """The mean over all ranks (a collective: call it on every rank)."""
        t = all_reduce_sum(torch.tensor([self.sum, self.count], dtype=torch.float64, device=device))
        return float(t[0] / t[1]) if float(t[1]) else float("nan")


class MeanDict:
    """Running means of several named values, reduced over ranks in one collective.

    Tensor values stay where they are (sums accumulate on the device), so ``update`` never waits for the
    GPU; the host reads them once, in ``compute``/``reduce``/``state_dict``.
    """

    def __init__(self) -> None:
        self._sums: dict[str, float | torch.Tensor] = {}
        self._counts: dict[str, float | torch.Tensor] = {}

    def update(self, values: Mapping[str, float | torch.Tensor], n: float | torch.Tensor = 1) -> None:
        for k, v in values.items():
            v = v.detach().double() if isinstance(v, torch.Tensor) else float(v)
            self._sums[k] = self._sums.get(k, 0.0) + v * n
            self._counts[k] = self._counts.get(k, 0.0) + n

    def _table(self, device: torch.device | str) -> tuple[list[str], torch.Tensor]:
        keys = sorted(self._sums)
        rows = [
            torch.stack([torch.as_tensor(self._sums[k], dtype=torch.float64).to(device),
                         torch.as_tensor(self._counts[k], dtype=torch.float64).to(device)])
            for k in keys
        ]
        return keys, torch.stack(rows) if rows else torch.zeros(0, 2, dtype=torch.float64, device=device)

    def state_dict(self) -> dict[str, dict[str, float]]:
        """Plain floats (one host read), for checkpoints."""
        keys, t = self._table("cpu")
        values = t.tolist()
        return {"sums": {k: values[i][0] for i, k in enumerate(keys)}, "counts": {k: values[i][1] for i, k in enumerate(keys)}}

    def load_state_dict(self, state: Mapping[str, Mapping[str, float]]) -> None:
        self._sums = dict(state["sums"])
        self._counts = dict(state["counts"])

    def compute(self) -> dict[str, float]:
        keys, t = self._table("cpu")
        values = t.tolist()
        return {k: values[i][0] / values[i][1] for i, k in enumerate(keys) if values[i][1]}

    def reduce(self, device: torch.device | str = "cpu") -> dict[str, float]:
        """Means over all ranks. Every rank must have updated the same keys (a collective; one host read)."""
        if not self._sums:
            return {}
        keys, t = self._table(device)
        values = all_reduce_sum(t).tolist()
        return {k: values[i][0] / values[i][1] for i, k in enumerate(keys) if values[i][1]}


def _as_2d(x: Any) -> np.ndarray:
    a = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    return a[:, None] if a.ndim == 1 else a


def _check(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    p, t = _as_2d(pred), _as_2d(target)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} does not match target shape {t.shape}")
    squeeze = np.ndim(pred.cpu() if isinstance(pred, torch.Tensor) else pred) == 1
    return p, t, squeeze


def pearson_r(pred: Any, target: Any) -> np.ndarray | float:
    """Pearson correlation per column of (N, D) inputs (a float for 1-D inputs).

    A column with zero variance has no defined correlation and gives NaN.
    """
    p, t, squeeze = _check(pred, target)
    pc = p - p.mean(axis=0)
    tc = t - t.mean(axis=0)
    denom = np.sqrt((pc**2).sum(axis=0) * (tc**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, (pc * tc).sum(axis=0) / np.where(denom > 0, denom, 1.0), np.nan)
    r = np.clip(r, -1.0, 1.0)
    return float(r[0]) if squeeze else r


def mae(pred: Any, target: Any) -> np.ndarray | float:
    """Mean absolute error per column (same units as the inputs)."""
    p, t, squeeze = _check(pred, target)
    m = np.abs(p - t).mean(axis=0)
    return float(m[0]) if squeeze else m


def rmse(pred: Any, target: Any) -> np.ndarray | float:
    """Root mean squared error per column (same units as the inputs)."""
    p, t, squeeze = _check(pred, target)
    m = np.sqrt(((p - t) ** 2).mean(axis=0))
    return float(m[0]) if squeeze else m


def bootstrap_ci(
    statistic: Callable[..., Any],
    *arrays: Any,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap confidence interval of ``statistic(*arrays)``, resampling rows together.

    Returns ``(low, high)`` with the statistic's shape. Resamples where the statistic is NaN (for
    example a constant column) are ignored.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    data = [x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x) for x in arrays]
    n = len(data[0])
    if any(len(d) != n for d in data):
        raise ValueError("bootstrap_ci: all arrays need the same number of rows")
    rng = np.random.default_rng(seed)
    stats = np.stack(
        [np.asarray(statistic(*[d[idx] for d in data]), dtype=np.float64) for idx in (rng.integers(0, n, n) for _ in range(n_boot))]
    )
    alpha = (1 - confidence) / 2
    # a statistic that is NaN in every resample (a constant column) has a NaN interval, not a warning
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        lo = np.nanquantile(stats, alpha, axis=0)
        hi = np.nanquantile(stats, 1 - alpha, axis=0)
    return lo, hi
