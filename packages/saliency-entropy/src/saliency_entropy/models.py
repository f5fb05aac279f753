"""A DeepGaze IIE/III-style spatial saliency model that outputs a log-density over pixels.

Following DeepGaze III's spatial path (Kümmerer, Wallis & Bethge, JoV 2022; ``deepgaze_pytorch``):

1. the RGB image in [0, 1] is normalized with the mean and std of the backbone's weights (their own
   config, ``perception_shared.pretrained.preprocessing_for``) and shrunk by ``downsample`` (2; area
   averaging);
2. a frozen backbone (built by ``perception_shared.pretrained`` from its weights identifier, e.g.
   ``torchvision:DenseNet201_Weights.IMAGENET1K_V1``; always in eval mode) gives the outputs of the
   chosen ``layers`` (read with forward hooks; the forward stops once they are all captured);
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
computes the same thing the direct way; the tests check they agree. The later stages run channels-last,
(B, H', W', C), where their tiny channel contractions are plain matrix products without transposes.

The *bias map* (the research question's object) is the model's density for images without content:
``n_samples`` near-uniform images (``entropy.intensities`` cycled, plus i.i.d. Gaussian pixel noise of
``entropy.noise_std`` from ``entropy.seed``, clipped to [0, 1]), mixed with equal weights
(``log mean_k p_k``). Their frozen-backbone features never change, so they are computed once per image
size and device and kept (not in checkpoints), with their first-LayerNorm statistics; a regularizer
pass costs only readout and finalizer work.

``forward`` takes a batch (B, 3, H, W) or a list of (3, H_i, W_i) images of any sizes (the ``keep``
aspect mode): images of equal size run together, every one in the same single forward call.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from perception_shared.errors import ConfigError
from perception_shared.logging import get_logger
from perception_shared.pretrained import (
    WeightsSource,
    create_timm_model,
    create_torchvision_model,
    parse_identifier,
    preprocessing_for,
)

from .centerbias import prior_log_density
from .config import EntropyConfig, ModelConfig
from .losses import entropy_nats

log = get_logger("saliency_entropy.models")

PACKAGE = "saliency-entropy"
WEIGHTS_KEY = "model.weights_file"
LN_EPS = 1e-6
BLUR_TRUNCATE = 3.0

Images = torch.Tensor | list[torch.Tensor]


def build_backbone(identifier: str, *, pretrained: bool, weights_file: str | None = None) -> tuple[nn.Module, WeightsSource]:
    """The backbone of ``identifier`` and the record of its weights (``perception_shared.pretrained``):
    torchvision weights enums through torchvision (DenseNet's legacy key names renamed as torchvision
    does), timm names through timm. A missing weight is a WeightsError naming the three ways to supply it."""
    library, _ = parse_identifier(identifier, require_weights=pretrained)
    build = create_torchvision_model if library == "torchvision" else create_timm_model
    return build(identifier, pretrained=pretrained, file=weights_file, package=PACKAGE, config_key=WEIGHTS_KEY)


class _Captured(Exception):
    """Raised by the last hook to skip the rest of the backbone."""


class FeatureExtractor(nn.Module):
    """A frozen backbone returning the outputs of ``layers`` (in that order) for normalized inputs."""

    def __init__(
        self, backbone: str, layers: list[str], *, pretrained: bool, weights_file: str | None = None
    ) -> None:
        super().__init__()
        self.net, self.source = build_backbone(backbone, pretrained=pretrained, weights_file=weights_file)
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
        self.pruned = self._prune_unreached()
        # checkpoints and weight files written before pruning (or for the whole backbone) still load
        self._register_load_state_dict_pre_hook(self._drop_pruned_keys)

    def _prune_unreached(self) -> list[str]:
        """Replace the backbone's modules that the forward never reaches before the last read layer (a
        ResNet's layer3, layer4 and classifier when it reads layer2) by ``nn.Identity``: they cost memory,
        checkpoint and export size and compute nothing. Found by running one small probe image."""
        reached: set[str] = set()
        names = {module: name for name, module in self.net.named_modules()}
        handles = [m.register_forward_pre_hook(lambda m, _in: reached.add(names[m])) for m in names]
        try:
            self.forward(torch.zeros(1, 3, 64, 64))
        except ConfigError:  # a layer not reached by this probe: keep the whole backbone
            return []
        finally:
            for h in handles:
                h.remove()
        pruned = [
            name
            for name in names.values()
            if name and name not in reached and name.rpartition(".")[0] in reached  # the root "" is reached
        ]
        for name in pruned:
            parent, _, child = name.rpartition(".")
            setattr(self.net.get_submodule(parent) if parent else self.net, child, nn.Identity())
        return pruned

    def is_pruned(self, key: str) -> bool:
        """Whether ``key`` of the backbone's own state dict (``net`` 's) belongs to a pruned module."""
        return any(key.startswith(p + ".") for p in self.pruned)

    def _drop_pruned_keys(self, state: dict[str, Any], prefix: str, *_args: Any) -> None:
        for key in [k for k in state if k.startswith(prefix + "net.") and self.is_pruned(k[len(prefix) + 4 :])]:
            del state[key]

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
    """(n_out, n_in) float32 matrix U with resize(x) = U x along one axis: torch's bilinear weights
    (half-pixel centers, source index clamped at 0, no antialiasing), built in float64 on the host so
    that traced and exported graphs see a constant."""
    scale = n_in / n_out
    src = np.maximum((np.arange(n_out) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    u = np.zeros((n_out, n_in))
    np.add.at(u, (np.arange(n_out), i0), 1.0 - frac)
    np.add.at(u, (np.arange(n_out), i1), frac)
    return torch.tensor(u, dtype=torch.float64, device=device)


def _softplus_values(x: torch.Tensor) -> torch.Tensor:
    """``max(x, log(1 + exp(clamp(x, -80, 80))))``: see ``_Softplus``."""
    out = x.clamp(-80.0, 80.0).exp_().add_(1.0).log_()
    if torch.jit.is_tracing():  # exporters record the out-of-place maximum
        return torch.maximum(out, x)
    return torch.maximum(out, x, out=out)


class _Softplus(torch.autograd.Function):
    """``log(1 + exp(x))`` as ``max(x, log(1 + exp(clamp(x, -80, 80))))`` (absolute error < 6e-8 where
    ``1 + exp(x)`` rounds to 1; ``softplus(x) > x`` everywhere, and above 80 the two agree in float32),
    gradient ``sigmoid(x)``. The values of ``F.softplus``, but torch's CPU ``log1p`` (which
    ``F.softplus`` uses) is not vectorized and cost more than the rest of the bias-image readout; this
    form is a few vectorized passes over memory, and the backward one more. The clamp changes no
    float32 value (below -80, ``1 + exp(x)`` is 1) but keeps ``exp`` out of its underflow and overflow
    ranges, where torch's CPU ``exp`` takes 10-35 times longer (flushing denormals does not help)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return _softplus_values(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return torch.sigmoid(x).mul_(grad)


def softplus(x: torch.Tensor) -> torch.Tensor:
    """Softplus with the gradient of ``_Softplus``; without autograd (evaluation, export) the plain ops."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _Softplus.apply(x)
    return _softplus_values(x)


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = LN_EPS) -> torch.Tensor:
    """DeepGaze's LayerNorm: statistics over (C, H, W) per sample, affine per channel."""
    return _sample_norm(x, eps) * weight[:, None, None] + bias[:, None, None]


def _sample_norm(x: torch.Tensor, eps: float = LN_EPS) -> torch.Tensor:
    """LayerNorm without affine over all but the first dimension of ``x`` (per sample)."""
    if torch.jit.is_tracing():  # the ONNX exporter needs a constant normalized shape; the same values
        mu = x.mean(dim=tuple(range(1, x.dim())), keepdim=True)
        var = x.var(dim=tuple(range(1, x.dim())), unbiased=False, keepdim=True)
        return (x - mu) * torch.rsqrt(var + eps)
    return F.layer_norm(x.reshape(x.shape[0], -1), (x[0].numel(),), eps=eps).view(x.shape)


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
        n_in, n_out = int(n_in), int(n_out)  # a traced export bakes the spatial size in (fixed-size export)
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
        """conv0(LN(concat(resize(features)))) without building the resized features (module docstring),
        channels-last: (B, H', W', hidden[0]).

        The LayerNorm's per-sample scale and shift are applied at the features' resolution (the rows of
        every resize matrix sum to 1, so a constant passes through a resize unchanged), and maps of the
        same resolution are mixed before one resize: at the readout grid's resolution this costs one
        batched matrix product. Features stored channel-major (``f.transpose(0, 1)`` contiguous, as the
        cached bias features are) enter the channel contraction without a copy.
        """
        weight = self.convs[0].weight[:, :, 0, 0]  # (O, C)
        gamma, beta = self.norm_weight[0], self.norm_bias[0]
        mu, inv_sigma = stats
        a_matrix = weight * gamma[None, :]
        # (B, O): what every readout cell of a sample gets added after the resize
        shift = (weight @ beta + self.convs[0].bias)[None, :] - (mu * inv_sigma)[:, None] * a_matrix.sum(1)[None, :]
        low: dict[tuple[int, int], torch.Tensor] = {}
        offset = 0
        for f in features:
            b, c, h, w = f.shape
            part = (a_matrix[:, offset : offset + c] @ f.transpose(0, 1).reshape(c, -1)).view(-1, b, h, w)
            low[(h, w)] = low[(h, w)] + part if (h, w) in low else part
            offset += c
        out = None
        for (h, w), part in low.items():  # part: (O, B, h, w)
            uh, _, _ = self._matrix(h, size[0], part.device)
            uw, _, _ = self._matrix(w, size[1], part.device)
            o, b = part.shape[:2]
            scaled = part * inv_sigma[None, :, None, None]
            if out is None:
                scaled = scaled + shift.T[:, :, None, None]
            # along W at low resolution, then (B, h, W*O) -> (B, H', W'*O) in one batched product
            across = (scaled.permute(1, 2, 0, 3).reshape(-1, w) @ uw.T).view(b, h, o, size[1])
            resized = uh @ across.transpose(2, 3).reshape(b, h, size[1] * o)
            out = resized if out is None else out + resized
        return out.view(-1, size[0], size[1], weight.shape[0])

    def rest(self, x: torch.Tensor) -> torch.Tensor:
        """The stages after the first: (B, H', W', hidden[0]) channels-last first-stage output ->
        (B, 1, H', W') readout.

        Each stage is conv(LN(x) * gamma + beta) computed as LN(x) (W diag(gamma))^T + (W beta + b), one
        matrix product over the (B H' W', C) rows: channels-last keeps the tiny channel contractions and
        their gradients free of transposing copies.
        """
        x = softplus(x)
        for i in range(1, len(self.convs)):
            weight = self.convs[i].weight[:, :, 0, 0]
            b, h, w, c = x.shape
            normed = _sample_norm(x).view(-1, c)
            bias = weight @ self.norm_bias[i] + self.convs[i].bias
            # a contiguous (C, O) right factor: autograd then forms its gradient as normed^T @ grad, which
            # MKL computes about 4x faster for these (B H' W') x C shapes than the transposed product
            right = (weight * self.norm_weight[i][None, :]).T.contiguous()
            x = softplus(torch.addmm(bias, normed, right).view(b, h, w, -1))
        return x.permute(0, 3, 1, 2)

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
        first = self.convs[0](layer_norm(x, self.norm_weight[0], self.norm_bias[0]))
        return self.rest(first.permute(0, 2, 3, 1).contiguous())


def blur_matrix(n: int, sigma: torch.Tensor, truncate: float = BLUR_TRUNCATE) -> torch.Tensor:
    """(n, n) matrix of a 1-D Gaussian blur (differentiable in ``sigma``, pixels) with replicate padding.

    Taps at integer offsets ``|d| <= ceil(truncate * s)``, ``s = |sigma|`` clamped to [0.1, n] pixels
    (a blur wider than the map is no longer a blur of it). The radius is applied as a mask over the
    static range ``|d| <= ceil(truncate * n)``, so building the matrix reads no value back to the host.
    Row i holds ``k(j - i)`` for interior columns; the edge columns collect the taps beyond the edges.
    """
    s = sigma.abs().clamp(0.1, float(n))
    reach = math.ceil(truncate * n)
    offsets = torch.arange(-reach, reach + 1, device=sigma.device, dtype=sigma.dtype)
    kernel = torch.exp(-0.5 * (offsets / s) ** 2) * (offsets.abs() <= torch.ceil(truncate * s))
    kernel = kernel / kernel.sum()
    if n == 1:
        return kernel.sum().reshape(1, 1)
    rows = torch.arange(n, device=sigma.device)
    below = kernel.cumsum(0)[reach - rows]  # taps d <= -i land on pixel 0
    above = kernel.flip(0).cumsum(0).flip(0)[reach + n - 1 - rows]  # taps d >= n - 1 - i land on pixel n - 1
    inner = kernel[rows[None, 1:-1] - rows[:, None] + reach]
    return torch.cat([below[:, None], inner, above[:, None]], dim=1)


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
        """(B, 1, h, w) readout and (Hs, Ws) (or per sample (B, Hs, Ws)) log center bias -> (B, Hs, Ws)
        log-probabilities (nats).

        Nearest resize and separable blur are both linear per axis, so they are applied as one
        (Hs, h) and one (Ws, w) matrix: ``N_h (B N_w^T)``, the inner product folded into one GEMM.
        """
        (h, w), (hs, ws) = readout.shape[-2:], log_center_bias.shape[-2:]
        mh = blur_matrix(hs, self.sigma) @ nearest_matrix(h, hs, readout.device)
        mw = blur_matrix(ws, self.sigma) @ nearest_matrix(w, ws, readout.device)
        x = mh @ (readout[:, 0] @ mw.T) + self.center_bias_weight * log_center_bias
        return x - x.logsumexp(dim=(1, 2), keepdim=True)


def bias_images(cfg: EntropyConfig, size: tuple[int, int]) -> torch.Tensor:
    """(K, 3, H, W) near-uniform images in [0, 1] (see the module docstring), deterministic."""
    generator = torch.Generator().manual_seed(cfg.seed)
    k = cfg.n_samples
    levels = torch.tensor([cfg.intensities[i % len(cfg.intensities)] for i in range(k)], dtype=torch.float32)
    noise = torch.randn(k, 3, size[0], size[1], generator=generator) * cfg.noise_std
    return (levels[:, None, None, None] + noise).clamp(0.0, 1.0)


class DensityModel(nn.Module):
    """What every saliency model of this package shares: the frozen ``FeatureExtractor`` of
    ``cfg.backbone``/``cfg.layers``, the input normalization of its weights, the fitted center prior
    (a (G, G) unit-square density, the center bias and the IG baseline) and the grids derived from an
    image size. Subclasses add the head and ``forward(images, with_bias, bias_size)``, which returns
    log-probabilities on the saliency grid (image / ``saliency_map_factor``) and, with ``with_bias``,
    the bias map.

    ``pretrained`` overrides ``cfg.pretrained``: a model rebuilt to load a checkpoint (which holds every
    weight) is created without its pretrained weights. ``weights_source`` records the weights used.
    """

    def __init__(self, cfg: ModelConfig, entropy: EntropyConfig, *, pretrained: bool | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.entropy_cfg = entropy
        use_pretrained = cfg.pretrained if pretrained is None else pretrained
        self.backbone = FeatureExtractor(
            cfg.backbone, cfg.layers, pretrained=use_pretrained, weights_file=cfg.weights_file if use_pretrained else None
        )
        self.weights_source = self.backbone.source
        self.register_buffer("center_prior", torch.ones(cfg.center_prior_grid, cfg.center_prior_grid))
        self.preprocessing = preprocessing_for(cfg.backbone)
        self.register_buffer("mean", torch.tensor(self.preprocessing["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.preprocessing["std"]).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> DensityModel:
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

    def full_resolution(self, log_density: torch.Tensor) -> torch.Tensor:
        """Saliency-grid log-probabilities (..., Hs, Ws) -> image-pixel log-density (..., H, W), nats."""
        f = self.cfg.saliency_map_factor
        out = log_density.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)
        return out - 2 * math.log(f)

    def entropy_full_resolution(self, log_density: torch.Tensor) -> torch.Tensor:
        """Entropy (nats) over image pixels of a saliency-grid log-density (nearest upsampling adds 2 log f)."""
        return entropy_nats(log_density) + 2 * math.log(self.cfg.saliency_map_factor)


class SaliencyModel(DensityModel):
    """The saliency model of the module docstring (``model.architecture: variant``).
    ``forward(images, with_bias)`` is its only entry for training, so that a DDP-wrapped model runs one
    forward per step, bias map included."""

    def __init__(self, cfg: ModelConfig, entropy: EntropyConfig, *, pretrained: bool | None = None) -> None:
        super().__init__(cfg, entropy, pretrained=pretrained)
        with torch.no_grad():
            probe = self.backbone(torch.zeros(1, 3, 64, 64))
        self.channels = [int(f.shape[1]) for f in probe]
        self.readout = Readout(sum(self.channels), list(cfg.readout_channels))
        self.finalizer = Finalizer(cfg.initial_sigma, cfg.initial_center_bias_weight)
        self._bias_features: dict[
            tuple[int, int, str, bool], tuple[list[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
        ] = {}

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """As ``nn.Module.load_state_dict``; the cached bias-image features belong to the old weights."""
        self._bias_features.clear()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ----- passes --------------------------------------------------------------------------------
    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Frozen features of (B, 3, H, W) RGB images in [0, 1]."""
        x = (images - self.mean) / self.std
        h, w = images.shape[-2:]
        k = int(self.cfg.downsample)
        if h % k == 0 and w % k == 0:
            # area resampling by an integer factor is a k x k mean (and exports to ONNX)
            x = F.avg_pool2d(x, k) if k > 1 else x
        else:
            x = F.interpolate(x, size=(h // k, w // k), mode="area")
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

    def forward(
        self, images: Images, with_bias: bool = False, bias_size: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor | None]:
        """Log-probabilities on the saliency grid: (B, Hs, Ws) for a batch (B, 3, H, W), a list of
        (Hs_i, Ws_i) maps for a list of (3, H_i, W_i) images; with ``with_bias`` also the (Hs, Ws) bias
        map for images of ``bias_size`` (default: the batch's size; required for a list).

        The bias images join the images of their size after the first readout stage (every stage is
        per sample, so they do not interact with the real images): one pass, one DDP forward.
        """
        batched = isinstance(images, torch.Tensor)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate([images] if batched else images):
            groups.setdefault((int(image.shape[-2]), int(image.shape[-1])), []).append(i)
        device = (images if batched else images[0]).device
        firsts: dict[tuple[int, int], torch.Tensor] = {}
        for size, members in groups.items():
            x = images if batched else torch.stack([images[i] for i in members])
            feats = [f.float() for f in self.features(x)]
            grid = self.readout_size(size)
            with torch.autocast(device_type=device.type, enabled=False):
                firsts[size] = self.readout.first_stage(feats, grid, self.readout.stats(feats, grid))
        k = 0
        if with_bias:
            if bias_size is None and not batched:
                raise ValueError("forward(list of images, with_bias=True) needs bias_size")
            bias_key = next(iter(groups)) if bias_size is None else (int(bias_size[0]), int(bias_size[1]))
            extra, extra_stats = self.bias_features(bias_key, device)
            with torch.autocast(device_type=device.type, enabled=False):
                first = self.readout.first_stage(extra, self.readout_size(bias_key), extra_stats)
            firsts[bias_key] = torch.cat([firsts[bias_key], first]) if bias_key in firsts else first
            k = first.shape[0]
        with torch.autocast(device_type=device.type, enabled=False):
            logps = {
                size: self.finalizer(self.readout.rest(first), self.log_center_bias(size).float())
                for size, first in firsts.items()
            }
        bias = None
        if with_bias:
            mixed = logps[bias_key][-k:]
            bias = mixed.logsumexp(dim=0) - math.log(k)
            logps[bias_key] = logps[bias_key][:-k]
        if batched:
            return logps[next(iter(groups))], bias
        out: list[torch.Tensor] = [torch.empty(0)] * len(images)
        for size, members in groups.items():
            for j, i in enumerate(members):
                out[i] = logps[size][j]
        return out, bias


    def log_density_with_centerbias(self, images: torch.Tensor, centerbias: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images in [0, 1] and (B, H / f, W / f) saliency-grid center bias -> (B, H, W)
        log-density over image pixels (the exported graph)."""
        size = (int(images.shape[-2]), int(images.shape[-1]))
        feats = [f.float() for f in self.features(images)]
        grid = self.readout_size(size)
        first = self.readout.first_stage(feats, grid, self.readout.stats(feats, grid))
        logp = self.finalizer(self.readout.rest(first), centerbias)
        f = self.cfg.saliency_map_factor
        return F.interpolate(logp[:, None], scale_factor=f, mode="nearest")[:, 0] - 2 * math.log(f)

    @torch.no_grad()
    def predict_log_density(
        self, image: torch.Tensor, centerbias: torch.Tensor | None = None, history: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(3, H, W) image in [0, 1] -> (H, W) log-density over its pixels (nats). ``centerbias``: an (H, W)
        log-density over the pixels (pooled to the saliency grid), default the run's center prior. The
        variant has no scanpath network: a ``history`` is an error. Sides must be multiples of
        ``saliency_map_factor``."""
        if history is not None:
            raise ConfigError("model.architecture variant has no scanpath network: fixation histories need deepgaze3 with scanpath")
        size = (int(image.shape[-2]), int(image.shape[-1]))
        hs, ws = self.saliency_size(size)
        if centerbias is None:
            grid = self.log_center_bias(size)
        else:
            f = self.cfg.saliency_map_factor
            grid = centerbias.float().reshape(hs, f, ws, f).logsumexp(dim=(1, 3))
        return self.log_density_with_centerbias(image[None], grid[None])[0]
