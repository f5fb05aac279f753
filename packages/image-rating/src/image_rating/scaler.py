"""Per-dimension standardization of the rating targets, fitted on the training split and kept as JSON.

The network learns ``z = (rating - mean) / std`` for each dimension, so that dimensions on different
scales weigh equally in the MSE; predictions go back to rating units with ``rating = z * std + mean``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from perception_shared.errors import DataError

FORMAT = "image-rating-target-scaler/1"
SCALER_JSON = "target_scaler.json"

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class TargetScaler:
    """Mean and population standard deviation (ddof=0) of each dimension, in rating units."""

    dimensions: tuple[str, ...]
    mean: np.ndarray  # (D,) float64
    std: np.ndarray  # (D,) float64, all > 0

    @classmethod
    def fit(cls, ratings: np.ndarray, dimensions: Sequence[str]) -> TargetScaler:
        """Fit on ``ratings`` (N, D) in rating units; a constant dimension cannot be standardized."""
        r = np.asarray(ratings, dtype=np.float64)
        if r.ndim != 2 or r.shape[1] != len(dimensions) or r.shape[0] < 2:
            raise DataError(
                f"cannot fit the target scaler on ratings of shape {r.shape} for {len(dimensions)} dimensions"
            )
        std = r.std(axis=0)
        flat = [d for d, s in zip(dimensions, std) if not s > 0]
        if flat:
            raise DataError(
                f"dimension(s) {', '.join(flat)} have the same rating for every training image; nothing to learn"
            )
        return cls(tuple(dimensions), r.mean(axis=0), std)

    def transform(self, ratings: ArrayT) -> ArrayT:
        """Rating units (..., D) -> standardized (..., D)."""
        mean, std = self._params(ratings)
        return (ratings - mean) / std

    def inverse_transform(self, z: ArrayT) -> ArrayT:
        """Standardized (..., D) -> rating units (..., D)."""
        mean, std = self._params(z)
        return z * std + mean

    def _params(self, like: Any) -> tuple[Any, Any]:
        if like.shape[-1] != len(self.dimensions):
            raise ValueError(
                f"expected {len(self.dimensions)} dimensions in the last axis, got shape {tuple(like.shape)}"
            )
        if isinstance(like, torch.Tensor):
            kw = {"dtype": like.dtype, "device": like.device}
            return torch.as_tensor(self.mean, **kw), torch.as_tensor(self.std, **kw)
        return self.mean, self.std

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "dimensions": list(self.dimensions),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "a target scaler") -> TargetScaler:
        try:
            if data.get("format") != FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
            dims = tuple(str(d) for d in data["dimensions"])
            mean = np.asarray(data["mean"], dtype=np.float64)
            std = np.asarray(data["std"], dtype=np.float64)
            if mean.shape != (len(dims),) or std.shape != (len(dims),):
                raise ValueError(f"{len(dims)} dimensions but {mean.size} means and {std.size} standard deviations")
            if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
                raise ValueError("means must be finite and standard deviations positive")
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DataError(f"{source} is not a valid target scaler: {e}") from None
        return cls(dims, mean, std)

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return p

    @classmethod
    def load(cls, path: str | Path) -> TargetScaler:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"target scaler {p} does not exist")
        try:
            data = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"target scaler {p} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise DataError(f"target scaler {p} must hold a JSON object")
        return cls.from_dict(data, str(p))
