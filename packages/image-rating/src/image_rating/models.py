"""A timm backbone with global pooling and a small MLP head that predicts one value per rating dimension."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from torch import nn

from perception_shared.errors import ConfigError, WeightsError
from perception_shared.weights import load_pretrained

# The backbones the research configs use; any other timm model name works too.
BACKBONES = ("resnet50", "resnet101", "efficientnet_b0", "efficientnet_b3", "vit_base_patch16_224")


class RatingModel(nn.Module):
    """``(B, 3, H, W)`` normalized images -> ``(B, D)`` standardized ratings.

    The backbone is built with ``num_classes=0``, so it returns its globally pooled features ``(B, F)``
    (average pooling for CNNs, the class token for ViTs). The head is
    ``Linear(F, h0) -> ReLU -> Dropout -> Linear(h0, h1) -> ReLU -> Dropout -> Linear(h1, D)``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_features: int,
        num_outputs: int,
        hidden: Sequence[int] = (512, 256),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        layers: list[nn.Module] = []
        width = num_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, num_outputs))
        self.head = nn.Sequential(*layers)
        self.num_outputs = num_outputs

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


def check_backbone_name(name: str) -> None:
    """An unknown timm name is a ConfigError that suggests the closest known names."""
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=6, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"unknown backbone {name!r}: not a timm model name{hint} (timm.list_models() lists them all; "
        f"the research configs use {', '.join(BACKBONES)})"
    )


def build_model(
    backbone: str,
    num_outputs: int = 14,
    pretrained_path: str | Path | None = None,
    *,
    hidden: Sequence[int] = (512, 256),
    dropout: float = 0.5,
    image_size: int | None = None,
) -> RatingModel:
    """Build ``RatingModel`` around the timm model ``backbone`` (always ``pretrained=False``).

    ``pretrained_path``: a local weights file for the backbone in timm's naming (its classifier keys,
    e.g. ``fc.*`` or ``head.*``, are ignored); every backbone tensor must be in the file with the right
    shape. Without it the backbone is randomly initialized. ``image_size`` is passed to backbones with a
    fixed input size (ViTs) so that their position embeddings fit.
    """
    check_backbone_name(backbone)
    kwargs = {}
    if image_size is not None:
        cfg = timm.models.get_pretrained_cfg(backbone)
        if cfg is not None and cfg.fixed_input_size and tuple(cfg.input_size[-2:]) != (image_size, image_size):
            kwargs["img_size"] = image_size
    net = timm.create_model(backbone, pretrained=False, num_classes=0, **kwargs)
    if pretrained_path is not None:
        _load_backbone_weights(net, backbone, Path(pretrained_path))
    return RatingModel(net, net.num_features, num_outputs, hidden, dropout)


def _load_backbone_weights(net: nn.Module, backbone: str, path: Path) -> None:
    result = load_pretrained(net, path, strict=False)
    classifier = getattr(net, "pretrained_cfg", {}).get("classifier") or "fc"
    prefixes = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    unexpected = [k for k in result["unexpected"] if not k.startswith(tuple(p + "." for p in prefixes))]
    problems = []
    if result["missing"]:
        problems.append(f"{len(result['missing'])} backbone tensor(s) missing, e.g. {', '.join(result['missing'][:5])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), e.g. {', '.join(unexpected[:5])}")
    if problems:
        raise WeightsError(f"weights file {path} does not fit backbone {backbone}: " + "; ".join(problems))


def param_groups(model: RatingModel, lr: float, weight_decay: float, backbone_lr_scale: float = 1.0) -> list[dict]:
    """Backbone and head parameter groups; biases and norm weights (1-D tensors) get no weight decay."""
    groups = []
    for part, scale in ((model.backbone, backbone_lr_scale), (model.head, 1.0)):
        if scale == 0:
            for p in part.parameters():
                p.requires_grad_(False)
            continue
        decay = [p for p in part.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in part.parameters() if p.requires_grad and p.ndim <= 1]
        groups.append({"params": decay, "lr": lr * scale, "weight_decay": weight_decay})
        groups.append({"params": no_decay, "lr": lr * scale, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]
