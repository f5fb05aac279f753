"""GazeTR-style gaze estimators: one backbone per crop, a transformer fusing their tokens, an MLP head.

GazeTR (Cheng & Lu, 2022; github.com/yihuacheng/GazeTR) feeds the feature map of a ResNet-18 face
branch into a transformer encoder with a learned class token and learned position embeddings, and
regresses pitch/yaw from the class token. Here each crop gives one token instead: the face (224 px) and
both eyes (112 px) each go through a backbone, are projected to ``d_model``, get a learned token-type
embedding, and a class token attends over the three of them (pre-norm encoder, final LayerNorm); an MLP
on the class token gives pitch and yaw in radians.

Models take float RGB in [0, 1] and normalize with the ImageNet statistics inside, so that ImageNet
weights for a branch can be used unchanged.

=================  ===============================  ====================  ===========
name               face branch                      eye branch            parameters
=================  ===============================  ====================  ===========
``gazetr_lite``    ResNet-18 (torchvision)          two ResNet-18         35,574,722
``gazetr_hybrid``  ViT-B/16 (timm), 224 px          one ViT-S/16, 112 px  109,354,498
``gazetr_tiny``    small CNN (tests, CPU demo)      two small CNNs        depends on width
=================  ===============================  ====================  ===========

(counts with the default fusion: ``d_model=256``, 4 layers, 8 heads, feed-forward 256.)
``gazetr_hybrid`` shares one ViT-S between the two eyes (told apart by their token embeddings): ViT-B
alone has 85.8M parameters and each ViT-S 21.6M, so a shared eye branch lands at 109M, the nearest to
the ~100M budget; separate eye branches would give 131M.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from perception_shared.errors import ConfigError, WeightsError
from perception_shared.weights import load_pretrained

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MODEL_NAMES = ("gazetr_lite", "gazetr_hybrid", "gazetr_tiny")


@dataclass
class ModelConfig:
    """Which model, its fusion transformer, and optional local weights."""

    name: Literal["gazetr_lite", "gazetr_hybrid", "gazetr_tiny"] = "gazetr_lite"
    d_model: int = 256
    num_layers: int = 4
    num_heads: int = 8
    dim_feedforward: int = 256
    dropout: float = 0.1
    tiny_width: int = 16  # channels of the first stage of the gazetr_tiny CNNs
    pretrained: Path | None = None  # a whole-model state dict (strict)
    pretrained_face: Path | None = None  # weights of the face backbone alone (e.g. ImageNet ResNet-18)
    pretrained_eye: Path | None = None  # weights of the eye backbone(s) alone

    def __post_init__(self) -> None:
        if self.d_model % self.num_heads:
            raise ValueError(f"model.d_model ({self.d_model}) must be divisible by model.num_heads ({self.num_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")


class Normalize(nn.Module):
    """ImageNet normalization of ``(B, 3, H, W)`` RGB in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def resnet18_backbone() -> nn.Module:
    """torchvision ResNet-18 without its classifier: ``(B, 3, H, W)`` -> ``(B, 512)``."""
    import torchvision  # imported here: the tiny model and the data tools do not need it

    net = torchvision.models.resnet18(weights=None)
    net.fc = nn.Identity()
    net.num_features = 512  # type: ignore[assignment]
    return net


def vit_backbone(name: str, img_size: int) -> nn.Module:
    """A timm ViT (random init) at ``img_size`` returning its class-token feature ``(B, D)``."""
    import timm  # imported here: slow to import, and only the hybrid model needs it

    return timm.create_model(name, pretrained=False, num_classes=0, img_size=img_size)


class TinyCNN(nn.Module):
    """A small CNN for the demo and tests: a 4x4 patchify stem, three stride-2 stages, global pooling."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            )

        self.features = nn.Sequential(
            nn.Conv2d(3, w, 4, stride=4, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            block(w, 2 * w), block(2 * w, 4 * w), block(4 * w, 8 * w),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.num_features = 8 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class TokenFusion(nn.Module):
    """Class token + one token per crop -> transformer encoder -> class-token feature ``(B, d_model)``."""

    def __init__(self, n_tokens: int, d_model: int, num_layers: int, num_heads: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        self.type_embed = nn.Parameter(torch.zeros(1, n_tokens + 1, d_model))
        nn.init.trunc_normal_(self.cls, std=0.02)
        nn.init.trunc_normal_(self.type_embed, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, num_heads, dim_feedforward, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, n_tokens, d_model)`` -> ``(B, d_model)``."""
        x = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.type_embed
        return self.norm(self.encoder(x))[:, 0]


class GazeTR(nn.Module):
    """Face and eye crops -> pitch/yaw.

    ``forward(face, leye, reye)``: ``(B, 3, 224, 224)``, ``(B, 3, 112, 112)``, ``(B, 3, 112, 112)`` float
    RGB in [0, 1] -> ``(B, 2)`` pitch, yaw in radians. With ``shared_eyes`` one eye backbone (and one
    projection) serves both eyes.
    """

    def __init__(
        self,
        face: nn.Module,
        eye: nn.Module,
        *,
        shared_eyes: bool,
        d_model: int = 256,
        num_layers: int = 4,
        num_heads: int = 8,
        dim_feedforward: int = 256,
        dropout: float = 0.1,
        right_eye: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.normalize = Normalize()
        self.face = face
        self.leye = eye
        self.shared_eyes = shared_eyes
        if shared_eyes:
            self.reye = None
        else:
            if right_eye is None:
                raise ValueError("GazeTR with separate eye branches needs right_eye")
            self.reye = right_eye
        d_face, d_eye = face.num_features, eye.num_features
        self.proj_face = nn.Linear(d_face, d_model)
        self.proj_leye = nn.Linear(d_eye, d_model)
        self.proj_reye = None if shared_eyes else nn.Linear(d_eye, d_model)
        self.fusion = TokenFusion(3, d_model, num_layers, num_heads, dim_feedforward, dropout)
        self.head = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, 2))

    def forward(self, face: torch.Tensor, leye: torch.Tensor, reye: torch.Tensor) -> torch.Tensor:
        n = self.normalize
        f = self.proj_face(self.face(n(face)))
        if self.shared_eyes:
            both = self.proj_leye(self.leye(n(torch.cat([leye, reye], dim=0))))
            le, re = both.chunk(2, dim=0)
        else:
            le = self.proj_leye(self.leye(n(leye)))
            re = self.proj_reye(self.reye(n(reye)))  # type: ignore[misc]
        return self.head(self.fusion(torch.stack([f, le, re], dim=1)))

    def eye_backbones(self) -> list[nn.Module]:
        return [self.leye] if self.reye is None else [self.leye, self.reye]


def _fusion_kwargs(cfg: ModelConfig) -> dict[str, float | int]:
    return {
        "d_model": cfg.d_model,
        "num_layers": cfg.num_layers,
        "num_heads": cfg.num_heads,
        "dim_feedforward": cfg.dim_feedforward,
        "dropout": cfg.dropout,
    }


def GazeTRLite(cfg: ModelConfig | None = None) -> GazeTR:  # noqa: N802 (a model constructor, named as the model)
    """Three ResNet-18 branches (face at 224, each eye at 112), separate weights; 35.6M parameters."""
    cfg = cfg or ModelConfig(name="gazetr_lite")
    return GazeTR(resnet18_backbone(), resnet18_backbone(), shared_eyes=False, right_eye=resnet18_backbone(), **_fusion_kwargs(cfg))


def GazeTRHybrid(cfg: ModelConfig | None = None) -> GazeTR:  # noqa: N802
    """timm ViT-B/16 face branch (224) and one shared ViT-S/16 eye branch (112); 109.4M parameters."""
    cfg = cfg or ModelConfig(name="gazetr_hybrid")
    face = vit_backbone("vit_base_patch16_224", 224)
    eye = vit_backbone("vit_small_patch16_224", 112)
    return GazeTR(face, eye, shared_eyes=True, **_fusion_kwargs(cfg))


def GazeTRTiny(cfg: ModelConfig | None = None) -> GazeTR:  # noqa: N802
    """Small CNN branches with the same fusion, for CPU demos and tests."""
    cfg = cfg or ModelConfig(name="gazetr_tiny", d_model=64, num_heads=4, dim_feedforward=128, num_layers=2)
    w = cfg.tiny_width
    return GazeTR(TinyCNN(w), TinyCNN(w), shared_eyes=False, right_eye=TinyCNN(w), **_fusion_kwargs(cfg))


_BUILDERS = {"gazetr_lite": GazeTRLite, "gazetr_hybrid": GazeTRHybrid, "gazetr_tiny": GazeTRTiny}


def _load_backbone(module: nn.Module, path: Path, what: str) -> None:
    """Load a backbone's weights; a classifier in the file (``fc.*``, ``head.*``) is ignored, nothing else."""
    result = load_pretrained(module, path, strict=False)
    unexpected = [k for k in result["unexpected"] if not k.startswith(("fc.", "head."))]
    problems = []
    if result["missing"]:
        problems.append(f"missing keys: {', '.join(result['missing'][:8])}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected[:8])}")
    if problems:
        raise WeightsError(f"weights file {path} does not fit the {what} backbone ({type(module).__name__}): " + "; ".join(problems))


def build_model(cfg: ModelConfig) -> GazeTR:
    """The model named by ``cfg.name``, with local weights loaded if the config names any."""
    if cfg.name not in _BUILDERS:
        raise ConfigError(f"unknown model {cfg.name!r}; known models: {', '.join(MODEL_NAMES)}")
    model = _BUILDERS[cfg.name](cfg)
    if cfg.pretrained_face is not None:
        _load_backbone(model.face, cfg.pretrained_face, "face")
    if cfg.pretrained_eye is not None:
        for eye in model.eye_backbones():
            _load_backbone(eye, cfg.pretrained_eye, "eye")
    if cfg.pretrained is not None:
        load_pretrained(model, cfg.pretrained)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
