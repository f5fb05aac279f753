"""DeepGaze III as published (Kümmerer, Wallis & Bethge, JoV 2022; ``deepgaze_pytorch``'s ``DeepGazeIII``
and ``DeepGazeIIIMixture``), ``model.architecture: deepgaze3``.

What it computes, for an image (B, 3, H, W), a center bias and, for scanpath models, the previous fixations:

1. the image shrunk by ``downsample`` with *nearest* interpolation (``scale_factor = 1 / downsample``, the
   scale factor not recomputed: 2 for the published model, 1.5 in the spatial stage of DeepGaze III's
   training notebook), normalized as DeepGaze does (pixel values / 255, ImageNet mean and std), through the
   frozen backbone (``models.FeatureExtractor``: torchvision's DenseNet-201, outputs of
   ``denseblock4.denselayer32.norm1`` (before its ReLU), ``.denselayer32.conv1``, ``.denselayer31.conv2``);
2. each output resized with *nearest* interpolation to the readout grid ``ceil(H / downsample /
   readout_factor)`` x the same for W, concatenated (2048 channels);
3. per mixture component: the saliency network (LayerNorm / 1x1 conv / Bias / Softplus, 2048 -> 8 -> 16 ->
   1); for scanpath models the scanpath network: the last ``history`` fixations (most recent first) encoded
   as x, y and distance maps in image pixels (pixel (row i, column j) at (j, i), minus the fixation), read
   on the readout grid by the same nearest resize, one 1x1 convolution (3 -> 128) per history position,
   summed over the fixations that exist (a NaN fixation switches its convolution and bias off), Softplus,
   LayerNorm / conv / Bias / Softplus to 16 channels; the fixation selection network: LayerNorm of each
   input, 1x1 convolutions of both summed (1 + 16 -> 128), Bias, Softplus, LayerNorm / conv / Bias /
   Softplus (-> 16), 1x1 conv (-> 1);
4. per component the finalizer (``models.Finalizer``): the center bias (a log-density over image pixels)
   downscaled by nearest interpolation with ``scale_factor = 1 / saliency_map_factor``, the readout
   resized (nearest) to it, a Gaussian blur with learned sigma (taps to ``ceil(3 sigma)``, replicate
   padding), plus the learned weight times the center bias; upsampled (nearest) to the image and
   normalized over it (log-sum-exp);
5. the mixture: ``log mean_k exp(log p_k)`` over the components (10 in the published model).

``log_density`` is exactly that, for any image size (``predict --scale native``). ``forward`` is the
package's interface (``models.DensityModel``): images in [0, 1] whose sides are multiples of
``saliency_map_factor``, log-probabilities on the saliency grid; there the nearest upsampling repeats each
cell f x f times, so normalizing on the grid gives the same density (up to the constant ``2 log f``).
Scanpath models given no history in ``forward`` (evaluation, the bias map) see one fixation at the image
center, the forced central fixation DeepGaze III's scanpaths start with.

How it differs from this package's variant (``models.SaliencyModel``): nearest instead of area
downsampling and bilinear readout resizing, LayerNorm epsilon 1e-12 instead of 1e-6, a separate Bias
after bias-free convolutions (the same function, other parameter names), a fixation selection network
after the saliency network, and the center bias taken from the full-resolution prior by nearest
downscaling instead of being evaluated at the saliency grid's cell centers. The blur sigma is clamped to
[0.1, map size] by ``models.blur_matrix`` (``deepgaze_pytorch`` does not clamp; trained models lie inside).
Parameter names follow ``deepgaze_pytorch``'s modules, except the finalizer's (``sigma``,
``center_bias_weight``) and the backbone's (``backbone.net.*``); ``import_deepgaze`` maps them.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from perception_shared.errors import ConfigError

from .config import EntropyConfig, ModelConfig
from .models import DensityModel, Finalizer, Images, bias_images, layer_norm, softplus

LN_EPS = 1e-12  # deepgaze_pytorch's LayerNorm
SALIENCY_WIDTHS = (8, 16, 1)
SCANPATH_CHANNELS = (128, 16)
SELECTION_CHANNELS = (128, 16)
CHANNELS_PER_FIXATION = 3  # x, y, distance


def conv1x1(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A bias-free 1x1 convolution of (B, C, H, W) with an (O, C, 1, 1) weight, as one matrix product per
    sample (the same values as ``F.conv2d``): a CPU profile of the scanpath training step, whose batch
    holds a small map per fixation, was led by oneDNN's 1x1 convolution backward (not benchmarked)."""
    out = torch.matmul(weight.flatten(1), x.flatten(2))
    return out.view(x.shape[0], weight.shape[0], x.shape[2], x.shape[3])


class Conv1x1(nn.Conv2d):
    """``nn.Conv2d`` with a 1x1 kernel (same parameters and state dict keys) computed by ``conv1x1``."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = conv1x1(x, self.weight)
        return out if self.bias is None else out + self.bias[None, :, None, None]


class ChannelLayerNorm(nn.Module):
    """DeepGaze's LayerNorm: statistics over (C, H, W) per sample, affine per channel, epsilon 1e-12."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layer_norm(x, self.weight, self.bias, eps=LN_EPS)


class Bias(nn.Module):
    """A learned bias per channel (DeepGaze's convolutions have none of their own)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias[None, :, None, None]


class Softplus(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return softplus(x)


def _stage(index: int, c_in: int, c_out: int) -> list[tuple[str, nn.Module]]:
    """LayerNorm, bias-free 1x1 conv, Bias, Softplus, named as in ``deepgaze_pytorch``."""
    return [
        (f"layernorm{index}", ChannelLayerNorm(c_in)),
        (f"conv{index}", Conv1x1(c_in, c_out, bias=False)),
        (f"bias{index}", Bias(c_out)),
        (f"softplus{index}", Softplus()),
    ]


def saliency_network(in_channels: int) -> nn.Sequential:
    """C -> 8 -> 16 -> 1, each stage LayerNorm / conv / Bias / Softplus."""
    widths = (in_channels, *SALIENCY_WIDTHS)
    return nn.Sequential(OrderedDict(s for i in range(3) for s in _stage(i, widths[i], widths[i + 1])))


class HistoryEncoding(nn.Module):
    """One 1x1 convolution (3 -> ``out_channels``, with bias) per history position, summed over the
    fixations that exist. Input (B, 3 n, h, w) ordered [x_0..x_{n-1}, y_0.., d_0..] (position 0 the most
    recent fixation); a fixation whose maps are NaN is switched off, bias included."""

    def __init__(self, fixations: int, out_channels: int) -> None:
        super().__init__()
        self.fixations = fixations
        self.convolutions = nn.ModuleList(
            [Conv1x1(CHANNELS_PER_FIXATION, out_channels) for _ in range(fixations)]
        )

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        # One convolution over all positions' maps with NaN (missing) maps zeroed equals the sum of the
        # per-position convolutions of the fixations that exist; their biases are added for those only.
        # (One pass over the (M, 128, h, w) output instead of three per position: training evaluates it
        # for every fixation of a batch.)
        n = self.fixations
        valid = (~torch.isnan(maps[:, :n, 0, 0])).to(maps.dtype)
        weight = torch.stack([conv.weight for conv in self.convolutions], dim=2).flatten(1, 2)  # [x_0.., y_0.., d_0..]
        bias = valid @ torch.stack([conv.bias for conv in self.convolutions])
        return conv1x1(torch.nan_to_num(maps), weight) + bias[:, :, None, None]


def scanpath_network(history: int) -> nn.Sequential:
    """History maps -> 128 (one conv per fixation) -> Softplus -> LayerNorm / conv / Bias / Softplus -> 16."""
    return nn.Sequential(
        OrderedDict(
            [
                ("encoding0", HistoryEncoding(history, SCANPATH_CHANNELS[0])),
                ("softplus0", Softplus()),
                *_stage(1, *SCANPATH_CHANNELS),
            ]
        )
    )


class MultiInputLayerNorm(nn.Module):
    """A LayerNorm per input (``layernorm_part{k}``); inputs of width 0 are absent (None)."""

    def __init__(self, widths: list[int]) -> None:
        super().__init__()
        for k, width in enumerate(widths):
            if width:
                self.add_module(f"layernorm_part{k}", ChannelLayerNorm(width))

    def forward(self, inputs: tuple[torch.Tensor | None, ...]) -> tuple[torch.Tensor | None, ...]:
        return tuple(None if x is None else getattr(self, f"layernorm_part{k}")(x) for k, x in enumerate(inputs))


class MultiInputConv(nn.Module):
    """A bias-free 1x1 convolution per input (``conv_part{k}``), summed."""

    def __init__(self, widths: list[int], out_channels: int) -> None:
        super().__init__()
        for k, width in enumerate(widths):
            if width:
                self.add_module(f"conv_part{k}", Conv1x1(width, out_channels, bias=False))

    def forward(self, inputs: tuple[torch.Tensor | None, ...]) -> torch.Tensor:
        parts = [getattr(self, f"conv_part{k}")(x) for k, x in enumerate(inputs) if x is not None]
        out = parts[0]
        for part in parts[1:]:
            out = out + part
        return out


def fixation_selection_network(scanpath: bool) -> nn.Sequential:
    """(saliency (B, 1), scanpath (B, 16) or None) -> 128 -> 16 -> 1 channel."""
    widths = [1, SCANPATH_CHANNELS[1] if scanpath else 0]
    first, second = SELECTION_CHANNELS
    return nn.Sequential(
        OrderedDict(
            [
                ("layernorm0", MultiInputLayerNorm(widths)),
                ("conv0", MultiInputConv(widths, first)),
                ("bias0", Bias(first)),
                ("softplus0", Softplus()),
                *_stage(1, first, second),
                ("conv2", Conv1x1(second, 1, bias=False)),
            ]
        )
    )


def scanpath_only_key(key: str) -> bool:
    """A state-dict key a scanpath DeepGaze III has and its spatial first stage lacks: the scanpath networks
    and the scanpath input (part 1) of the fixation selection network's first stage."""
    return key.startswith("scanpath_networks.") or ".layernorm0.layernorm_part1." in key or ".conv0.conv_part1." in key


def nearest_indices(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    """(n_out,) float32 source indices of ``F.interpolate(mode='nearest', size=n_out)`` along one axis."""
    grid = torch.arange(n_in, dtype=torch.float32, device=device)[None, None]
    return F.interpolate(grid, size=n_out, mode="nearest")[0, 0]


def scanpath_maps(history: torch.Tensor, image_size: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """(B, 3 n, h, w) x, y and distance maps of (B, n, 2) fixations (x, y) in image pixels (NaN: none),
    read on the (h, w) grid by the nearest resize from the image's (H, W) pixels."""
    rows = nearest_indices(image_size[0], grid[0], history.device)
    cols = nearest_indices(image_size[1], grid[1], history.device)
    x, y = history[..., 0].float(), history[..., 1].float()
    dx = cols[None, None, None, :] - x[:, :, None, None]
    dy = rows[None, None, :, None] - y[:, :, None, None]
    dx, dy = torch.broadcast_tensors(dx, dy)
    return torch.cat([dx, dy, torch.sqrt(dx**2 + dy**2)], dim=1)


def nearest_downscale(log_density: torch.Tensor, factor: float) -> torch.Tensor:
    """(B, H, W) -> (B, floor(H / f), floor(W / f)) by nearest interpolation, scale factor not recomputed."""
    return F.interpolate(log_density[:, None], scale_factor=1 / factor, recompute_scale_factor=False)[:, 0]


class DeepGazeIII(DensityModel):
    """DeepGaze III (module docstring): ``components`` mixture components, with scanpath networks over
    ``history`` fixations when ``cfg.scanpath``. The spatial first stage is one component without."""

    def __init__(self, cfg: ModelConfig, entropy: EntropyConfig, *, pretrained: bool | None = None) -> None:
        super().__init__(cfg, entropy, pretrained=pretrained)
        with torch.no_grad():
            channels = sum(int(f.shape[1]) for f in self.backbone(torch.zeros(1, 3, 64, 64)))
        k = cfg.components
        self.saliency_networks = nn.ModuleList([saliency_network(channels) for _ in range(k)])
        self.scanpath_networks = nn.ModuleList([scanpath_network(cfg.history) for _ in range(k)] if cfg.scanpath else [])
        self.fixation_selection_networks = nn.ModuleList([fixation_selection_network(cfg.scanpath) for _ in range(k)])
        self.finalizers = nn.ModuleList(
            [Finalizer(cfg.initial_sigma, cfg.initial_center_bias_weight) for _ in range(k)]
        )
        self._bias_features: dict[tuple[int, int, str], list[torch.Tensor]] = {}

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """As ``nn.Module.load_state_dict``; the cached bias-image features belong to the old weights."""
        self._bias_features.clear()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def readout_size(self, size: tuple[int, int]) -> tuple[int, int]:
        d, r = self.cfg.downsample, self.cfg.readout_factor
        return math.ceil(size[0] / d / r), math.ceil(size[1] / d / r)

    def log_center_bias(self, size: tuple[int, int]) -> torch.Tensor:
        """(Hs, Ws): the center prior over the image's pixels, downscaled as DeepGaze downscales its center bias."""
        self.saliency_size(size)
        return nearest_downscale(self.center_log_density(size)[None], self.cfg.saliency_map_factor)[0]

    def central_history(self, batch: int, size: tuple[int, int], device: torch.device) -> torch.Tensor:
        """(B, n, 2): one fixation at the image center (x = W / 2, y = H / 2), the others missing."""
        center = torch.tensor([[size[1] / 2, size[0] / 2]], device=device)
        missing = torch.full((self.cfg.history - 1, 2), float("nan"), device=device)
        return torch.cat([center, missing])[None].expand(batch, -1, -1)  # no in-place write: traces for any batch

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Frozen features of (B, 3, H, W) RGB images in [0, 1] (normalized, then shrunk by nearest)."""
        x = F.interpolate((images - self.mean) / self.std, scale_factor=1 / self.cfg.downsample, recompute_scale_factor=False)
        return self.backbone(x)

    def component_log_probs(
        self,
        features: list[torch.Tensor],
        size: tuple[int, int],
        centerbias: torch.Tensor,
        history: torch.Tensor | None,
        owner: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Per component (M, Hs, Ws) log-probabilities on the grid of ``centerbias`` ((B, Hs, Ws) or (Hs, Ws),
        already downscaled) for images of ``size``; ``history`` (M, n, 2), most recent first, NaN: none.
        Without ``owner`` M = B (one history per image); with ``owner`` (M,) each history row belongs to
        image ``owner[m]`` of the batch, whose saliency network output is computed once and shared."""
        grid = self.readout_size(size)
        with torch.autocast(device_type=features[0].device.type, enabled=False):
            x = torch.cat([F.interpolate(f.float(), size=grid) for f in features], dim=1)
            maps = None
            if self.cfg.scanpath:
                if history is None:
                    history = self.central_history(x.shape[0], size, x.device)
                maps = scanpath_maps(history, size, grid)
            cb = centerbias.float()
            if owner is not None and cb.dim() == 3:
                cb = cb[owner]
            out = []
            for k, (sal, select, fin) in enumerate(
                zip(self.saliency_networks, self.fixation_selection_networks, self.finalizers)
            ):
                s = sal(x) if owner is None else sal(x)[owner]
                scan = self.scanpath_networks[k](maps) if maps is not None else None
                out.append(fin(select((s, scan)), cb))
            return out

    @staticmethod
    def mixture(log_probs: list[torch.Tensor]) -> torch.Tensor:
        """log mean_k p_k over the components."""
        return torch.stack(log_probs).logsumexp(dim=0) - math.log(len(log_probs))

    @torch.no_grad()
    def log_density(
        self, images: torch.Tensor, centerbias: torch.Tensor, history: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``deepgaze_pytorch``'s call: (B, 3, H, W) pixel values in [0, 255], (B, H, W) center-bias
        log-density, (B, n, 2) previous fixations (x, y) in image pixels, most recent first (NaN: none;
        None: one central fixation) -> (B, H, W) log-density over image pixels (nats). Any image size."""
        size = (int(images.shape[-2]), int(images.shape[-1]))
        return self.log_density_from_features(self.features(images / 255.0), size, centerbias, history)

    def log_density_from_features(
        self, features: list[torch.Tensor], size: tuple[int, int], centerbias: torch.Tensor, history: torch.Tensor | None
    ) -> torch.Tensor:
        """``log_density`` after the backbone: the head, finalizers and mixture on the backbone's outputs."""
        cb = nearest_downscale(centerbias.float(), self.cfg.saliency_map_factor)
        full = []
        for logp in self.component_log_probs(features, size, cb, history):
            up = F.interpolate(logp[:, None], size=size)[:, 0]
            full.append(up - up.logsumexp(dim=(1, 2), keepdim=True))
        return self.mixture(full)

    def predict_log_density(
        self, image: torch.Tensor, centerbias: torch.Tensor | None = None, history: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(3, H, W) image in [0, 1] -> (H, W) log-density (``log_density``, any size); ``centerbias`` (H, W)
        default the run's center prior; ``history`` (n, 2) previous fixations (x, y) in the image's pixels,
        most recent LAST (the last ``history`` are used), default one central fixation."""
        size = (int(image.shape[-2]), int(image.shape[-1]))
        cb = self.center_log_density(size) if centerbias is None else centerbias
        hist = None
        if history is not None and self.cfg.scanpath:
            n = self.cfg.history
            recent = history[-n:].flip(0).float()
            hist = torch.full((1, n, 2), float("nan"), device=image.device)
            hist[0, : len(recent)] = recent.to(image.device)
        elif history is not None:
            raise ConfigError("this DeepGaze III model has no scanpath network: it takes no fixation history")
        return self.log_density(image[None] * 255.0, cb[None].to(image.device), hist)[0]

    def log_density_with_centerbias(self, images: torch.Tensor, centerbias: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images in [0, 1] and (B, H / f, W / f) saliency-grid center bias -> (B, H, W)
        log-density over image pixels (the exported graph; scanpath models: a central fixation)."""
        size = (int(images.shape[-2]), int(images.shape[-1]))
        logp = self.mixture(self.component_log_probs(self.features(images), size, centerbias, None))
        f = self.cfg.saliency_map_factor
        return F.interpolate(logp[:, None], scale_factor=f, mode="nearest")[:, 0] - 2 * math.log(f)

    def bias_features(self, size: tuple[int, int], device: torch.device) -> list[torch.Tensor]:
        """The frozen features of the bias images for images of ``size``, computed once and kept."""
        key = (size[0], size[1], str(device))
        if key not in self._bias_features:
            with torch.no_grad():
                self._bias_features[key] = [f.float() for f in self.features(bias_images(self.entropy_cfg, size).to(device))]
        return self._bias_features[key]

    def bias_log_density(self, size: tuple[int, int]) -> torch.Tensor:
        """(Hs, Ws) log-probabilities of the bias map (mixture over the bias images)."""
        logp = self.mixture(self.component_log_probs(self.bias_features(size, self.center_prior.device), size, self.log_center_bias(size), None))
        return logp.logsumexp(dim=0) - math.log(logp.shape[0])

    def forward(
        self,
        images: Images,
        with_bias: bool = False,
        bias_size: tuple[int, int] | None = None,
        history: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor | None]:
        """As ``models.SaliencyModel.forward``: (B, Hs, Ws) log-probabilities for a batch, a list of maps
        for a list of images of any sizes, and with ``with_bias`` the (Hs, Ws) bias map.

        ``history`` (B, N, n, 2) (scanpath models; training and conditional evaluation): for each image N
        fixation histories (x, y) on its pixels, most recent first, NaN where missing (rows of padding
        are all NaN); the result is then the conditional density of each: (B, N, Hs, Ws), or a list of
        (N, Hs, Ws). The backbone and the saliency network run once per image."""
        batched = isinstance(images, torch.Tensor)
        items = [images] if batched else [x[None] for x in images]
        out: list[torch.Tensor] = []
        for i, x in enumerate(items):
            size = (int(x.shape[-2]), int(x.shape[-1]))
            features, cb = self.features(x), self.log_center_bias(size)
            if history is None:
                out.append(self.mixture(self.component_log_probs(features, size, cb, None)))
                continue
            h = history if batched else history[i : i + 1]
            owner = torch.arange(h.shape[0], device=h.device).repeat_interleave(h.shape[1])
            logp = self.mixture(self.component_log_probs(features, size, cb, h.flatten(0, 1).float(), owner))
            out.append(logp.unflatten(0, (h.shape[0], h.shape[1])))
        bias = None
        if with_bias:
            if bias_size is None and not batched:
                raise ValueError("forward(list of images, with_bias=True) needs bias_size")
            bias = self.bias_log_density(bias_size or (int(images.shape[-2]), int(images.shape[-1])))
        if batched:
            return out[0], bias
        return [o[0] for o in out], bias
