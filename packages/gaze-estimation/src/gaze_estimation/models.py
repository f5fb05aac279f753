"""GazeTR-style gaze estimators: one backbone per crop, a transformer fusing their tokens, an MLP head.

GazeTR (Cheng & Lu, 2022; github.com/yihuacheng/GazeTR) feeds the feature map of a ResNet-18 face
branch into a transformer encoder with a learned class token and learned position embeddings, and
regresses pitch/yaw from the class token. Here each crop gives one token instead: the face (224 px) and
both eyes (112 px) each go through a backbone, are projected to ``d_model``, get a learned token-type
embedding, and a class token attends over the three of them (pre-norm encoder, final LayerNorm); an MLP
on the class token gives pitch and yaw in radians.

Models take float RGB in [0, 1] and normalize inside, each branch with the mean and std of its
backbone's weights (``perception_shared.pretrained.preprocessing_for``: ImageNet statistics for the
ResNets, 0.5/0.5 for timm's augreg ViTs), so exported models and ``predict`` need nothing but the crops.

=================  ===============================  ====================  ===========
name               face branch                      eye branch            parameters
=================  ===============================  ====================  ===========
``gazetr_lite``    ResNet-18, 224 px                two ResNet-18, 112    35,574,722
``gazetr_hybrid``  ViT-B/16 (timm), 224 px          one ViT-S/16, 112 px  109,354,498
``gazetr_tiny``    small CNN (tests, CPU demo)      two small CNNs        depends on width
=================  ===============================  ====================  ===========

(counts with the default fusion: ``d_model=256``, 4 layers, 8 heads, feed-forward 256.)
``gazetr_hybrid`` shares one ViT-S between the two eyes (told apart by their token embeddings): ViT-B
alone has 85.8M parameters and each ViT-S 21.6M, so a shared eye branch lands at 109M, the nearest to
the ~100M budget; separate eye branches would give 131M.

Pretrained weights (issue 12): one request per backbone role, ``face`` and ``eye``, each by the weights'
own identifier (``model.face_weights`` / ``model.eye_weights``: a timm name with its tag, or
``torchvision:<Enum>.<member>``), resolved by ``perception_shared.pretrained`` (a local file from
``model.face_weights_file`` / ``model.eye_weights_file``, the Hugging Face and torch hub caches, a
download when online). A missing weight is a ``WeightsError`` before anything trains. ``pretrained:
false`` builds every branch at random initialization, and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from perception_shared.checkpoint import load_checkpoint
from perception_shared.errors import CheckpointError, ConfigError
from perception_shared.pretrained import (
    WeightsRequest,
    WeightsSource,
    create_timm_model,
    create_torchvision_model,
    preprocessing_for,
    random_init,
    sha256_file,
)
from perception_shared.weights import load_pretrained

from .temporal import CausalGRU, CausalTransformer, GazeTRTemporal

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FRAME_MODELS = ("gazetr_lite", "gazetr_hybrid", "gazetr_tiny")
MODEL_NAMES = (*FRAME_MODELS, "gazetr_temporal")
ROLES = ("face", "eye")
# The weights each architecture asks for when the config names none: ImageNet ResNet-18 as GazeTR uses
# (torchvision's own file), and timm's ImageNet-21k-pretrained, ImageNet-1k-fine-tuned augreg ViTs.
DEFAULT_WEIGHTS: dict[str, dict[str, str]] = {
    "gazetr_lite": {"face": "torchvision:ResNet18_Weights.IMAGENET1K_V1", "eye": "torchvision:ResNet18_Weights.IMAGENET1K_V1"},
    "gazetr_hybrid": {"face": "vit_base_patch16_224.augreg2_in21k_ft_in1k", "eye": "vit_small_patch16_224.augreg_in21k_ft_in1k"},
}


@dataclass
class ModelConfig:
    """Which model, its fusion transformer, and the weights its backbones start from."""

    name: Literal["gazetr_lite", "gazetr_hybrid", "gazetr_tiny", "gazetr_temporal"] = "gazetr_lite"
    # gazetr_temporal: the single-frame model run on every frame, and the causal module over time
    frame_model: Literal["gazetr_lite", "gazetr_hybrid", "gazetr_tiny"] = "gazetr_lite"
    temporal: Literal["gru", "transformer"] = "gru"
    temporal_layers: int = 1
    temporal_heads: int = 4  # transformer only
    # a trained single-frame run's checkpoint (train --init-from RUN) whose model starts the frame encoder
    init_from: Path | None = None
    freeze_encoder_epochs: int = 0  # first epochs train the temporal module and the head only
    d_model: int = 256
    num_layers: int = 4
    num_heads: int = 8
    dim_feedforward: int = 256
    dropout: float = 0.1
    tiny_width: int = 16  # channels of the first stage of the gazetr_tiny CNNs
    # Pretrained backbones (false: RANDOM INIT, written in the log, the manifest and every report).
    pretrained: bool = True
    face_weights: str | None = None  # weights identifier of the face backbone (null: DEFAULT_WEIGHTS)
    eye_weights: str | None = None  # weights identifier of the eye backbone(s)
    face_weights_file: Path | None = None  # a local file (or folder) with the face backbone's weights
    eye_weights_file: Path | None = None  # a local file (or folder) with the eye backbone's weights
    init_checkpoint: Path | None = None  # a whole-model state dict to start from (strict), after the backbones

    def __post_init__(self) -> None:
        if self.d_model % self.num_heads:
            raise ValueError(f"model.d_model ({self.d_model}) must be divisible by model.num_heads ({self.num_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.temporal_layers < 1 or self.temporal_heads < 1 or self.d_model % self.temporal_heads:
            raise ValueError(
                f"model.temporal_layers ({self.temporal_layers}) and model.temporal_heads ({self.temporal_heads}) must be "
                f">= 1, and model.d_model ({self.d_model}) divisible by model.temporal_heads"
            )
        if self.freeze_encoder_epochs < 0:
            raise ValueError(f"model.freeze_encoder_epochs must be >= 0, got {self.freeze_encoder_epochs}")
        if self.init_from is not None and self.name != "gazetr_temporal":
            raise ValueError(f"model.init_from (train --init-from) starts a gazetr_temporal model's frame encoder; model.name is {self.name}")

    @property
    def is_temporal(self) -> bool:
        return self.name == "gazetr_temporal"

    @property
    def frame_name(self) -> str:
        """The single-frame architecture: the model itself, or the frame encoder of ``gazetr_temporal``."""
        return self.frame_model if self.is_temporal else self.name

    def weights_identifier(self, role: str) -> str | None:
        """The identifier of the ``face`` or ``eye`` backbone's weights (None for the tiny CNNs)."""
        given = self.face_weights if role == "face" else self.eye_weights
        return given or DEFAULT_WEIGHTS.get(self.frame_name, {}).get(role)

    def weights_requests(self) -> list[WeightsRequest]:
        """One request per backbone role (what ``weights list|fetch|check`` and training resolve)."""
        out = []
        for role in ROLES:
            identifier = self.weights_identifier(role)
            if identifier is not None:
                file = self.face_weights_file if role == "face" else self.eye_weights_file
                out.append(WeightsRequest(identifier, self.pretrained, None if file is None else str(file), role=role))
        return out


class Normalize(nn.Module):
    """Per-channel normalization of ``(B, 3, H, W)`` RGB in [0, 1] by a backbone's ``mean`` and ``std``."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def backbone(identifier: str, *, pretrained: bool, file: Path | None, img_size: int | None = None) -> tuple[nn.Module, WeightsSource]:
    """A backbone without its classifier, ``(B, 3, H, W)`` -> ``(B, num_features)``, and its weights' source.

    ``torchvision:`` identifiers build torchvision's model (ResNets here) and drop its ``fc``; timm names
    build timm's without a head, at ``img_size`` for ViTs (timm resamples a pretrained position
    embedding to it).
    """
    where = {"package": "gaze-estimation", "config_key": "model.face_weights_file / model.eye_weights_file"}
    if identifier.startswith("torchvision:"):
        net, source = create_torchvision_model(identifier, pretrained=pretrained, file=file, **where)
        features = net.fc.in_features
        net.fc = nn.Identity()
        net.num_features = features  # type: ignore[assignment]
        return net, source
    kwargs = {} if img_size is None else {"img_size": img_size}
    return create_timm_model(identifier, pretrained=pretrained, file=file, num_classes=0, **where, **kwargs)


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
        face_norm: tuple[Sequence[float], Sequence[float]] = (IMAGENET_MEAN, IMAGENET_STD),
        eye_norm: tuple[Sequence[float], Sequence[float]] = (IMAGENET_MEAN, IMAGENET_STD),
    ) -> None:
        super().__init__()
        self.face_norm = Normalize(*face_norm)
        self.eye_norm = Normalize(*eye_norm)
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
        return self.head(self.features(face, leye, reye))

    def features(self, face: torch.Tensor, leye: torch.Tensor, reye: torch.Tensor) -> torch.Tensor:
        """The fused class-token feature ``(B, d_model)`` that ``head`` turns into pitch/yaw."""
        n = self.eye_norm
        f = self.proj_face(self.face(self.face_norm(face)))
        if self.shared_eyes:
            both = self.proj_leye(self.leye(n(torch.cat([leye, reye], dim=0))))
            le, re = both.chunk(2, dim=0)
        else:
            le = self.proj_leye(self.leye(n(leye)))
            re = self.proj_reye(self.reye(n(reye)))  # type: ignore[misc]
        return self.fusion(torch.stack([f, le, re], dim=1))


def _fusion_kwargs(cfg: ModelConfig) -> dict[str, float | int]:
    return {
        "d_model": cfg.d_model,
        "num_layers": cfg.num_layers,
        "num_heads": cfg.num_heads,
        "dim_feedforward": cfg.dim_feedforward,
        "dropout": cfg.dropout,
    }


def weights_manifest_path() -> Path:
    """The package's manifest of published weights hashes (``weights check``, training's warning)."""
    return Path(__file__).with_name("weights_manifest.json")


def _norm(identifier: str) -> tuple[list[float], list[float]]:
    pre = preprocessing_for(identifier)
    return pre["mean"], pre["std"]


def _build(cfg: ModelConfig, load_weights: bool) -> tuple[GazeTR, dict[str, WeightsSource]]:
    """The model of ``cfg`` and the source of each role's weights (random init unless ``load_weights``)."""
    if cfg.name not in FRAME_MODELS:
        raise ConfigError(f"unknown model {cfg.name!r}; known models: {', '.join(MODEL_NAMES)}")
    fusion = _fusion_kwargs(cfg)
    if cfg.name == "gazetr_tiny":
        if cfg.pretrained and load_weights:
            raise ConfigError("model.name gazetr_tiny has no pretrained weights: set model.pretrained: false")
        w = cfg.tiny_width
        source = random_init(f"gazetr_tiny small CNN (width {w})")
        return GazeTR(TinyCNN(w), TinyCNN(w), shared_eyes=False, right_eye=TinyCNN(w), **fusion), {"face": source, "eye": source}
    face_id, eye_id = cfg.weights_identifier("face"), cfg.weights_identifier("eye")
    assert face_id is not None and eye_id is not None  # DEFAULT_WEIGHTS covers both roles of both models
    pretrained = cfg.pretrained and load_weights
    hybrid = cfg.name == "gazetr_hybrid"
    face, face_src = backbone(face_id, pretrained=pretrained, file=cfg.face_weights_file if pretrained else None, img_size=224 if hybrid else None)
    eye_kwargs = {"pretrained": pretrained, "file": cfg.eye_weights_file if pretrained else None, "img_size": 112 if hybrid else None}
    eye, eye_src = backbone(eye_id, **eye_kwargs)
    right = None if hybrid else backbone(eye_id, **eye_kwargs)[0]
    model = GazeTR(face, eye, shared_eyes=hybrid, right_eye=right, face_norm=_norm(face_id), eye_norm=_norm(eye_id), **fusion)
    return model, {"face": face_src, "eye": eye_src}


def GazeTRLite(cfg: ModelConfig | None = None) -> GazeTR:  # noqa: N802 (a model constructor, named as the model)
    """Three ResNet-18 branches (face at 224, each eye at 112), separate weights; 35.6M parameters; random init."""
    return _build(cfg or ModelConfig(name="gazetr_lite"), load_weights=False)[0]


def GazeTRHybrid(cfg: ModelConfig | None = None) -> GazeTR:  # noqa: N802
    """timm ViT-B/16 face branch (224) and one shared ViT-S/16 eye branch (112); 109.4M parameters; random init."""
    return _build(cfg or ModelConfig(name="gazetr_hybrid"), load_weights=False)[0]


def GazeTRTiny(cfg: ModelConfig | None = None) -> GazeTR:  # noqa: N802
    """Small CNN branches with the same fusion, for CPU demos and tests."""
    cfg = cfg or ModelConfig(name="gazetr_tiny", d_model=64, num_heads=4, dim_feedforward=128, num_layers=2, pretrained=False)
    return _build(cfg, load_weights=False)[0]


def build_model(cfg: ModelConfig, *, load_weights: bool = True, window: int = 16) -> tuple[nn.Module, dict[str, WeightsSource]]:
    """The model named by ``cfg.name`` and where each backbone role's weights came from.

    With ``load_weights`` (training) the backbones get the weights the config asks for, then
    ``init_checkpoint`` if given, and a ``gazetr_temporal`` frame encoder the model of its ``init_from``
    run (role ``frame``); without (rebuilding a trained model whose checkpoint holds its weights)
    nothing is read, and the preprocessing still follows the configured weights. ``window`` is the
    temporal transformer's streaming cache (``data.sequence_length``).
    """
    if cfg.is_temporal:
        frame_cfg = replace(cfg, name=cfg.frame_model, init_from=None, init_checkpoint=None)
        frame, sources = _build(frame_cfg, load_weights and cfg.init_from is None)
        model: nn.Module = GazeTRTemporal(frame, temporal_module(cfg, window), window)
        if load_weights and cfg.init_from is not None:
            sources = {"frame": load_frame_run(frame, cfg)}  # every branch and the fusion come from the run
    else:
        model, sources = _build(cfg, load_weights)
    if load_weights and cfg.init_checkpoint is not None:
        load_pretrained(model, cfg.init_checkpoint)
    return model, sources


def temporal_module(cfg: ModelConfig, window: int) -> nn.Module:
    """The causal module of ``gazetr_temporal`` (``model.temporal``)."""
    if cfg.temporal == "gru":
        return CausalGRU(cfg.d_model, cfg.temporal_layers, cfg.dropout)
    return CausalTransformer(cfg.d_model, cfg.temporal_layers, cfg.temporal_heads, cfg.dropout, window)


def load_frame_run(frame: GazeTR, cfg: ModelConfig) -> WeightsSource:
    """Load the trained single-frame model of checkpoint ``cfg.init_from`` into ``frame`` (strict).

    Its architecture must be ``cfg.frame_model`` with the same fusion settings; anything else is a
    CheckpointError naming the checkpoint and the difference.
    """
    path = Path(cfg.init_from)  # type: ignore[arg-type]
    state = load_checkpoint(path)
    saved = (state.get("config") or {}).get("model") or {}
    if "model" not in state or saved.get("name") != cfg.frame_model:
        raise CheckpointError(
            f"--init-from {path}: expected a checkpoint of a single-frame {cfg.frame_model} run (model.frame_model), "
            f"found model {saved.get('name', 'none recorded')}"
        )
    try:
        frame.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(
            f"--init-from {path}: its {cfg.frame_model} does not fit this config's frame encoder (model.d_model, num_layers, "
            f"num_heads, dim_feedforward, tiny_width must be the run's): {str(e).splitlines()[0]}"
        ) from None
    return WeightsSource(f"single-frame run {path.parent.name} ({path.name})", "file", path, sha256_file(path))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
