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
  slopes, no position embedding), so attention depends only on how far back a frame is; every query
  sees at most ``window`` frames (sliding-window attention), so chunks and single frames agree.
  Streaming keeps each block's keys and values of the last ``window`` frames in a preallocated ring
  (``KVCache``): a step projects the new frame only and attends over the ring, without concatenation.

Causal means a frame's output depends on it and the frames before it only, so streaming one frame at
a time (``TemporalStream``) gives the numbers of the whole window (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
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


def window_bias(slopes: torch.Tensor, t: int, window: int) -> torch.Tensor:
    """Additive attention bias ``(heads, t, t)`` of ``t`` frames: ``-slope * distance`` back in time, ``-inf``
    ahead and ``window`` or more frames back."""
    q = torch.arange(t).view(-1, 1)
    k = torch.arange(t).view(1, -1)
    bias = -slopes.view(-1, 1, 1) * (q - k).to(slopes.dtype)
    return bias.masked_fill((k > q) | (q - k >= window), float("-inf"))


def ring_bias(slopes: torch.Tensor, window: int) -> torch.Tensor:
    """``(2 window, heads, 1, window)`` biases of one new frame over a ring of ``window`` cached keys.

    Frame ``n`` is stored in slot ``n % window``, so slot ``s`` holds the frame ``(n - s) % window``
    frames back, or nothing yet while ``n`` is smaller. Row ``n`` serves frame ``n < window``, row
    ``window + n % window`` every later frame (the ring is full, the biases repeat).
    """
    n = torch.arange(2 * window).view(-1, 1)
    back = (n - torch.arange(window).view(1, -1)) % window
    bias = -slopes.view(1, -1, 1) * back.unsqueeze(1).to(slopes.dtype)
    return bias.masked_fill((back > n).unsqueeze(1), float("-inf")).unsqueeze(2)


@dataclass
class KVCache:
    """The streaming state of a ``CausalTransformer``: each block's keys and values of the latest ``window``
    frames in a preallocated ring ``(layers, B, heads, window, head_dim)``, and how many frames were seen."""

    keys: torch.Tensor
    values: torch.Tensor
    frames: int


class CausalBlock(nn.Module):
    """A pre-norm transformer block whose queries see the ``window`` latest frames up to their own, with ALiBi biases.

    The attention's weights are ``nn.MultiheadAttention``'s (``attn``); the block computes with them
    itself so that streaming projects only the new frame and attends over cached keys and values.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * d_model, d_model))

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys, values ``(B, heads, T, head_dim)`` of ``(B, T, d)`` inputs."""
        b, t, d = x.shape
        qkv = F.linear(self.norm1(x), self.attn.in_proj_weight, self.attn.in_proj_bias)
        q, k, v = qkv.view(b, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        return q, k, v

    def finish(self, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """The block's output ``(B, T, d)`` from its input and the attention of ``q`` over ``k``, ``v``."""
        drop = self.attn.dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=drop)
        x = x + self.attn.out_proj(a.transpose(1, 2).flatten(2))
        return x + self.mlp(self.norm2(x))


class CausalTransformer(nn.Module):
    """``(B, T, d)`` features -> ``(B, T, d)`` corrections (zero at initialization), and a ``KVCache``.

    Without a state the window's frames attend in parallel; with one, frame by frame from the cache
    (one projection of the new frame and one attention over ``window`` cached frames per block: earlier
    frames are never recomputed).
    """

    def __init__(self, d_model: int, num_layers: int, num_heads: int, dropout: float, window: int) -> None:
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        self.blocks = nn.ModuleList(CausalBlock(d_model, num_heads, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, d_model)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)
        self.register_buffer("ring", ring_bias(self.slopes, window), persistent=False)

    def forward(self, x: torch.Tensor, state: KVCache | None = None) -> tuple[torch.Tensor, KVCache]:
        if state is None:
            return self.parallel(x)
        if x.shape[1] == 1:
            return self.out(self.norm(self.step(x, state))), state
        return self.out(self.norm(torch.cat([self.step(x[:, t : t + 1], state) for t in range(x.shape[1])], dim=1))), state

    def parallel(self, x: torch.Tensor) -> tuple[torch.Tensor, KVCache]:
        """A window from an empty state; the cache it returns holds its last ``window`` frames."""
        t, w = x.shape[1], self.window
        bias = window_bias(self.slopes, t, w)
        keep = torch.arange(max(0, t - w), t, device=x.device)
        keys, values = [], []
        for block in self.blocks:
            q, k, v = block.project(x)
            for cache, new in ((keys, k), (values, v)):
                ring = new.new_zeros(*new.shape[:2], w, new.shape[3])
                ring[:, :, keep % w] = new[:, :, keep]
                cache.append(ring)
            x = block.finish(x, q, k, v, bias)
        return self.out(self.norm(x)), KVCache(torch.stack(keys), torch.stack(values), t)

    def step(self, x: torch.Tensor, state: KVCache) -> torch.Tensor:
        """One new frame ``(B, 1, d)`` of the streams in ``state`` (updated in place) -> the blocks' output ``(B, 1, d)``."""
        n, w = state.frames, self.window
        slot = n % w
        bias = self.ring[n if n < w else w + slot]
        for i, block in enumerate(self.blocks):
            q, k, v = block.project(x)
            state.keys[i, :, :, slot] = k[:, :, 0]
            state.values[i, :, :, slot] = v[:, :, 0]
            x = block.finish(x, q, state.keys[i], state.values[i], bias)
        state.frames = n + 1
        return x


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
        # run()'s computation for T = 1 without its reshapes and gradient switch: this is the live path
        f = self.model.frame.features(face, leye, reye).unsqueeze(1)
        r, self.state = self.model.temporal(f, self.state)
        self.frames += 1
        return self.model.frame.head(f + r)[:, 0]


def temporal_parameters(model: GazeTRTemporal) -> int:
    """Parameters of the temporal module alone (what ``gazetr_temporal`` adds to its frame model)."""
    return sum(p.numel() for p in model.temporal.parameters())

