"""Pretrained weights from a local file: never downloaded, never unpickled."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import describe_load_error
from .errors import WeightsError

_NESTED_KEYS = ("state_dict", "model", "model_state_dict", "module")


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.pth``/``.pt``/``.bin`` (``weights_only=True``) or ``.safetensors``.

    Checkpoints that nest the weights under ``state_dict``/``model`` are unwrapped.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"weights file {p} does not exist")
    try:
        if p.suffix == ".safetensors":
            try:
                from safetensors.torch import load_file
            except ImportError:
                raise WeightsError(f"{p} is a .safetensors file; install the 'safetensors' package to read it") from None
            obj: Any = load_file(str(p))
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except WeightsError:
        raise
    except Exception as e:
        raise WeightsError(f"cannot read weights file {p}: {describe_load_error(e)}") from None
    for key in _NESTED_KEYS:
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"weights file {p} does not hold a state dict of tensors")
    return obj


def load_pretrained(
    module: nn.Module,
    path: str | Path,
    *,
    strict: bool = True,
    strip_prefixes: tuple[str, ...] = ("module.",),
    rename: Callable[[str], str] | None = None,
) -> dict[str, list[str]]:
    """Load local weights into ``module``; mismatches are a WeightsError that lists them.

    ``rename`` maps the file's key names to the module's (for files published with other names).
    BatchNorm's ``num_batches_tracked`` counters, absent from files saved before torch 0.4.1, keep the
    module's values. With ``strict=False`` missing and unexpected keys are allowed (returned), but a
    shape mismatch is always an error. Returns ``{'missing': [...], 'unexpected': [...]}``.
    """
    state = load_weights_file(path)
    for prefix in strip_prefixes:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    if rename is not None:
        state = {rename(k): v for k, v in state.items()}
    own = module.state_dict()
    for key, value in own.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    shape = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in state
        if k in own and state[k].shape != own[k].shape
    )

    def head(items: list[str]) -> str:
        return ", ".join(items[:8]) + (f" (+{len(items) - 8} more)" if len(items) > 8 else "")

    problems = []
    if shape:
        problems.append(f"shape mismatches: {head(shape)}")
    if strict and missing:
        problems.append(f"missing keys: {head(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys: {head(unexpected)}")
    if problems:
        raise WeightsError(f"weights file {path} does not fit {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict(state, strict=False)
    return {"missing": missing, "unexpected": unexpected}
