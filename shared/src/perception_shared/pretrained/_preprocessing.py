"""The input preprocessing weights were trained with, read from their own config (timm's pretrained cfg,
torchvision's ``transforms()``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import WeightsError
from ._identifiers import import_library, parse_identifier


def preprocessing_for(identifier: str, *, overlay: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The input preprocessing the weights were trained with, from their own config.

    Returns ``mean``, ``std`` (lists, RGB, for inputs in [0, 1]), ``interpolation`` (``'bicubic'``...),
    ``input_size`` ([C, H, W]), ``crop_pct`` (crop size / resize size) and ``crop_mode`` (timm) or
    ``resize_size`` (torchvision). timm: ``timm.data.resolve_data_config`` over the tag's pretrained cfg,
    updated by ``overlay`` (the same keys as timm's ``pretrained_cfg_overlay``); torchvision: the
    weights' ``transforms()``. A bare architecture gives its default weights' preprocessing.
    """
    library, name = parse_identifier(identifier, require_weights=False)
    if library == "timm":
        timm = import_library("timm")
        from timm.data import resolve_data_config

        cfg = timm.models.get_pretrained_cfg(name).to_dict()
        cfg.update(overlay or {})
        data = resolve_data_config({}, pretrained_cfg=cfg)
        return {
            "mean": [float(v) for v in data["mean"]],
            "std": [float(v) for v in data["std"]],
            "interpolation": str(data["interpolation"]),
            "input_size": [int(v) for v in data["input_size"]],
            "crop_pct": float(data["crop_pct"]),
            "crop_mode": str(data.get("crop_mode", "center")),
        }
    if overlay:
        raise WeightsError(f"a preprocessing overlay applies to timm weights only, not to {identifier}")
    tvm = import_library("torchvision.models")
    weights = tvm.get_weight(name) if "." in name else tvm.get_model_weights(name).DEFAULT
    transform = weights.transforms()
    if not all(hasattr(transform, a) for a in ("mean", "std", "crop_size", "resize_size", "interpolation")):
        raise WeightsError(f"{identifier} does not come with image-classification preprocessing")
    crop, resize = int(transform.crop_size[0]), int(transform.resize_size[0])
    return {
        "mean": [float(v) for v in transform.mean],
        "std": [float(v) for v in transform.std],
        "interpolation": str(transform.interpolation.value),
        "input_size": [3, crop, crop],
        "crop_pct": crop / resize,
        "resize_size": resize,
    }
