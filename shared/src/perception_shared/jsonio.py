"""Strict JSON for results files: NaN and infinities become null, numpy and torch scalars plain numbers.

``json.dumps`` writes ``NaN`` by default, which is not JSON and which many readers reject; a metric that
is undefined (average precision with no positives, a correlation of a constant) is written as ``null``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np


def json_ready(obj: Any) -> Any:
    """A copy of ``obj`` that ``json.dumps(..., allow_nan=False)`` accepts."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist())
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", None) == 0:
        obj = obj.item()  # numpy or torch scalar
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"json_ready: cannot write a {type(obj).__name__} as JSON")


def write_json(path: str | Path, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as strict JSON (through a temporary file, so readers never see half a file)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(json_ready(obj), indent=indent, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, p)
    return p
