"""``gazetr_temporal``: the single-frame GazeTR on every frame, then a causal module over time.

How it differs from ``models.GazeTR`` (which it holds, unchanged, as ``frame``): the face and eye
branches and the token fusion run on every frame of a window with shared weights, giving one fused
feature ``f_t`` ``(d_model,)`` per frame; a **causal** temporal module turns the features up to ``t``
into a correction ``r_t``, and GazeTR's own head reads ``f_t + r_t``. The correction's output layer
starts at zero, so an untrained temporal module gives exactly the single-frame model's predictions: a
model started from a trained single-frame run (``train --init-from RUN``) begins as that run and only
learns what the context adds.

Temporal modules (``model.temporal``):

* ``gru`` (the default; see the package README for the measurement that chose it): a GRU over the
  features; its state is one ``(layers, B, d_model)`` tensor, so streaming costs the same per frame
  whatever the stream's length;
* ``transformer``: pre-norm causal self-attention blocks with ALiBi recency biases (fixed per-head
  slopes, no position embedding), so attention depends only on how far back a frame is; streaming
  keeps each block's normalized inputs of the last ``window - 1`` frames (a KV cache), and every query
  sees at most ``window`` frames (sliding-window attention), so chunks and single frames agree.

Causal means a frame's output depends on it and the frames before it only, so streaming one frame at
a time (``TemporalStream``) gives the numbers of the whole window (tested).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class CausalGRU(nn.Module):
    """``(B, T, d)`` features -> ``(B, T, d)`` corrections (zero at initialization), and the GRU state."""

    def __init__(self, d_model: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.gru = nn.GRU(d_model, d_model, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0)
        self.out = nn.Linear(d_model, d_model)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        y, state = self.gru(x, state)
        return self.out(y), state


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """ALiBi's per-head slopes ``2^(-8 h / H)``, h = 1..H (Press et al., 2022): from long to short memory."""
    return torch.tensor([2.0 ** (-8.0 * (h + 1) / num_heads) for h in range(num_heads)])


class CausalBlock(nn.Module):
    """A pre-norm transformer block whose queries see the ``window`` latest keys up to their own, with ALiBi biases.

    ``forward(x (B, t, d), past (B, s, d) | None)`` -> ``(y (B, t, d), keys (B, s + t, d))``: ``past`` are
    the block's normalized inputs of earlier frames (the streaming cache), ``keys`` the new cache.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * d_model, d_model))
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)

    def bias(self, batch: int, t: int, s: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Additive attention mask ``(B * heads, t, s + t)``: ``-slope * distance`` back in time, ``-inf`` ahead."""
        q = torch.arange(s, s + t, device=device).view(-1, 1)
        k = torch.arange(s + t, device=device).view(1, -1)
        dist = (q - k).to(dtype)
        bias = -self.slopes.to(device=device, dtype=dtype).view(-1, 1, 1) * dist
        bias = bias.masked_fill((k > q) | (q - k >= self.window), float("-inf"))
        return bias.unsqueeze(0).expand(batch, -1, -1, -1).reshape(batch * self.num_heads, t, s + t)

    def forward(self, x: torch.Tensor, past: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.norm1(x)
        keys = h if past is None else torch.cat([past, h], dim=1)
        mask = self.bias(x.shape[0], x.shape[1], keys.shape[1] - x.shape[1], x.device, h.dtype)
        a, _ = self.attn(h, keys, keys, attn_mask=mask, need_weights=False)
        x = x + a
        return x + self.mlp(self.norm2(x)), keys


class CausalTransformer(nn.Module):
    """``(B, T, d)`` features -> ``(B, T, d)`` corrections (zero at initialization), and per-block caches."""

    def __init__(self, d_model: int, num_layers: int, num_heads: int, dropout: float, window: int) -> None:
        super().__init__()
        self.window = window
        self.blocks = nn.ModuleList(CausalBlock(d_model, num_heads, dropout, window) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, d_model)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, state: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        caches = []
        for k, block in enumerate(self.blocks):
            x, keys = block(x, None if state is None else state[k])
            caches.append(keys[:, -(self.window - 1) :] if self.window > 1 else keys[:, :0])
        return self.out(self.norm(x)), caches


class GazeTRTemporal(nn.Module):
    """Windows of crops -> per-frame pitch/yaw, causally.

    ``forward(face, leye, reye)``: ``(B, T, 3, 224, 224)``, ``(B, T, 3, 112, 112)`` x2 float RGB in
    [0, 1] -> ``(B, T, 2)`` pitch, yaw in radians; output ``t`` depends on frames ``<= t`` only. The
    frame encoder runs on all ``B x T`` frames at once (activation memory grows with ``B x T``).
    """

    def __init__(self, frame: nn.Module, temporal: nn.Module, window: int) -> None:
        super().__init__()
        self.frame = frame
        self.temporal = temporal
        self.window = window
        self.encoder_frozen = False
        # the branches' input normalization, where export and predict-raw look for it
        self.face_norm = frame.face_norm
        self.eye_norm = frame.eye_norm

    def freeze_encoder(self, frozen: bool) -> None:
        """Train the temporal module (and the head) only: the frame encoder runs without gradients, in eval mode."""
        self.encoder_frozen = frozen
        self.frame.train(self.training and not frozen)
        self.frame.head.train(self.training)

    def encode(self, face: torch.Tensor, leye: torch.Tensor, reye: torch.Tensor) -> torch.Tensor:
        """Per-frame fused features ``(B, T, d_model)`` of ``(B, T, 3, H, W)`` crops."""
        b, t = face.shape[:2]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.encoder_frozen):
            f = self.frame.features(face.flatten(0, 1), leye.flatten(0, 1), reye.flatten(0, 1))
        return f.view(b, t, -1)

    def forward(self, face: torch.Tensor, leye: torch.Tensor, reye: torch.Tensor) -> torch.Tensor:
        return self.run(face, leye, reye)[0]

    def run(self, face: torch.Tensor, leye: torch.Tensor, reye: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """``(B, T, ...)`` crops that continue the streams of ``state`` (None: new streams) -> ``(B, T, 2)`` and the new state.

        Running a video in chunks gives the same numbers as one frame at a time (and as one forward).
        """
        f = self.encode(face, leye, reye)
        r, state = self.temporal(f, state)
        return self.frame.head(f + r), state


class TemporalStream:
    """Live inference: one frame in, one gaze out, the causal state carried between calls.

    ``step(face, leye, reye)`` takes ``(B, 3, 224, 224)``, ``(B, 3, 112, 112)`` x2 float RGB in [0, 1]
    (``B`` independent streams) and returns ``(B, 2)`` pitch/yaw radians: the same numbers as the
    model's forward over the frames so far. The frame encoder runs once per frame and the temporal
    module only on the new frame, from its state. ``reset()`` starts a new stream (a new video, a face lost).
    """

    def __init__(self, model: GazeTRTemporal) -> None:
        self.model = model.eval()
        self.state: Any = None
        self.frames = 0

    def reset(self) -> None:
        self.state = None
        self.frames = 0

    @torch.no_grad()
    def step(self, face: torch.Tensor, leye: torch.Tensor, reye: torch.Tensor) -> torch.Tensor:
        out, self.state = self.model.run(face.unsqueeze(1), leye.unsqueeze(1), reye.unsqueeze(1), self.state)
        self.frames += 1
        return out[:, 0]


def temporal_parameters(model: GazeTRTemporal) -> int:
    """Parameters of the temporal module alone (what ``gazetr_temporal`` adds to its frame model)."""
    return sum(p.numel() for p in model.temporal.parameters())

