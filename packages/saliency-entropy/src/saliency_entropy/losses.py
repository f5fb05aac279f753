"""The training loss: negative log-likelihood of fixations, and the bias-map entropy it may reward.

Log-densities here live on the saliency grid (image / ``factor``, see ``models``). Fixation (x, y) in
image pixels lies on image pixel (floor(y), floor(x)) and so on grid cell (floor(y) // f, floor(x) // f);
its log-density over image pixels is the cell's log-probability minus ``2 log f`` (nearest upsampling
spreads a cell evenly over its f x f pixels). Everything is in nats.
"""

from __future__ import annotations

import math

import torch


def fixation_log_likelihoods(log_density: torch.Tensor, fixations: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, N) log-density (nats, over image pixels) at each fixation.

    ``log_density``: (B, Hs, Ws) log-probabilities on the saliency grid; ``fixations``: (B, N, 2) (x, y)
    image pixels (padding entries must still lie inside the image; mask them afterwards).
    """
    batch, hs, ws = log_density.shape
    cols = torch.div(fixations[..., 0].floor().long(), factor, rounding_mode="floor").clamp(0, ws - 1)
    rows = torch.div(fixations[..., 1].floor().long(), factor, rounding_mode="floor").clamp(0, hs - 1)
    flat = log_density.reshape(batch, -1)
    return flat.gather(1, rows * ws + cols) - 2 * math.log(factor)


def fixation_nll(log_density: torch.Tensor, fixations: torch.Tensor, mask: torch.Tensor, factor: int) -> torch.Tensor:
    """Mean negative log-likelihood per fixation (nats) over the real (``mask``) fixations of a batch."""
    ll = fixation_log_likelihoods(log_density, fixations, factor)
    return -(ll * mask).sum() / mask.sum().clamp_min(1)


def entropy_nats(log_density: torch.Tensor) -> torch.Tensor:
    """Shannon entropy ``-sum p log p`` (nats) of log-probabilities over the last two dimensions."""
    return -(log_density.exp() * log_density).sum(dim=(-2, -1))
