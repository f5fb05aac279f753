"""The training loss: angular error plus a small MSE on the angles, always in fp32."""

from __future__ import annotations

import torch

from .geometry import angular_error


def gaze_loss(pred: torch.Tensor, target: torch.Tensor, mse_weight: float = 0.1) -> torch.Tensor:
    """``mean(angular error in rad) + mse_weight * mean((pred - target)^2 in rad^2)``; a scalar.

    ``pred`` and ``target`` are ``(B, 2)`` pitch/yaw in radians. The loss runs in fp32 with autocast
    off: in bf16 an angle of 1 degree is resolved to about 1/3 of itself, which would quantize the very
    quantity being minimized. The angular term is the one that is reported; the MSE term keeps the
    gradient pointing at the right angles far from the optimum (where the angular error's gradient
    w.r.t. yaw vanishes as cos(pitch) -> 0). Gradients are finite at zero error.
    """
    with torch.autocast(device_type=pred.device.type, enabled=False):
        p, t = pred.float(), target.float()
        return angular_error(p, t).mean() + mse_weight * ((p - t) ** 2).mean()


def sequence_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, mse_weight: float = 0.1) -> torch.Tensor:
    """``gaze_loss`` over the valid frames of windows: ``(B, T, 2)`` predictions and targets, ``(B, T)`` bool.

    Every valid frame weighs the same (a mean over frames, as the single-frame loss is over samples);
    padding frames weigh nothing. Written as a weighted mean, not a boolean selection, so that it reads
    no value on the host. In fp32 with autocast off, as ``gaze_loss``.
    """
    with torch.autocast(device_type=pred.device.type, enabled=False):
        p, t, w = pred.float(), target.float(), valid.float()
        n = w.sum().clamp(min=1.0)
        ang = (angular_error(p, t) * w).sum() / n
        return ang + mse_weight * ((((p - t) ** 2).mean(dim=-1)) * w).sum() / n
