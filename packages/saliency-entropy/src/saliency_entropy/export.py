"""``export``: a trained saliency model as ONNX or TorchScript, with its inputs described in JSON.

The exported model takes what the model itself takes (the DeepGaze convention of image plus center bias):

* ``image``: (B, 3, H, W) float32 RGB in [0, 1] (the backbone's mean/std normalization is inside);
* ``centerbias``: (B, H / f, W / f) float32 log-probabilities (nats, ``logsumexp`` 0 per sample) over
  the saliency grid, f = ``model.saliency_map_factor``: the run's center prior for that grid is written
  beside the model as ``<stem>.centerbias.npy`` (shape (H / f, W / f)); tile it over the batch;

and returns ``log_density``: (B, H, W) float32 log-density over image pixels (nats; ``exp`` sums to 1).

The batch size is dynamic; the spatial size is FIXED at export time (``size``, default the run's
``data.image_size``): the resize, blur and readout-grid matrices are built from the image size and are
constants in the exported graph. Export once per size you need (images of another size must be
resized to it, or exported again with ``--size``).

A DeepGaze III scanpath model is exported with a history of one central fixation (x = W / 2, y = H / 2,
what it predicts before the first saccade), as ``evaluate``'s spatial IG and the bias map use it: the
history is not an input of the exported graph (its NaN-masked per-fixation convolutions are traced for
that one history); the preprocessing JSON and the log say so. ``predict --fixations`` gives predictions
for other histories.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from perception_shared.cli import resolve_run
from perception_shared.export import (
    default_export_path,
    export_model,
    preprocessing_path,
    require_export_extra,
    verify_export,
)
from perception_shared.logging import get_logger

from .evaluate import load_run_model, weights_record
from .models import DensityModel

log = get_logger("saliency_entropy.export")
SCANPATH_NOTE = (
    "DeepGaze III scanpath model exported with a history of one central fixation (x = W/2, y = H/2); the "
    "history is not an input: use `saliency-entropy predict --fixations` for other histories"
)
# |exported - PyTorch| <= ATOL + RTOL |PyTorch| on log-densities (values around -9 to -13 nats)
ATOL = 1e-3
RTOL = 1e-4


class ExportableSaliency(nn.Module):
    """``(image, centerbias) -> log_density`` over image pixels: the model's forward with the center
    bias as an input instead of the run's fitted prior."""

    def __init__(self, model: DensityModel) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, image: torch.Tensor, centerbias: torch.Tensor) -> torch.Tensor:
        return self.model.log_density_with_centerbias(image, centerbias)


def export_run(
    run: str | Path,
    *,
    fmt: str = "onnx",
    out: str | Path | None = None,
    opset: int = 18,
    size: tuple[int, int] | None = None,
    check: bool = True,
) -> dict[str, Any]:
    """Export the run's model (see the module docstring); returns paths and, with ``check``, the
    comparison with PyTorch at batch sizes 1 and 3 (``verify_export``, tolerance ``ATOL``/``RTOL``)."""
    require_export_extra(fmt, "saliency-entropy", run=check)  # before the checkpoint is read
    ref = resolve_run(run)
    model, cfg, state = load_run_model(ref.checkpoint, torch.device("cpu"))
    h, w = size or (cfg.data.image_size[0], cfg.data.image_size[1])
    model.saliency_size((h, w))  # rejects sizes that are not multiples of the saliency factor
    if cfg.model.scanpath:
        log.warning("%s", SCANPATH_NOTE)
    wrapped = ExportableSaliency(model)
    path = Path(out) if out is not None else default_export_path(ref.run_dir, fmt)  # type: ignore[arg-type]
    centerbias = model.log_center_bias((h, w)).float()
    generator = torch.Generator().manual_seed(0)

    def inputs(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.rand(batch, 3, h, w, generator=generator), centerbias.expand(batch, -1, -1).contiguous()

    factor = cfg.model.saliency_map_factor
    export_model(
        wrapped,
        inputs(2),
        path,
        fmt=fmt,  # type: ignore[arg-type]
        input_names=["image", "centerbias"],
        output_names=["log_density"],
        opset=opset,
        package="saliency-entropy",
        preprocessing={
            "image": f"RGB in [0, 1], (B, 3, {h}, {w}); the backbone's normalization is inside the model",
            "mean_std_inside": {"mean": model.preprocessing["mean"], "std": model.preprocessing["std"]},
            "resize": "PIL bilinear (antialiased) to the fixed size; with aspect 'keep' the run was trained on "
            f"images at their own aspect ratio with the longer side {max(cfg.data.image_size)}",
            "centerbias": f"log-probabilities (nats) over the saliency grid ({h // factor}, {w // factor}) summing to 1 "
            f"per sample; the run's center prior is {path.stem}.centerbias.npy",
            "output": f"log_density (B, {h}, {w}): log-density over image pixels in nats, exp sums to 1",
            "spatial_size": "fixed at export; the batch size is dynamic",
            "weights": weights_record(state, cfg),
            "run": str(ref.run_dir),
            **({"scanpath": SCANPATH_NOTE} if cfg.model.scanpath else {}),
        },
    )
    np.save(path.with_name(path.stem + ".centerbias.npy"), centerbias.numpy())
    result: dict[str, Any] = {"model": str(path), "preprocessing": str(preprocessing_path(path)), "size": [h, w]}
    if check:
        result["check"] = verify_export(path, wrapped, [inputs(1), inputs(3)], atol=ATOL, rtol=RTOL, package="saliency-entropy")
    return result
