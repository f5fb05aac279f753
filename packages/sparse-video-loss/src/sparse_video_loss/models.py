"""SimVP (Gao et al., CVPR 2022) and its gSTA translator (SimVP v2, Tan et al. 2022), as in OpenSTL.

The layout follows OpenSTL's ``simvp_model.py`` / ``simvp_modules.py``:

* a spatial encoder of ``N_S`` ConvSC layers (3x3 conv, GroupNorm(2), SiLU) applied to every frame, with
  stride 2 at every second layer (layers 2, 4, ...), so frames shrink by ``2 ** (N_S // 2)``;
* a translator that folds time into channels, ``(B, T, C', H', W') -> (B, T*C', H', W')``:
  either the Inception U-Net of SimVP v1 (``model_type="incepu"``: ``N_T`` gInception blocks, kernels
  3/5/7/11, groups 8, skips between mirrored encoder/decoder blocks) or a stack of gated spatiotemporal
  attention blocks (``model_type="gsta"``, SimVP v2);
* a decoder mirroring the encoder (PixelShuffle upsampling), whose last layer adds the first encoder
  layer's output (the skip), then a 1x1 readout to ``C`` channels.

The output is logits of the same shape as the input, ``(B, T, C, H, W)``: this package predicts
``T`` future frames from ``T`` past ones (10 -> 10 by default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

MODEL_TYPES = ("incepu", "gsta")
INCEPTION_KERNELS = (3, 5, 7, 11)
INCEPTION_GROUPS = 8


def _stride_flags(n_layers: int) -> list[bool]:
    """Which of ``n_layers`` ConvSC layers change resolution: every second one, starting with the second."""
    return [i % 2 == 1 for i in range(n_layers)]


class ConvSC(nn.Module):
    """Conv (stride 2 to downsample, or conv to 4x channels + PixelShuffle(2) to upsample) -> GroupNorm(2) -> SiLU."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, *, downsample: bool = False, upsample: bool = False) -> None:
        super().__init__()
        if upsample:
            self.conv: nn.Module = nn.Sequential(
                nn.Conv2d(c_in, c_out * 4, kernel_size, stride=1, padding=kernel_size // 2), nn.PixelShuffle(2)
            )
        else:
            stride = 2 if downsample else 1
            self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=(kernel_size - stride + 1) // 2)
        self.norm = nn.GroupNorm(2, c_out)
        self.act = nn.SiLU()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # OpenSTL's BasicConv2d initialisation
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class Encoder(nn.Module):
    """(N, C, H, W) -> latent (N, hid_S, H/s, W/s) and the first layer's output (N, hid_S, H, W) for the skip."""

    def __init__(self, c_in: int, hid: int, n_layers: int, kernel_size: int = 3) -> None:
        super().__init__()
        flags = _stride_flags(n_layers)
        self.layers = nn.ModuleList(
            ConvSC(c_in if i == 0 else hid, hid, kernel_size, downsample=f) for i, f in enumerate(flags)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first = self.layers[0](x)
        z = first
        for layer in self.layers[1:]:
            z = layer(z)
        return z, first


class Decoder(nn.Module):
    """Mirror of the encoder; the last ConvSC sees ``hidden + skip``; a 1x1 conv reads out ``c_out`` channels."""

    def __init__(self, hid: int, c_out: int, n_layers: int, kernel_size: int = 3) -> None:
        super().__init__()
        flags = list(reversed(_stride_flags(n_layers)))
        self.layers = nn.ModuleList(ConvSC(hid, hid, kernel_size, upsample=f) for f in flags)
        self.readout = nn.Conv2d(hid, c_out, 1)

    def forward(self, z: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            z = layer(z)
        return self.readout(self.layers[-1](z + skip))


class GroupConv2d(nn.Module):
    """Grouped conv -> GroupNorm(groups) -> LeakyReLU(0.2); one branch of a gInception block."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, groups=groups)
        self.norm = nn.GroupNorm(groups, c_out)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class GInception(nn.Module):
    """1x1 conv to ``c_hid`` channels, then the sum of grouped convs with kernels 3, 5, 7, 11 to ``c_out``."""

    def __init__(self, c_in: int, c_hid: int, c_out: int, kernels: Sequence[int] = INCEPTION_KERNELS, groups: int = INCEPTION_GROUPS) -> None:
        super().__init__()
        groups = groups if c_hid % groups == 0 else 1  # as OpenSTL: fall back to dense convs
        self.conv1 = nn.Conv2d(c_in, c_hid, 1)
        self.branches = nn.ModuleList(GroupConv2d(c_hid, c_out, k, groups) for k in kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return sum(branch(x) for branch in self.branches)  # type: ignore[return-value]


class IncepUTranslator(nn.Module):
    """SimVP v1's Inception U-Net over time-folded channels: ``N_T`` encoder and ``N_T`` decoder blocks."""

    def __init__(self, c_in: int, c_hid: int, n_blocks: int) -> None:
        super().__init__()
        half = c_hid // 2
        self.enc = nn.ModuleList(GInception(c_in if i == 0 else c_hid, half, c_hid) for i in range(n_blocks))
        dec = [GInception(c_hid, half, c_hid)]
        dec += [GInception(2 * c_hid, half, c_hid) for _ in range(n_blocks - 2)]
        dec.append(GInception(2 * c_hid, half, c_in))
        self.dec = nn.ModuleList(dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        z = x
        for i, block in enumerate(self.enc):
            z = block(z)
            if i < len(self.enc) - 1:
                skips.append(z)
        z = self.dec[0](z)
        for block, skip in zip(self.dec[1:], reversed(skips)):
            z = block(torch.cat([z, skip], dim=1))
        return z


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a residual branch per sample with probability ``p`` (rescaled by 1/(1-p))."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


class LargeKernelAttention(nn.Module):
    """Depthwise 5x5 conv, depthwise 7x7 conv with dilation 3 (a 21x21 field), 1x1 conv to a value and a gate."""

    def __init__(self, dim: int, kernel_size: int = 21, dilation: int = 3) -> None:
        super().__init__()
        k0 = 2 * dilation - 1
        k1 = kernel_size // dilation + ((kernel_size // dilation) % 2 - 1)
        self.conv0 = nn.Conv2d(dim, dim, k0, padding=(k0 - 1) // 2, groups=dim)
        self.conv_spatial = nn.Conv2d(dim, dim, k1, padding=dilation * (k1 - 1) // 2, groups=dim, dilation=dilation)
        self.conv1 = nn.Conv2d(dim, 2 * dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.conv1(self.conv_spatial(self.conv0(x))).chunk(2, dim=1)
        return torch.sigmoid(gate) * value


class SpatialAttention(nn.Module):
    def __init__(self, dim: int, kernel_size: int = 21) -> None:
        super().__init__()
        self.proj_1 = nn.Conv2d(dim, dim, 1)
        self.act = nn.GELU()
        self.gating = LargeKernelAttention(dim, kernel_size)
        self.proj_2 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_2(self.gating(self.act(self.proj_1(x)))) + x


class MixMlp(nn.Module):
    """1x1 conv -> depthwise 3x3 conv -> GELU -> 1x1 conv (a convolutional feed-forward network)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.dwconv(self.fc1(x))))))


class GSTABlock(nn.Module):
    """Gated spatiotemporal attention block (SimVP v2): BN -> attention and BN -> MixMlp residuals with layer scale."""

    def __init__(self, dim: int, mlp_ratio: float = 8.0, drop: float = 0.0, drop_path: float = 0.0, init_value: float = 1e-2) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = SpatialAttention(dim, 21)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = MixMlp(dim, int(dim * mlp_ratio), drop)
        self.layer_scale_1 = nn.Parameter(init_value * torch.ones(dim))
        self.layer_scale_2 = nn.Parameter(init_value * torch.ones(dim))
        self.drop_path = drop_path
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # OpenSTL's fan-out initialisation for gSTA
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + drop_path(self.layer_scale_1[:, None, None] * self.attn(self.norm1(x)), self.drop_path, self.training)
        return x + drop_path(self.layer_scale_2[:, None, None] * self.mlp(self.norm2(x)), self.drop_path, self.training)


class GSTATranslator(nn.Module):
    """``N_T`` gSTA blocks: the first works at ``c_in`` channels then reduces to ``c_hid`` (1x1 conv), the middle
    ones at ``c_hid``, the last at ``c_hid`` then expands back to ``c_in``."""

    def __init__(self, c_in: int, c_hid: int, n_blocks: int, mlp_ratio: float = 8.0, drop: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        rates = [drop_path * i / (n_blocks - 1) for i in range(n_blocks)]  # stochastic depth grows with depth
        dims = [(c_in, c_hid)] + [(c_hid, c_hid)] * (n_blocks - 2) + [(c_hid, c_in)]
        self.blocks = nn.ModuleList(GSTABlock(d_in, mlp_ratio, drop, r) for (d_in, _), r in zip(dims, rates))
        self.reductions = nn.ModuleList(
            nn.Conv2d(d_in, d_out, 1) if d_in != d_out else nn.Identity() for d_in, d_out in dims
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block, reduce in zip(self.blocks, self.reductions):
            x = reduce(block(x))
        return x


class SimVP(nn.Module):
    """SimVP: ``(B, T, C, H, W)`` past frames -> ``(B, T, C, H, W)`` logits of the next ``T`` frames.

    Args:
        in_shape: ``(T, C, H, W)`` of the input; ``H`` and ``W`` must be divisible by ``2 ** (N_S // 2)``.
        hid_S: channels of the spatial encoder/decoder.
        hid_T: channels of the translator.
        N_S: ConvSC layers in the encoder (and in the decoder).
        N_T: translator blocks (IncepU: encoder and decoder blocks each; gSTA: blocks).
        model_type: ``"incepu"`` (SimVP v1) or ``"gsta"`` (SimVP v2).
        mlp_ratio, drop, drop_path: gSTA feed-forward width and regularisation (unused by IncepU).
        prior_prob: if given, the readout bias starts at ``logit(prior_prob)`` so the initial predicted
            probability of every pixel is ``prior_prob`` (the RetinaNet prior for rare positives); ``None``
            keeps PyTorch's default initialisation, as OpenSTL.
    """

    def __init__(
        self,
        in_shape: Sequence[int] = (10, 1, 32, 32),
        hid_S: int = 64,
        hid_T: int = 256,
        N_S: int = 4,
        N_T: int = 8,
        model_type: str = "incepu",
        *,
        mlp_ratio: float = 8.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        prior_prob: float | None = None,
    ) -> None:
        super().__init__()
        _check_args(in_shape, hid_S, hid_T, N_S, N_T, model_type, prior_prob)
        T, C, H, W = (int(v) for v in in_shape)
        self.in_shape = (T, C, H, W)
        self.model_type = model_type
        self.enc = Encoder(C, hid_S, N_S)
        self.dec = Decoder(hid_S, C, N_S)
        if model_type == "incepu":
            self.hid: nn.Module = IncepUTranslator(T * hid_S, hid_T, N_T)
        else:
            self.hid = GSTATranslator(T * hid_S, hid_T, N_T, mlp_ratio, drop, drop_path)
        if prior_prob is not None:
            nn.init.constant_(self.dec.readout.bias, math.log(prior_prob / (1.0 - prior_prob)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"SimVP expects input of shape (B, {', '.join(map(str, self.in_shape))}), got {tuple(x.shape)}")
        B, T, C, H, W = x.shape
        z, skip = self.enc(x.reshape(B * T, C, H, W))
        _, c, h, w = z.shape
        z = self.hid(z.reshape(B, T * c, h, w))
        y = self.dec(z.reshape(B * T, c, h, w), skip)
        return y.reshape(B, T, C, H, W)


def _check_args(in_shape: Sequence[int], hid_S: int, hid_T: int, N_S: int, N_T: int, model_type: str, prior_prob: float | None) -> None:
    """Clear errors for settings that would otherwise fail deep inside torch (or silently misalign frames)."""
    if len(in_shape) != 4:
        raise ValueError(f"in_shape must be (T, C, H, W), got {tuple(in_shape)}")
    T, C, H, W = in_shape
    if min(T, C, H, W) < 1:
        raise ValueError(f"in_shape must be positive, got {tuple(in_shape)}")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model_type {model_type!r}; valid: {', '.join(MODEL_TYPES)}")
    if N_S < 1:
        raise ValueError(f"N_S must be at least 1, got {N_S}")
    if N_T < 2:
        raise ValueError(f"N_T must be at least 2 (the translator has an encoder and a decoder half), got {N_T}")
    if hid_S < 2 or hid_S % 2:
        raise ValueError(f"hid_S must be even (GroupNorm with 2 groups), got {hid_S}")
    factor = 2 ** (N_S // 2)
    if H % factor or W % factor:
        raise ValueError(
            f"frame size {H}x{W} is not divisible by the encoder's downsampling factor {factor} "
            f"(2 ** (N_S // 2) with N_S={N_S}); use a size divisible by {factor} or a smaller N_S"
        )
    if model_type == "incepu":
        if hid_T < 2 or hid_T % 2:
            raise ValueError(f"hid_T must be even for the IncepU translator, got {hid_T}")
        groups = INCEPTION_GROUPS if (hid_T // 2) % INCEPTION_GROUPS == 0 else 1
        for name, channels in (("hid_T", hid_T), ("T * hid_S", T * hid_S)):
            if channels % groups:
                raise ValueError(
                    f"{name} = {channels} must be divisible by the Inception groups ({groups}); "
                    f"pick hid_T a multiple of {2 * INCEPTION_GROUPS} and hid_S so that T * hid_S is a multiple of {groups}"
                )
    elif hid_T < 1:
        raise ValueError(f"hid_T must be positive, got {hid_T}")
    if prior_prob is not None and not 0.0 < prior_prob < 1.0:
        raise ValueError(f"prior_prob must be in (0, 1), got {prior_prob}")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
