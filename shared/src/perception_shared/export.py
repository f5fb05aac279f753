"""Models that leave the lab: ONNX / TorchScript export with a dynamic batch size, checked against PyTorch.

``export_model`` writes the model and, beside it, ``<stem>.preprocessing.json``: what the model expects
of its inputs (names, shapes with ``"batch"`` for the dynamic axis, dtype, mean/std, units), so the file is
usable without this repository. ``verify_export`` runs the exported file the way a user would
(``onnxruntime`` on CPU or ``torch.jit.load``) and compares its outputs with the PyTorch model's on
inputs of several batch sizes.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .errors import UserError
from .extras import require_extra
from .jsonio import write_json

Format = Literal["onnx", "torchscript"]
FORMATS: tuple[str, ...] = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}


class ExportError(UserError):
    """The exported model could not be written or does not reproduce PyTorch's outputs."""


# What each step needs beyond torch: torch.onnx's TorchScript-based exporter (dynamo=False, below) writes with
# onnx alone (onnxscript is only the dynamo exporter's); onnxruntime runs the file (verify_export, run_exported).
WRITE_MODULES = {"onnx": ("onnx",), "torchscript": ()}
RUN_MODULES = {"onnx": ("onnxruntime",), "torchscript": ()}


def package_of(model: nn.Module) -> str:
    """The distribution a model comes from, for the pip hint: its class's top-level module with ``-`` for
    ``_`` (``gaze_estimation.models.GazeNet`` -> ``gaze-estimation``); ``shared`` for a plain torch module."""
    top = type(model).__module__.split(".")[0]
    return "shared" if top in ("torch", "perception_shared", "__main__") else top.replace("_", "-")


def require_export_extra(fmt: str, package: str, *, write: bool = True, run: bool = True) -> None:
    """Fail with one line naming the package's ``[export]`` extra and the pip command unless the modules
    that exporting to ``fmt`` (``write``) and running the exported file (``run``) need are installed.

    Call it first in a package's export command, before the checkpoint is read."""
    modules = [*(WRITE_MODULES.get(fmt, ()) if write else ()), *(RUN_MODULES.get(fmt, ()) if run else ())]
    if modules:
        require_extra(modules, package=package, extra="export", what=f"{fmt} export")


def preprocessing_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.stem + ".preprocessing.json")


def _as_tuple(inputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)


class _Flat(nn.Module):
    """Outputs as a flat tuple of tensors (dicts and nested tuples do not export cleanly)."""

    def __init__(self, model: nn.Module, output_keys: Sequence[str] | None) -> None:
        super().__init__()
        self.model = model
        self.output_keys = list(output_keys) if output_keys else None

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(*inputs)
        if isinstance(out, dict):
            keys = self.output_keys or sorted(out)
            return tuple(out[k] for k in keys)
        if isinstance(out, torch.Tensor):
            return (out,)
        return tuple(out)


def export_model(
    model: nn.Module,
    example_inputs: torch.Tensor | Sequence[torch.Tensor],
    out_path: str | Path,
    *,
    fmt: Format,
    input_names: Sequence[str],
    output_names: Sequence[str],
    preprocessing: dict[str, Any],
    output_keys: Sequence[str] | None = None,
    opset: int = 18,
    package: str | None = None,
) -> Path:
    """Export ``model`` (in eval mode, on CPU) with dim 0 of every input and output dynamic.

    ``example_inputs`` should have a batch size of at least 2 (tracing with 1 can bake the size in).
    ``output_keys`` picks and orders the entries of a dict-returning model. Returns the model file; the
    preprocessing JSON (``preprocessing`` plus input/output names, shapes and dtypes) lands beside it.
    ``package`` names the extra in the error when ONNX's packages are missing (default: ``package_of``).
    """
    if fmt not in FORMATS:
        raise ExportError(f"export format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    require_export_extra(fmt, package or package_of(model), run=False)
    inputs = tuple(t.detach().cpu() for t in _as_tuple(example_inputs))
    if len(inputs) != len(input_names):
        raise ValueError(f"{len(inputs)} example inputs but {len(input_names)} input names")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapped = _Flat(model.cpu().eval(), output_keys).eval()
    with torch.no_grad():
        outputs = wrapped(*inputs)
    if len(outputs) != len(output_names):
        raise ValueError(f"the model returns {len(outputs)} outputs but {len(output_names)} output names were given")
    try:
        if fmt == "onnx":
            dynamic_axes = {name: {0: "batch"} for name in [*input_names, *output_names]}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the exporter's deprecation chatter is not the user's business
                # The TorchScript-based exporter handles data-dependent Python control flow in our models
                # (shape checks, optional branches) by tracing; dynamic batch comes from dynamic_axes.
                torch.onnx.export(
                    wrapped,
                    inputs,
                    str(out),
                    input_names=list(input_names),
                    output_names=list(output_names),
                    dynamic_axes=dynamic_axes,
                    opset_version=opset,
                    dynamo=False,
                )
        else:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still what users load
                traced = torch.jit.trace(wrapped, inputs, check_trace=False)
            traced.save(str(out))
    except Exception as e:  # the exporters raise many kinds; the user needs the model and format
        raise ExportError(f"exporting {type(model).__name__} to {fmt} failed: {type(e).__name__}: {e}") from None
    meta = {
        "format": fmt,
        "file": out.name,
        "inputs": [
            {"name": n, "shape": ["batch", *t.shape[1:]], "dtype": str(t.dtype).removeprefix("torch.")}
            for n, t in zip(input_names, inputs)
        ],
        "outputs": [
            {"name": n, "shape": ["batch", *t.shape[1:]], "dtype": str(t.dtype).removeprefix("torch.")}
            for n, t in zip(output_names, outputs)
        ],
        "preprocessing": preprocessing,
    }
    if fmt == "onnx":
        meta["opset"] = opset
    write_json(preprocessing_path(out), meta)
    return out


def run_exported(
    path: str | Path, inputs: torch.Tensor | Sequence[torch.Tensor], package: str = "shared"
) -> list[np.ndarray]:
    """Run an exported file as a user would: ``onnxruntime`` (CPU) for .onnx, ``torch.jit.load`` otherwise.

    ``package`` names the extra in the error when onnxruntime is missing."""
    p = Path(path)
    arrays = [t.detach().cpu() for t in _as_tuple(inputs)]
    if p.suffix == ".onnx":
        require_export_extra("onnx", package, write=False)
        import onnxruntime as ort

        session = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        return [np.asarray(o) for o in session.run(None, {n: a.numpy() for n, a in zip(names, arrays)})]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(p), map_location="cpu")
    with torch.no_grad():
        out = module(*arrays)
    out = (out,) if isinstance(out, torch.Tensor) else out
    return [o.numpy() for o in out]


def verify_export(
    path: str | Path,
    model: nn.Module,
    input_sets: Sequence[torch.Tensor | Sequence[torch.Tensor]],
    *,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    output_keys: Sequence[str] | None = None,
    package: str | None = None,
) -> dict[str, Any]:
    """Compare the exported file with ``model`` on each input set (e.g. batch sizes 1 and 3).

    Returns ``{"atol", "rtol", "checks": [{"batch_size", "max_abs_diff", "max_rel_diff"}]}``; raises
    ``ExportError`` naming the output and batch size when ``|a - b| > atol + rtol * |b|`` anywhere.
    """
    wrapped = _Flat(model.cpu().eval(), output_keys).eval()
    meta_path = preprocessing_path(path)
    names = (
        [o["name"] for o in json.loads(meta_path.read_text())["outputs"]] if meta_path.is_file() else None
    )
    checks = []
    for inputs in input_sets:
        tensors = _as_tuple(inputs)
        with torch.no_grad():
            expected = [o.numpy() for o in wrapped(*[t.cpu() for t in tensors])]
        got = run_exported(path, tensors, package or package_of(model))
        batch = int(tensors[0].shape[0])
        worst_abs = worst_rel = 0.0
        for i, (a, b) in enumerate(zip(got, expected)):
            name = names[i] if names else f"output {i}"
            if a.shape != b.shape:
                raise ExportError(f"{path}: {name} has shape {a.shape} at batch size {batch}, PyTorch gives {b.shape}")
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            bad = diff > atol + rtol * np.abs(b)
            if bad.any():
                raise ExportError(
                    f"{path}: {name} differs from PyTorch at batch size {batch}: max |diff| {diff.max():.3g} "
                    f"(atol {atol}, rtol {rtol})"
                )
            worst_abs = max(worst_abs, float(diff.max(initial=0.0)))
            worst_rel = max(worst_rel, float((diff / np.maximum(np.abs(b), 1e-12)).max(initial=0.0)))
        checks.append({"batch_size": batch, "max_abs_diff": worst_abs, "max_rel_diff": worst_rel})
    return {"atol": atol, "rtol": rtol, "checks": checks}


def default_export_path(run_dir: str | Path, fmt: Format) -> Path:
    return Path(run_dir) / "export" / f"model{SUFFIX[fmt]}"
