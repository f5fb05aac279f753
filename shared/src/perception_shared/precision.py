"""Mixed precision chosen by config: bf16/fp16 autocast (+ grad scaling for fp16) on CUDA, fp32 on CPU."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

import torch

from .errors import ConfigError

MODES = ("fp32", "bf16", "fp16")


class Precision:
    """Autocast context and gradient scaler for one device.

    On CPU every mode runs in fp32: CPU autocast is slow and its bf16 numerics differ from the GPU's,
    so results on a laptop stay comparable to the reference fp32 numbers. ``self.mode`` is what runs.
    """

    def __init__(self, mode: str, device: torch.device) -> None:
        if mode not in MODES:
            raise ConfigError(f"precision must be one of {', '.join(MODES)}; got {mode!r}")
        self.requested = mode
        self.device = device
        self.mode = mode if device.type == "cuda" else "fp32"
        if self.mode == "bf16" and not torch.cuda.is_bf16_supported():
            raise ConfigError("precision 'bf16' was requested but this GPU does not support bfloat16; use fp16")
        self.dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.mode]
        # Only fp16 needs loss scaling: bf16 has fp32's exponent range.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.mode == "fp16")

    def autocast(self) -> AbstractContextManager:
        if self.mode == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self, optimizer: torch.optim.Optimizer, parameters, grad_clip: float | None) -> torch.Tensor | None:
        """Unscale, clip (if ``grad_clip``), step and update the scaler.

        Returns the total gradient norm before clipping as a tensor on the device (None without
        clipping): reading it here would stall a GPU every step; the loop reads it at log intervals.
        """
        norm = None
        if grad_clip is not None and grad_clip > 0:
            self.scaler.unscale_(optimizer)
            norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()
        return norm
