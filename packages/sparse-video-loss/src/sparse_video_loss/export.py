"""``export RUN``: a trained SimVP as ONNX or TorchScript with a dynamic batch size, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from perception_shared.cli import resolve_run
from perception_shared.export import default_export_path, export_model, require_export_extra, verify_export

from .evaluate import load_trained_model

# float32 logits through ~40 convolutions: onnxruntime and TorchScript reorder sums differently
EXPORT_ATOL = 1e-4
EXPORT_RTOL = 1e-4


def sparse_inputs(batch: int, in_shape: tuple[int, int, int, int], seed: int = 0) -> torch.Tensor:
    """Random inputs as the model sees them: ``(batch, T, 1, H, W)`` with one active pixel per frame."""
    T, C, H, W = in_shape
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(batch, T, C, H * W)
    x.scatter_(3, torch.randint(H * W, (batch, T, C, 1), generator=g), 1.0)
    return x.reshape(batch, T, C, H, W)


def preprocessing(cfg: Any, in_shape: tuple[int, int, int, int]) -> dict[str, Any]:
    """What the exported model expects and returns, for ``<model>.preprocessing.json``."""
    T, _, H, W = in_shape
    return {
        "input": f"inputs: float32 (batch, {T}, 1, {H}, {W}), the {T} past frames of a {H}x{W} grid; each frame holds 1 at "
        "the point's pixel (row floor(y + 0.5), column floor(x + 0.5), x = column and y = row in grid pixels with pixel "
        "centres at integers) and 0 elsewhere; a frame without a point is all zero",
        "output": f"logits: float32 (batch, {T}, 1, {H}, {W}) of the {T} next frames; p = sigmoid(logits) is the probability "
        "of the point being at each pixel; the predicted position of a frame is its argmax",
        "grid_size": H,
        "n_input": cfg.data.n_input,
        "n_output": cfg.data.n_output,
        "mean": None,
        "std": None,
        "model": f"SimVP-{cfg.model.model_type} (hid_S {cfg.model.hid_S}, hid_T {cfg.model.hid_T}, N_S {cfg.model.N_S}, N_T {cfg.model.N_T})",
        "csv_traces": "sparse-video-loss predict bins a CSV gaze trace (sequence,t,x,y) into these frames",
    }


def export_run(run: str | Path, fmt: str = "onnx", out: str | Path | None = None, *, opset: int = 18, check: bool = True) -> dict[str, Any]:
    """Export the run's model (its best checkpoint, or the checkpoint file ``run``); returns paths and check results.

    With ``check`` the exported file is run (onnxruntime on CPU, or ``torch.jit.load``) at batch sizes 1
    and 3 and must equal PyTorch within ``EXPORT_ATOL`` + ``EXPORT_RTOL`` * |value|. ONNX needs the
    ``[export]`` extra: checked first, so a missing package is one line with the pip command.
    """
    require_export_extra(fmt, "sparse-video-loss", run=check)
    ref = resolve_run(run)
    model, cfg, _ = load_trained_model(ref.checkpoint, torch.device("cpu"))
    in_shape = model.in_shape
    path = Path(out) if out is not None else default_export_path(ref.run_dir, fmt)  # type: ignore[arg-type]
    written = export_model(
        model, sparse_inputs(2, in_shape), path, fmt=fmt,  # type: ignore[arg-type]
        input_names=["inputs"], output_names=["logits"], preprocessing=preprocessing(cfg, in_shape), opset=opset,
    )
    result: dict[str, Any] = {"model": str(written), "preprocessing": str(written.with_name(written.stem + ".preprocessing.json")),
                              "checkpoint": str(ref.checkpoint), "format": fmt}
    if check:
        result["check"] = verify_export(written, model, [sparse_inputs(1, in_shape, 1), sparse_inputs(3, in_shape, 2)],
                                        atol=EXPORT_ATOL, rtol=EXPORT_RTOL)
    return result
