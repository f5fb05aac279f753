"""``export RUN``: the trained model as ONNX or TorchScript, dynamic batch, checked against PyTorch.

The exported model takes exactly what the PyTorch model takes: ``face`` ``(batch, 3, 224, 224)``, ``leye``
and ``reye`` ``(batch, 3, 112, 112)`` float32 RGB in [0, 1], channels first (each branch's mean/std
normalization is inside the model), and returns ``pitchyaw`` ``(batch, 2)`` in radians (EVE's convention,
the virtual camera of data normalization). A temporal run (``gazetr_temporal``) is exported for windows of
its ``data.sequence_length`` frames: inputs ``(batch, T, 3, H, W)``, output ``(batch, T, 2)``, causal (frame
``t`` from frames ``<= t``); for live use one frame at a time, ``temporal.TemporalStream`` carries the state.
``<stem>.preprocessing.json`` beside it records how the crops
are made (the run's normalization config), which crop is which eye, and the weights the run started from.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from perception_shared.cli import resolve_run
from perception_shared.export import (
    default_export_path,
    export_model,
    preprocessing_path,
    require_export_extra,
    verify_export,
)

from .evaluate import load_model, weights_summary
from .h5format import EYE_SIZE, FACE_SIZE

PACKAGE = "gaze-estimation"  # the pip package whose [export] extra an error names
INPUT_NAMES = ("face", "leye", "reye")
OUTPUT_NAMES = ("pitchyaw",)
# float32 through a ResNet/ViT and a transformer: ONNX Runtime's kernels differ from PyTorch's by ~1e-6
# relative; outputs are angles in radians, so 1e-4 rad (0.006 degrees) is far below any gaze error.
ATOL = 1e-4
RTOL = 1e-3


def example_inputs(batch: int, seed: int = 0, window: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random crops of the model's real shapes: face ``(B, 3, 224, 224)``, eyes ``(B, 3, 112, 112)`` in [0, 1].

    With ``window`` (a temporal model): ``(B, window, 3, H, W)``.
    """
    g = torch.Generator().manual_seed(seed)
    lead = (batch,) if window is None else (batch, window)
    return (
        torch.rand(*lead, 3, FACE_SIZE, FACE_SIZE, generator=g),
        torch.rand(*lead, 3, EYE_SIZE, EYE_SIZE, generator=g),
        torch.rand(*lead, 3, EYE_SIZE, EYE_SIZE, generator=g),
    )


def export_run(run: str | Path, *, fmt: str = "onnx", out: str | Path | None = None, opset: int = 18, check: bool = True) -> dict[str, Any]:
    """Export the run's model (RUN: run directory or checkpoint); returns paths and the check's differences."""
    require_export_extra(fmt, PACKAGE, run=check)  # a missing extra is one line, before any checkpoint is read
    ref = resolve_run(run)
    model, cfg, state = load_model(ref.checkpoint, "cpu")
    path = Path(out) if out is not None else default_export_path(ref.run_dir, fmt)  # type: ignore[arg-type]
    window = cfg.data.sequence_length if cfg.model.is_temporal else None
    preprocessing = {
        "inputs": "face, leye, reye: crops of data normalization, float32 RGB in [0, 1], channels first; the "
        "mean/std normalization of each branch is inside the model",
        "leye": "the subject's left eye (on the image's right)",
        "face_size": FACE_SIZE,
        "eye_size": EYE_SIZE,
        "branch_mean_std": {
            "face": {"mean": model.face_norm.mean.flatten().tolist(), "std": model.face_norm.std.flatten().tolist()},
            "eyes": {"mean": model.eye_norm.mean.flatten().tolist(), "std": model.eye_norm.std.flatten().tolist()},
        },
        "normalization": asdict(cfg.normalization),
        "output": "pitchyaw (batch, 2): pitch, yaw in radians in the virtual camera; pitchyaw_to_vector(p, y) = "
        "(cos p sin y, sin p, cos p cos y) points from the target to the eye (EVE's convention)",
        "model": cfg.model.name,
        "window": window,
        "checkpoint": str(ref.checkpoint),
        "weights": weights_summary(state),
    }
    written = export_model(
        model, example_inputs(2, window=window), path, fmt=fmt, input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,  # type: ignore[arg-type]
        preprocessing=preprocessing, opset=opset, package=PACKAGE,
    )
    result: dict[str, Any] = {"path": str(written), "preprocessing": str(preprocessing_path(written))}
    if check:
        checks = [example_inputs(1, seed=1, window=window), example_inputs(3, seed=2, window=window)]
        result["check"] = verify_export(written, model, checks, atol=ATOL, rtol=RTOL, package=PACKAGE)
    return result
