"""A DeepGaze IIE/III-style spatial saliency model that outputs a log-density over pixels.

Following DeepGaze III's spatial path (Kümmerer, Wallis & Bethge, JoV 2022; ``deepgaze_pytorch``):

1. the RGB image in [0, 1] is ImageNet-normalized and shrunk by ``downsample`` (2; area averaging);
2. a frozen backbone (``torchvision:<name>`` or ``timm:<name>``, always in eval mode) gives the outputs
   of the chosen ``layers`` (read with forward hooks; the forward stops once they are all captured);
3. each is resized (bilinear) to the readout grid, ``ceil(H / downsample / readout_factor)`` by the
   same for W, and they are concatenated along channels;
4. the readout network: LayerNorm -> 1x1 conv (C -> 8) -> Softplus -> LayerNorm -> 1x1 conv (8 -> 16) ->
   Softplus -> LayerNorm -> 1x1 conv (16 -> 1) -> Softplus. LayerNorm is DeepGaze's: statistics over
   channels and space of each sample, affine parameters per channel;
5. the finalizer: nearest resize to the saliency grid (``H / saliency_map_factor``), a Gaussian blur
   with learned sigma (saliency-grid pixels, truncated at 3 sigma, replicate padding), plus a learned
   weight times the log center bias, and a log-softmax over the grid. Upsampled by
   ``saliency_map_factor`` (nearest) this is a log-density over image pixels in nats that sums to 1;
   ``full_resolution`` does that (each coarse cell's log-probability minus ``2 log factor``).

The first readout stage never builds the (B, C, H', W') tensor of resized features (C = 2048 for
DenseNet-201): resizing and the 1x1 convolution are both linear, so ``conv0(LN(resize(x)))`` equals
``(resize(A x) - mu a) / sigma + b`` with ``A = W0 diag(gamma)``, ``a = A 1``, ``b = W0 beta + b0``, and the
LayerNorm statistics mu, sigma of the resized features follow exactly from the low-resolution ones
through the resize matrices ``U`` (mean via ``U^T 1``, second moment via ``U^T U``). ``Readout.reference``
computes the same thing the direct way; the tests check they agree.

The *bias map* (the research question's object) is the model's density for images without content:
``n_samples`` near-uniform images (``entropy.intensities`` cycled, plus i.i.d. Gaussian pixel noise of
``entropy.noise_std`` from ``entropy.seed``, clipped to [0, 1]), mixed with equal weights
(``log mean_k p_k``). Their frozen-backbone features never change, so they are computed once per image
size and device and kept (not in checkpoints), with their first-LayerNorm statistics; a regularizer
pass costs only readout and finalizer work.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from perception_shared.distributed import is_main_process
from perception_shared.errors import ConfigError
from perception_shared.logging import get_logger
from perception_shared.weights import load_pretrained

from .centerbias import prior_log_density
from .config import EntropyConfig, ModelConfig
from .losses import entropy_nats

log = get_logger("saliency_entropy.models")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LN_EPS = 1e-6
BLUR_TRUNCATE = 3.0


def build_backbone(spec: str) -> nn.Module:
    """``torchvision:<name>`` or ``timm:<name>`` with random weights (never downloaded)."""
    source, _, name = spec.partition(":")
    if source == "torchvision":
        import torchvision

        known = torchvision.models.list_models()
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            raise ConfigError(
                f"model.backbone: torchvision has no model {name!r}" + (f"; did you mean {close}?" if close else "")
            )
        return torchvision.models.get_model(name, weights=None)
    if source == "timm":
        import timm

        if not timm.is_model(name):
            close = difflib.get_close_matches(name, timm.list_models(), n=3)
            raise ConfigError(
                f"model.backbone: timm has no model {name!r}" + (f"; did you mean {close}?" if close else "")
            )
        return timm.create_model(name, pretrained=False)
    raise ConfigError(f"model.backbone must start with 'torchvision:' or 'timm:', got {spec!r}")


_LEGACY_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _torchvision_legacy_key(key: str) -> str:
    """torchvision's published DenseNet weights name ``denselayerN.norm.1.weight`` what the model calls
    ``denselayerN.norm1.weight`` (torchvision renames them when it loads them itself)."""
    m = _LEGACY_DENSENET_KEY.match(key)
    return m.group(1) + m.group(2) if m else key


class _Captured(Exception):
    """Raised by the last hook to skip the rest of the backbone."""


class FeatureExtractor(nn.Module):
    """A frozen backbone returning the outputs of ``layers`` (in that order) for normalized inputs."""

    def __init__(self, backbone: str, layers: list[str], weights: str | None = None) -> None:
        super().__init__()
        self.net = build_backbone(backbone)
        self.pretrained = weights is not None
        if weights is not None:
            load_pretrained(self.net, weights, rename=_torchvision_legacy_key)
        modules = dict(self.net.named_modules())
        for layer in layers:
            if layer not in modules:
                close = difflib.get_close_matches(layer, list(modules), n=3)
                raise ConfigError(
                    f"model.layers: {backbone} has no layer {layer!r}" + (f"; did you mean {close}?" if close else "")
                )
        self.layers = list(layers)
        self._outputs: dict[str, torch.Tensor] = {}
        for layer in self.layers:
            modules[layer].register_forward_hook(self._hook(layer))
        self.net.requires_grad_(False)
        self.net.eval()

    def _hook(self, layer: str):
        def fn(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            # clone: some backbones apply in-place ReLUs to a hooked output afterwards
            self._outputs[layer] = output.clone()
            if len(self._outputs) == len(self.layers):
                raise _Captured

        return fn

    def train(self, mode: bool = True) -> FeatureExtractor:
        super().train(False)  # frozen: batch-norm statistics stay the pretrained ones
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self._outputs = {}
        try:
            self.net(x)
        except _Captured:
            pass
        if len(self._outputs) != len(self.layers):
            missing = [layer for layer in self.layers if layer not in self._outputs]
            raise ConfigError(f"model.layers {missing} were not reached by the backbone's forward pass")
        out = [self._outputs[layer] for layer in self.layers]
        self._outputs = {}
        return out


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The readout-grid resize: bilinear (half-pixel centers), a separable linear map per axis."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _resize_matrix(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    """(n_out, n_in) matrix U with resize(x) = U x along one axis."""
    eye = torch.eye(n_in, dtype=torch.float64, device=device)[:, None, :, None]
    return resize(eye, (n_out, 1))[:, 0, :, 0].T.contiguous()


class _Softplus(torch.autograd.Function):
    """``log(1 + exp(x))`` as ``max(x, 0) + log(1 + exp(-|x|))`` (absolute error < 6e-8), gradient
    ``sigmoid(x)``. Same values as ``F.softplus``, but torch's CPU ``log1p`` (used by ``F.softplus``) is
    not vectorized and made the readout of the 16 bias images cost more than the rest of a step."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp_min(0) + torch.log(1 + torch.exp(-x.abs()))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.sigmoid(x)


def softplus(x: torch.Tensor) -> torch.Tensor:
    return _Softplus.apply(x)


def _layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """DeepGaze's LayerNorm: statistics over (C, H, W) per sample, affine per channel."""
    return F.layer_norm(x, x.shape[1:], eps=LN_EPS) * weight[:, None, None] + bias[:, None, None]


def _left(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``matrix @ x`` over the second-last axis of (..., h, w), as one GEMM: (n, h) -> (..., n, w)."""
    return (x.transpose(-1, -2) @ matrix.T).transpose(-1, -2)


class Readout(nn.Module):
    """LayerNorm + 1x1 conv + Softplus stages, C -> hidden[0] -> hidden[1] -> ... -> 1 channel."""

    def __init__(self, in_channels: int, hidden: list[int]) -> None:
        super().__init__()
        widths = [in_channels, *hidden, 1]
        self.norm_weight = nn.ParameterList([nn.Parameter(torch.ones(c)) for c in widths[:-1]])
        self.norm_bias = nn.ParameterList([nn.Parameter(torch.zeros(c)) for c in widths[:-1]])
        self.convs = nn.ModuleList([nn.Conv2d(a, b, 1) for a, b in zip(widths[:-1], widths[1:])])
        self._matrices: dict[tuple[int, int, str], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def _matrix(self, n_in: int, n_out: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """U (n_out, n_in), U^T 1 and U^T U for one axis (float32, cached)."""
        key = (n_in, n_out, str(device))
        if key not in self._matrices:
            u = _resize_matrix(n_in, n_out, device)
            self._matrices[key] = (u.float(), u.sum(0).float(), (u.T @ u).float())
        return self._matrices[key]

    def stats(self, features: list[torch.Tensor], size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) mean and 1/std of the first LayerNorm over the resized, concatenated features.

        Exact without resizing: sum(U_h X U_w^T) = (U_h^T 1)^T X (U_w^T 1), and since the rows of U sum
        to 1, the centered sum of squares is sum((G_h Xc) * (Xc G_w)) with G = U^T U, Xc = X - mean.
        """
        batch = features[0].shape[0]
        total = sum(f.shape[1] for f in features) * size[0] * size[1]
        s1 = features[0].new_zeros(batch)
        for f in features:
            _, rh, _ = self._matrix(f.shape[2], size[0], f.device)
            _, rw, _ = self._matrix(f.shape[3], size[1], f.device)
            s1 = s1 + torch.einsum("bchw,h,w->b", f, rh, rw)
        mu = s1 / total
        s2 = features[0].new_zeros(batch)
        for f in features:
            _, _, gh = self._matrix(f.shape[2], size[0], f.device)
            _, _, gw = self._matrix(f.shape[3], size[1], f.device)
            centered = f - mu[:, None, None, None]
            s2 = s2 + (_left(gh, centered) * (centered @ gw)).sum(dim=(1, 2, 3))
        return mu, torch.rsqrt(s2 / total + LN_EPS)

    def first_stage(
        self, features: list[torch.Tensor], size: tuple[int, int], stats: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """conv0(LN(concat(resize(features)))) without building the resized features (module docstring).

        Features stored channel-major (``f.transpose(0, 1)`` contiguous, as the cached bias features
        are) enter the channel contraction without a copy.
        """
        weight = self.convs[0].weight[:, :, 0, 0]  # (O, C)
        gamma, beta = self.norm_weight[0], self.norm_bias[0]
        mu, inv_sigma = stats
        a_matrix = weight * gamma[None, :]
        mixed = 0.0
        offset = 0
        for f in features:
            c = f.shape[1]
            uh, _, _ = self._matrix(f.shape[2], size[0], f.device)
            uw, _, _ = self._matrix(f.shape[3], size[1], f.device)
            b, _, h, w = f.shape
            low = (
                (a_matrix[:, offset : offset + c] @ f.transpose(0, 1).reshape(c, -1))
                .reshape(-1, b, h, w)
                .transpose(0, 1)
            )
            mixed = mixed + _left(uh, low) @ uw.T
            offset += c
        a = a_matrix.sum(1)
        b = weight @ beta + self.convs[0].bias
        return (mixed - mu[:, None, None, None] * a[None, :, None, None]) * inv_sigma[:, None, None, None] + b[
            None, :, None, None
        ]

    def rest(self, x: torch.Tensor) -> torch.Tensor:
        """The stages after the first: (B, hidden[0], H', W') first-stage output -> (B, 1, H', W').

        Each stage is conv(LN(x) * gamma + beta) computed as (W diag(gamma)) LN(x) + (W beta + b), one
        batched matrix product over (B, C, H'W') views: the same values in fewer passes over memory.
        """
        x = softplus(x)
        for i in range(1, len(self.convs)):
            weight = self.convs[i].weight[:, :, 0, 0]
            b, c, h, w = x.shape
            normed = F.layer_norm(x, (c, h, w), eps=LN_EPS).view(b, c, h * w)
            bias = weight @ self.norm_bias[i] + self.convs[i].bias
            x = softplus(
                (torch.matmul(weight * self.norm_weight[i][None, :], normed) + bias[None, :, None]).view(b, -1, h, w)
            )
        return x

    def forward(
        self,
        features: list[torch.Tensor],
        size: tuple[int, int],
        stats: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """(B, 1, *size) readout of fp32 feature maps (B, C_i, h_i, w_i) on the readout grid; ``stats``
        are the first LayerNorm's statistics when already known (``stats``), computed otherwise."""
        return self.rest(self.first_stage(features, size, stats if stats is not None else self.stats(features, size)))

    def reference(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """The same readout computed directly (resize, concatenate, LayerNorm, convolve); for tests."""
        x = torch.cat([resize(f.float(), size) for f in features], dim=1)
        return self.rest(self.convs[0](_layer_norm(x, self.norm_weight[0], self.norm_bias[0])))


def blur_matrix(n: int, sigma: torch.Tensor, truncate: float = BLUR_TRUNCATE) -> torch.Tensor:
    """(n, n) matrix of a 1-D Gaussian blur (differentiable in ``sigma``, pixels) with replicate padding."""
    s = sigma.abs().clamp_min(0.1)
    radius = max(1, math.ceil(truncate * float(s.detach())))
    offsets = torch.arange(-radius, radius + 1, device=sigma.device)
    kernel = torch.exp(-0.5 * (offsets.to(sigma.dtype) / s) ** 2)
    kernel = kernel / kernel.sum()
    # replicate padding: taps beyond an edge read the edge pixel
    source = (torch.arange(n, device=sigma.device)[:, None] + offsets[None, :]).clamp(0, n - 1)
    return torch.zeros(n, n, dtype=sigma.dtype, device=sigma.device).scatter_add(1, source, kernel.expand(n, -1))


def nearest_matrix(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    """(n_out, n_in) 0/1 matrix of ``F.interpolate(mode='nearest')`` along one axis."""
    eye = torch.eye(n_in, device=device)[:, None, :, None]
    return F.interpolate(eye, size=(n_out, 1), mode="nearest")[:, 0, :, 0].T.contiguous()


class Finalizer(nn.Module):
    """Readout -> log-density on the saliency grid: resize, blur, + w * log center bias, log-softmax."""

    def __init__(self, sigma: float, center_bias_weight: float) -> None:
        super().__init__()
        self.sigma = nn.Parameter(torch.tensor(float(sigma)))
        self.center_bias_weight = nn.Parameter(torch.tensor(float(center_bias_weight)))

    def forward(self, readout: torch.Tensor, log_center_bias: torch.Tensor) -> torch.Tensor:
        """(B, 1, h, w) readout and (Hs, Ws) log center bias -> (B, Hs, Ws) log-probabilities (nats).

        Nearest resize and separable blur are both linear per axis, so they are applied as one
        (Hs, h) and one (Ws, w) matrix: ``(B N_h) x (B N_w)^T``.
        """
        (h, w), (hs, ws) = readout.shape[-2:], log_center_bias.shape
        mh = blur_matrix(hs, self.sigma) @ nearest_matrix(h, hs, readout.device)
        mw = blur_matrix(ws, self.sigma) @ nearest_matrix(w, ws, readout.device)
        x = _left(mh, readout[:, 0]) @ mw.T + self.center_bias_weight * log_center_bias
        return x - x.logsumexp(dim=(1, 2), keepdim=True)


def bias_images(cfg: EntropyConfig, size: tuple[int, int]) -> torch.Tensor:
    """(K, 3, H, W) near-uniform images in [0, 1] (see the module docstring), deterministic."""
    generator = torch.Generator().manual_seed(cfg.seed)
    k = cfg.n_samples
    levels = torch.tensor([cfg.intensities[i % len(cfg.intensities)] for i in range(k)], dtype=torch.float32)
    noise = torch.randn(k, 3, size[0], size[1], generator=generator) * cfg.noise_std
    return (levels[:, None, None, None] + noise).clamp(0.0, 1.0)


class SaliencyModel(nn.Module):
    """The saliency model of the module docstring. ``forward(images, with_bias)`` is its only entry for
    training, so that a DDP-wrapped model runs one forward per step, bias map included."""

    def __init__(self, cfg: ModelConfig, entropy: EntropyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.entropy_cfg = entropy
        self.backbone = FeatureExtractor(cfg.backbone, cfg.layers, cfg.weights)
        with torch.no_grad():
            probe = self.backbone(torch.zeros(1, 3, 64, 64))
        self.channels = [int(f.shape[1]) for f in probe]
        self.readout = Readout(sum(self.channels), list(cfg.readout_channels))
        self.finalizer = Finalizer(cfg.initial_sigma, cfg.initial_center_bias_weight)
        self.register_buffer("center_prior", torch.ones(cfg.center_prior_grid, cfg.center_prior_grid))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._bias_features: dict[
            tuple[int, int, str, bool], tuple[list[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
        ] = {}
        if not self.backbone.pretrained and is_main_process():
            log.warning(
                "backbone %s has RANDOM weights (model.weights is null): results do not reflect ImageNet features",
                cfg.backbone,
            )

    def train(self, mode: bool = True) -> SaliencyModel:
        super().train(mode)
        self.backbone.train(False)
        return self

    def set_center_prior(self, density: Any) -> None:
        """Use a fitted (G, G) unit-square density (``CenterPrior.density``) as the center bias."""
        d = torch.as_tensor(density, dtype=torch.float32)
        if d.shape != self.center_prior.shape:
            raise ValueError(
                f"center prior grid {tuple(d.shape)} does not match model.center_prior_grid {tuple(self.center_prior.shape)}"
            )
        self.center_prior.copy_(d)

    # ----- grids ---------------------------------------------------------------------------------
    def readout_size(self, size: tuple[int, int]) -> tuple[int, int]:
        f = self.cfg.downsample * self.cfg.readout_factor
        return math.ceil(size[0] / f), math.ceil(size[1] / f)

    def saliency_size(self, size: tuple[int, int]) -> tuple[int, int]:
        f = self.cfg.saliency_map_factor
        if size[0] % f or size[1] % f:
            raise ValueError(f"image size {size} must be divisible by model.saliency_map_factor={f}")
        return size[0] // f, size[1] // f

    def log_center_bias(self, size: tuple[int, int]) -> torch.Tensor:
        """(Hs, Ws) log center bias on the saliency grid of an image of ``size`` = (H, W)."""
        return prior_log_density(self.center_prior, self.saliency_size(size))

    def center_log_density(self, size: tuple[int, int]) -> torch.Tensor:
        """(H, W) log-density over image pixels of the center prior (the IG baseline), nats."""
        return prior_log_density(self.center_prior, size)

    # ----- passes --------------------------------------------------------------------------------
    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Frozen features of (B, 3, H, W) RGB images in [0, 1]."""
        x = (images - self.mean) / self.std
        h, w = images.shape[-2:]
        x = F.interpolate(x, size=(h // self.cfg.downsample, w // self.cfg.downsample), mode="area")
        return self.backbone(x)

    def head(
        self,
        features: list[torch.Tensor],
        size: tuple[int, int],
        stats: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Readout and finalizer: (B, Hs, Ws) log-probabilities on the saliency grid of images of ``size``.

        Always in fp32 (autocast off): the LayerNorm moments and the log-softmax need the precision.
        """
        with torch.autocast(device_type=features[0].device.type, enabled=False):
            readout = self.readout([f.float() for f in features], self.readout_size(size), stats)
            return self.finalizer(readout, self.log_center_bias(size).float())

    def bias_features(
        self, size: tuple[int, int], device: torch.device
    ) -> tuple[list[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """The frozen features of the bias images for images of ``size`` and their first-LayerNorm
        statistics: both depend on no trainable parameter, so they are computed once and kept."""
        # The backbone runs under the caller's autocast, like the real images' (bf16 or fp32 features).
        key = (size[0], size[1], str(device), torch.is_autocast_enabled(device.type))
        if key not in self._bias_features:
            images = bias_images(self.entropy_cfg, size).to(device)
            with torch.no_grad():
                # channel-major storage: the readout's channel contraction then needs no copy
                feats = [f.float().transpose(0, 1).contiguous().transpose(0, 1) for f in self.features(images)]
                with torch.autocast(device_type=device.type, enabled=False):
                    self._bias_features[key] = (feats, self.readout.stats(feats, self.readout_size(size)))
        return self._bias_features[key]

    def bias_log_density(self, size: tuple[int, int]) -> torch.Tensor:
        """(Hs, Ws) log-probabilities of the bias map on the saliency grid (mixture of the bias images)."""
        feats, stats = self.bias_features(size, self.center_prior.device)
        logp = self.head(feats, size, stats)
        return logp.logsumexp(dim=0) - math.log(logp.shape[0])

    def forward(self, images: torch.Tensor, with_bias: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, Hs, Ws) log-probabilities on the saliency grid, and with ``with_bias`` the (Hs, Ws) bias map.

        The bias images join the batch after the first readout stage (every stage is per sample, so
        they do not interact with the real images): one pass, one DDP forward.
        """
        size = (int(images.shape[-2]), int(images.shape[-1]))
        feats = [f.float() for f in self.features(images)]
        if not with_bias:
            return self.head(feats, size), None
        extra, extra_stats = self.bias_features(size, images.device)
        grid = self.readout_size(size)
        with torch.autocast(device_type=images.device.type, enabled=False):
            first = torch.cat(
                [
                    self.readout.first_stage(feats, grid, self.readout.stats(feats, grid)),
                    self.readout.first_stage(extra, grid, extra_stats),
                ]
            )
            logp = self.finalizer(self.readout.rest(first), self.log_center_bias(size).float())
        batch = images.shape[0]
        bias = logp[batch:].logsumexp(dim=0) - math.log(logp.shape[0] - batch)
        return logp[:batch], bias

    def full_resolution(self, log_density: torch.Tensor) -> torch.Tensor:
        """Saliency-grid log-probabilities (..., Hs, Ws) -> image-pixel log-density (..., H, W), nats."""
        f = self.cfg.saliency_map_factor
        out = log_density.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)
        return out - 2 * math.log(f)

    def entropy_full_resolution(self, log_density: torch.Tensor) -> torch.Tensor:
        """Entropy (nats) over image pixels of a saliency-grid log-density (nearest upsampling adds 2 log f)."""
        return entropy_nats(log_density) + 2 * math.log(self.cfg.saliency_map_factor)


def build_model(cfg: ModelConfig, entropy: EntropyConfig) -> SaliencyModel:
    return SaliencyModel(cfg, entropy)
