"""Losses for sparse frame prediction: pure functions of logits and targets, and modules built by name.

Every loss takes ``logits`` and ``targets`` of shape ``(B, T, 1, H, W)`` (targets in {0, 1}, one active
pixel per frame that has a point) and returns a scalar. The predicted map is ``p = sigmoid(logits)``;
the MSE-type losses compare ``p`` with the target, so that every loss trains the same output and the
same 0.5 threshold applies to all of them.

An optional ``mask`` of shape ``(B, T)`` (bool) marks frames whose target is known; frames where it is
False (blinks, track loss) are left out of the loss instead of being taught as "no point". Without a
mask every frame counts. A loss whose frames are all masked out returns 0 (with a zero gradient).

=================  ========================================================================================
name               definition (means over pixels of the counted frames unless stated)
=================  ========================================================================================
``mse``            mean (p - y)^2
``bce``            mean binary cross-entropy with logits
``focal``          mean alpha_t (1 - p_t)^gamma BCE, alpha 0.25, gamma 2 (``torchvision.ops.sigmoid_focal_loss``)
``sparsity``       mse_weight * mean (p - y)^2 + l1_weight * mean |p|  (defaults 1.0 and 0.1)
``concentration``  per frame with a target: sum_u q(u) ||u - c||^2, q = p / sum p the predicted mass,
                   c the target's centre of mass, u pixel coordinates in units of the frame side
                   (so the value lies in [0, 2]); frames without a target are ignored; mean over frames
``composite``      1.0 focal + 0.8 sparsity + 1.5 concentration (weights configurable)
``dice``           per frame 1 - (2 sum p y + s) / (sum p + sum y + s), smooth s = 1; mean over frames
``weighted_mse``   mean w (p - y)^2 with w = pos_weight (100) on target pixels and 1 elsewhere
=================  ========================================================================================
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn


def _check(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Validate shapes; compute half-precision logits (bf16/fp16 autocast) in float32."""
    if logits.ndim != 5:
        raise ValueError(f"logits must have shape (B, T, 1, H, W), got {tuple(logits.shape)}")
    if targets.shape != logits.shape:
        raise ValueError(f"targets shape {tuple(targets.shape)} does not match logits shape {tuple(logits.shape)}")
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    targets = targets.to(logits.dtype)
    if mask is None:
        return logits, targets, None
    if tuple(mask.shape) != tuple(logits.shape[:2]):
        raise ValueError(f"mask must have shape (B, T) = {tuple(logits.shape[:2])}, got {tuple(mask.shape)}")
    return logits, targets, mask.to(device=logits.device, dtype=logits.dtype)


def _mean_over_frames(per_frame: torch.Tensor, mask: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
    """Mean of a ``(B, T)`` per-frame loss over the frames where ``mask`` is set (all frames without a mask)."""
    if mask is None:
        return per_frame.mean()
    # No branch on the count: reading it would stall a GPU every step. With no counted frame the sum is 0
    # and the graph (and DDP's gradient hooks) stays connected with a zero gradient.
    counted = torch.where(mask > 0, per_frame * mask, torch.zeros_like(per_frame))
    return counted.sum() / mask.sum().clamp(min=1)


def _pixel_mean(elementwise: torch.Tensor, mask: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
    """Mean over all pixels of the counted frames (frames have equal size, so a mean of frame means)."""
    if mask is None:
        return elementwise.mean()
    return _mean_over_frames(elementwise.flatten(2).mean(-1), mask, logits)


def mse_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error between ``sigmoid(logits)`` and the targets."""
    logits, targets, m = _check(logits, targets, mask)
    return _pixel_mean((torch.sigmoid(logits) - targets) ** 2, m, logits)


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy with logits (nats per pixel)."""
    logits, targets, m = _check(logits, targets, mask)
    return _pixel_mean(F.binary_cross_entropy_with_logits(logits, targets, reduction="none"), m, logits)


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None, *, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al. 2017), the same values as ``torchvision.ops.sigmoid_focal_loss(..., "mean")``.

    ``alpha_t (1 - p_t)^gamma * BCE`` with ``p_t = p`` on positives and ``1 - p`` on negatives, ``alpha_t =
    alpha`` on positives and ``1 - alpha`` on negatives.
    """
    logits, targets, m = _check(logits, targets, mask)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return _pixel_mean(loss, m, logits)


def sparsity_loss(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None, *, mse_weight: float = 1.0, l1_weight: float = 0.1
) -> torch.Tensor:
    """``mse_weight * mean (p - y)^2 + l1_weight * mean |p|``: MSE plus an L1 penalty on the predicted map."""
    logits, targets, m = _check(logits, targets, mask)
    p = torch.sigmoid(logits)
    return _pixel_mean(mse_weight * (p - targets) ** 2 + l1_weight * p.abs(), m, logits)


def concentration_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Expected squared distance of the predicted mass from the target's centre of mass, per frame.

    The predicted mass is ``q = p / sum(p)`` over the frame's pixels, computed in log space (softmax of
    ``log sigmoid(logits)``) so that it stays defined when every ``p`` underflows. Distances are in units
    of the frame side ``max(H, W)``. Frames without a target pixel (or masked out) are ignored.
    """
    logits, targets, m = _check(logits, targets, mask)
    B, T, C, H, W = logits.shape
    log_p = F.logsigmoid(logits).reshape(B, T, -1)
    q = torch.softmax(log_p, dim=-1)
    rows = torch.arange(H, device=logits.device, dtype=logits.dtype).repeat_interleave(W) / max(H, W)
    cols = torch.arange(W, device=logits.device, dtype=logits.dtype).repeat(H) / max(H, W)
    if C > 1:
        rows, cols = rows.repeat(C), cols.repeat(C)
    t = targets.reshape(B, T, -1)
    mass = t.sum(-1)
    has_target = mass > 0
    safe = torch.where(has_target, mass, torch.ones_like(mass))
    c_row = (t * rows).sum(-1) / safe
    c_col = (t * cols).sum(-1) / safe
    d2 = (rows - c_row[..., None]) ** 2 + (cols - c_col[..., None]) ** 2
    per_frame = (q * d2).sum(-1)
    counted = has_target.to(logits.dtype) if m is None else has_target.to(logits.dtype) * m
    return _mean_over_frames(per_frame, counted, logits)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None, *, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss per frame, ``1 - (2 sum p y + smooth) / (sum p + sum y + smooth)``, averaged over frames."""
    logits, targets, m = _check(logits, targets, mask)
    p = torch.sigmoid(logits).flatten(2)
    t = targets.flatten(2)
    dice = (2 * (p * t).sum(-1) + smooth) / (p.sum(-1) + t.sum(-1) + smooth)
    return _mean_over_frames(1 - dice, m, logits)


def weighted_mse_loss(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None, *, pos_weight: float = 100.0
) -> torch.Tensor:
    """``mean w (p - y)^2`` with ``w = pos_weight`` on target pixels and 1 elsewhere (not renormalised)."""
    logits, targets, m = _check(logits, targets, mask)
    w = 1 + (pos_weight - 1) * targets
    return _pixel_mean(w * (torch.sigmoid(logits) - targets) ** 2, m, logits)


def composite_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    focal_weight: float = 1.0,
    sparsity_weight: float = 0.8,
    concentration_weight: float = 1.5,
    alpha: float = 0.25,
    gamma: float = 2.0,
    mse_weight: float = 1.0,
    l1_weight: float = 0.1,
) -> torch.Tensor:
    """``focal_weight * focal + sparsity_weight * sparsity + concentration_weight * concentration``."""
    return (
        focal_weight * focal_loss(logits, targets, mask, alpha=alpha, gamma=gamma)
        + sparsity_weight * sparsity_loss(logits, targets, mask, mse_weight=mse_weight, l1_weight=l1_weight)
        + concentration_weight * concentration_loss(logits, targets, mask)
    )


class SparseLoss(nn.Module):
    """A loss function with fixed keyword settings; ``loss(logits, targets, mask=None)`` -> scalar."""

    def __init__(self, name: str, fn, **kwargs: float) -> None:
        super().__init__()
        self.name = name
        self.fn = fn
        self.kwargs = kwargs

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.fn(logits, targets, mask, **self.kwargs)

    def extra_repr(self) -> str:
        return ", ".join([self.name] + [f"{k}={v}" for k, v in self.kwargs.items()])


LOSSES = {
    "mse": mse_loss,
    "bce": bce_loss,
    "focal": focal_loss,
    "sparsity": sparsity_loss,
    "concentration": concentration_loss,
    "composite": composite_loss,
    "dice": dice_loss,
    "weighted_mse": weighted_mse_loss,
}

# Constraints on keyword values, checked when a loss is built (a bad value fails before training).
_NONNEGATIVE = {"gamma", "smooth", "mse_weight", "l1_weight", "focal_weight", "sparsity_weight", "concentration_weight"}


def loss_keywords(name: str) -> dict[str, float]:
    """The keywords of loss ``name`` with their defaults."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(LOSSES)}")
    sig = inspect.signature(LOSSES[name])
    return {p.name: p.default for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def get_loss_function(name: str, **kwargs: float) -> SparseLoss:
    """The loss called ``name`` (see ``LOSSES``) with keyword settings ``kwargs``.

    An unknown name, an unknown keyword or an invalid value is a ``ValueError`` that lists what is valid.
    """
    valid = loss_keywords(name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        listed = ", ".join(f"{k} (default {v})" for k, v in valid.items()) or "none"
        raise ValueError(f"unknown keyword(s) {', '.join(unknown)} for loss {name!r}; valid keywords: {listed}")
    for k, v in kwargs.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"loss {name!r}: keyword {k} must be a number, got {v!r}")
        if k in _NONNEGATIVE and v < 0:
            raise ValueError(f"loss {name!r}: keyword {k} must be >= 0, got {v}")
        if k == "alpha" and v > 1:
            raise ValueError(f"loss {name!r}: alpha must be at most 1 (a negative alpha switches the weighting off), got {v}")
        if k == "pos_weight" and v <= 0:
            raise ValueError(f"loss {name!r}: pos_weight must be > 0, got {v}")
    return SparseLoss(name, LOSSES[name], **{k: float(v) for k, v in kwargs.items()})
