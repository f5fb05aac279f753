"""Training augmentation of one sample: horizontal flip, crop shifts, color jitter, blur and noise.

Runs inside the dataset's ``__getitem__`` and draws only from torch's global RNG, which
``SeededDataset`` seeds from (seed, epoch, index): the same sample gets the same augmentation whichever
worker loads it and wherever a run was resumed.

The three crops come from one camera frame, so they share the flip, the color jitter and the blur
strength; noise is drawn per pixel. The frames of a window (temporal models) share one draw too.

Crop shifts stand in for the landmark error of data normalization on camera images: ``predict-raw``
centres each eye crop on the eye centre a landmark detector gives, which is a few millimetres off on real
faces (and more on faces unlike its training set), while the training crops were centred by the data's own
normalization. Each crop is shifted by its own draw (the two eyes' landmark errors are not the same), by
whole pixels, and the pixels shifted in repeat the crop's edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .geometry import flip_pitchyaw

# ITU-R BT.601 luma weights, as torchvision's rgb_to_grayscale.
_LUMA = (0.299, 0.587, 0.114)


@dataclass
class AugmentConfig:
    """Augmentation settings; ``enabled: false`` turns all of it off."""

    enabled: bool = True
    flip_prob: float = 0.5
    brightness: float = 0.25  # intensity factor drawn from [1 - b, 1 + b]
    contrast: float = 0.25  # contrast factor drawn from [1 - c, 1 + c]
    saturation: float = 0.25  # saturation factor drawn from [1 - s, 1 + s]
    blur_prob: float = 0.3
    blur_sigma: tuple[float, float] = (0.2, 1.5)  # Gaussian sigma range, in pixels of each crop
    noise_prob: float = 0.5
    noise_std: float = 0.03  # the std (in [0, 1] intensity units) is drawn from [0, noise_std]
    # Std of a random shift of each crop along each axis, in pixels of that crop (0: off), rounded to whole
    # pixels and cut at 3 std. Set them from the landmark error expected at the normalization's scale: an
    # eye crop covers normalization.eye_span_px face-crop pixels with 112 pixels.
    eye_jitter_px: float = 0.0
    face_jitter_px: float = 0.0

    def __post_init__(self) -> None:
        for name in ("flip_prob", "blur_prob", "noise_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1], got {v}")
        for name in ("brightness", "contrast", "saturation"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1), got {v}")
        lo, hi = self.blur_sigma
        if not 0.0 < lo <= hi:
            raise ValueError(f"augment.blur_sigma must be an increasing pair of positive numbers, got {self.blur_sigma}")
        for name in ("noise_std", "eye_jitter_px", "face_jitter_px"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment.{name} must be >= 0, got {getattr(self, name)}")


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(()))


def hflip_sample(
    face: torch.Tensor, leye: torch.Tensor, reye: torch.Tensor, gaze: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mirror a sample left-right: every crop is flipped, the eyes swap roles and yaw changes sign.

    In the mirrored face the subject's right eye becomes their left eye (and appears mirrored), so the
    new left-eye crop is the flipped old right-eye crop. Crops are ``(3, H, W)``; gaze is ``(2,)`` radians.
    """
    return face.flip(-1), reye.flip(-1), leye.flip(-1), flip_pitchyaw(gaze)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(C, H, W)`` float, kernel radius ``ceil(3 sigma)``, reflect padding.

    The same result as ``torchvision.transforms.v2.functional.gaussian_blur`` with kernel size
    ``2 ceil(3 sigma) + 1``, as two 1-D passes.
    """
    r = math.ceil(3 * sigma)
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[0]
    y = F.pad(x[None], (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)[0]


def color_matrix(brightness: float, contrast: float, saturation: float, mean_gray: float) -> tuple[torch.Tensor, float]:
    """Brightness, then contrast, then saturation, folded into one affine map ``x -> A x + d`` per pixel.

    The sequential definition (without clipping in between), with ``g(x)`` the BT.601 luma:
    ``x1 = b x``; ``x2 = c x1 + (1 - c) mean(g(x1))``; ``x3 = s x2 + (1 - s) g(x2)``. All three steps are
    linear in ``x`` and ``mean(g(x1)) = b * mean_gray``, so ``A = b c (s I + (1 - s) 1 l^T)`` and
    ``d = (1 - c) b mean_gray`` (the constant passes the saturation step unchanged, since l sums to 1).
    """
    luma = torch.tensor(_LUMA)
    a = brightness * contrast * (saturation * torch.eye(3) + (1.0 - saturation) * torch.ones(3, 1) * luma[None, :])
    return a, (1.0 - contrast) * brightness * mean_gray


def _shift_draw(std: float) -> tuple[int, int]:
    """A whole-pixel shift ``(dx, dy)``: normal with ``std`` per axis, cut at 3 std; no draw when ``std`` is 0."""
    if std == 0:
        return (0, 0)
    d = (torch.randn(2) * std).clamp_(-3 * std, 3 * std).round_()
    return int(d[0]), int(d[1])


def shift_crop(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """``x`` ``(C, H, W)`` with its content moved by ``dx`` pixels right and ``dy`` down, the edge repeated.

    Moving the content right is what a crop centred ``dx`` pixels further left shows.
    """
    if dx == 0 and dy == 0:
        return x
    _, h, w = x.shape
    px, py = min(abs(dx), w), min(abs(dy), h)
    y = F.pad(x[None].float(), (px, px, py, py), mode="replicate")[0].to(x.dtype)
    return y[:, py - dy : py - dy + h, px - dx : px - dx + w]


def _apply_color(x: torch.Tensor, a: torch.Tensor, d: float) -> torch.Tensor:
    c, h, w = x.shape
    return torch.addmm(torch.full((3, 1), d), a, x.reshape(c, h * w)).reshape(c, h, w)


@dataclass(frozen=True)
class AugmentDraw:
    """One random draw of the augmentation: what ``apply_augment`` does to a frame (``None``: no blur)."""

    flip: bool
    brightness: float
    contrast: float
    saturation: float
    sigma: float | None
    noise: float
    shifts: tuple[tuple[int, int], ...] = ((0, 0), (0, 0), (0, 0))  # (dx, dy) of the face, left and right eye crops


def draw_augment(cfg: AugmentConfig) -> AugmentDraw:
    """Draw flip, colour jitter, blur, noise strength and crop shifts from torch's global RNG.

    The shifts are drawn last and only when on, so that a config without them draws as before.
    """
    flip = float(torch.rand(())) < cfg.flip_prob
    b = _uniform(1 - cfg.brightness, 1 + cfg.brightness)
    c = _uniform(1 - cfg.contrast, 1 + cfg.contrast)
    s = _uniform(1 - cfg.saturation, 1 + cfg.saturation)
    sigma = _uniform(*cfg.blur_sigma) if float(torch.rand(())) < cfg.blur_prob else None
    noise = _uniform(0.0, cfg.noise_std) if float(torch.rand(())) < cfg.noise_prob else 0.0
    shifts = (_shift_draw(cfg.face_jitter_px), _shift_draw(cfg.eye_jitter_px), _shift_draw(cfg.eye_jitter_px))
    return AugmentDraw(flip, b, c, s, sigma, noise, shifts)


def apply_augment(
    d: AugmentDraw, face: torch.Tensor, leye: torch.Tensor, reye: torch.Tensor, gaze: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Apply draw ``d`` to one frame's uint8 crops and gaze; the sensor noise is drawn per pixel here."""
    if d.flip:
        face, leye, reye, gaze = hflip_sample(face, leye, reye, gaze)
    out = []
    for crop, (dx, dy) in zip((face, leye, reye), d.shifts):
        x = shift_crop(crop, dx, dy).float().mul_(1.0 / 255.0)
        mean_gray = float(x.mean(dim=(1, 2)) @ torch.tensor(_LUMA))
        x = _apply_color(x, *color_matrix(d.brightness, d.contrast, d.saturation, mean_gray))
        if d.sigma is not None:
            x = gaussian_blur(x, d.sigma)
        if d.noise > 0:
            x.add_(torch.randn(x.shape), alpha=d.noise)
        out.append(x.clamp_(0, 1).mul_(255.0).round_().to(torch.uint8))
    return out[0], out[1], out[2], gaze


def augment_sample(
    face: torch.Tensor, leye: torch.Tensor, reye: torch.Tensor, gaze: torch.Tensor, cfg: AugmentConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Augment one sample: ``(3, 224, 224)``, ``(3, 112, 112)``, ``(3, 112, 112)`` uint8 crops and ``(2,)`` gaze.

    Returns uint8 crops (re-quantized, as a camera would deliver them) and the matching gaze label.
    """
    if not cfg.enabled:
        return face, leye, reye, gaze
    return apply_augment(draw_augment(cfg), face, leye, reye, gaze)


def augment_window(
    face: torch.Tensor, leye: torch.Tensor, reye: torch.Tensor, gaze: torch.Tensor, cfg: AugmentConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Augment a window of ``T`` frames (crops ``(T, 3, H, W)``, gaze ``(T, 2)``) with ONE draw for all frames.

    The frames of a window come from one video: one flip (the sequence stays mirrored throughout), one
    colour jitter and blur, and one shift of each crop (a landmark detector's error on one face is mostly a
    steady bias); only the sensor noise is new in every frame, as a camera's would be.
    """
    if not cfg.enabled:
        return face, leye, reye, gaze
    d = draw_augment(cfg)
    frames = [apply_augment(d, face[t], leye[t], reye[t], gaze[t]) for t in range(len(face))]
    return tuple(torch.stack([f[k] for f in frames]) for k in range(4))  # type: ignore[return-value]
