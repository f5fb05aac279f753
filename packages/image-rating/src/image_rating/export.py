"""``export RUN``: the trained model as ONNX or TorchScript, usable without this repository.

The exported model takes ``image``: ``(batch, 3, H, W)`` float32, RGB scaled to [0, 1] and normalized
with the run's mean/std, and returns ``ratings``: ``(batch, D)`` float32 mean ratings in the units of the
training CSV (the target scaler is part of the exported graph). The batch size is dynamic; H and W are
the run's crop size. ``<file stem>.preprocessing.json`` beside it says how to get there from an image
file: resize the shorter side to ``resize_size`` with ``interpolation``, center-crop ``image_size``,
scale to [0, 1], subtract ``mean`` and divide by ``std`` (all from the weights' pretrained config
unless the run's config overrode them), plus the dimension names, the weights the run started from
and whether it was a toy run.

The check runs the exported file in onnxruntime (CPU) or ``torch.jit.load`` on random inputs of batch
sizes 1 and 3 and requires ``|exported - PyTorch| <= ATOL + RTOL * |PyTorch|`` in rating units.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from perception_shared.export import (
    default_export_path,
    export_model,
    preprocessing_path,
    require_export_extra,
    verify_export,
)
from perception_shared.logging import get_logger

from .evaluate import load_trained
from .report import TOY_NOTE, describe_weights
from .scaler import TargetScaler

# Rating units (a 0-100 slider in the study): float32 round-off of the backbone's features between
# runtimes stays far below a thousandth of a slider unit.
ATOL = 1e-3
RTOL = 1e-5

log = get_logger("image_rating.export")


class RatingPredictor(nn.Module):
    """``(B, 3, H, W)`` normalized images -> ``(B, D)`` ratings in rating units (model + inverse scaler)."""

    def __init__(self, model: nn.Module, scaler: TargetScaler) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.as_tensor(np.asarray(scaler.mean), dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(np.asarray(scaler.std), dtype=torch.float32))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image) * self.std + self.mean


def export_run(
    run: str | Path,
    *,
    fmt: str = "onnx",
    out: str | Path | None = None,
    opset: int = 18,
    check: bool = True,
) -> dict[str, Any]:
    """Export the model of ``run`` (a run directory or checkpoint file); returns the paths and the check.

    ONNX needs the ``[export]`` extra: checked first, so a missing package is one line with the pip command."""
    require_export_extra(fmt, "image-rating", run=check)
    trained = load_trained(run, "cpu")
    pre = trained.preprocessing
    predictor = RatingPredictor(trained.model.float(), trained.scaler).eval()
    path = Path(out) if out is not None else default_export_path(trained.run_dir, fmt)  # type: ignore[arg-type]
    preprocessing = {
        "input": "RGB image as float32 (batch, 3, H, W), values scaled to [0, 1], then normalized",
        "resize_shorter_side": pre.resize_size,
        "center_crop": pre.image_size,
        "interpolation": pre.interpolation,
        "mean": list(pre.mean),
        "std": list(pre.std),
        "crop_pct": round(pre.crop_pct, 6),
        "source": pre.source,
        "output": "mean rating per dimension, in the units of the training CSV",
        "dimensions": list(trained.scaler.dimensions),
        "weights": describe_weights(trained.weights),
        "settings": TOY_NOTE if trained.toy else "research config",
        "checkpoint": str(trained.checkpoint),
    }
    example = torch.randn(2, 3, pre.image_size, pre.image_size)
    export_model(
        predictor,
        example,
        path,
        fmt=fmt,  # type: ignore[arg-type]
        input_names=["image"],
        output_names=["ratings"],
        preprocessing=preprocessing,
        opset=opset,
    )
    result: dict[str, Any] = {"model": str(path), "preprocessing": str(preprocessing_path(path))}
    if check:
        inputs = [
            torch.randn(b, 3, pre.image_size, pre.image_size, generator=torch.Generator().manual_seed(b))
            for b in (1, 3)
        ]
        result["verification"] = verify_export(path, predictor, inputs, atol=ATOL, rtol=RTOL)
    log.info("exported %s (%s) to %s", trained.checkpoint, fmt, path)
    return result
