"""A timm backbone with global pooling and a small MLP head that predicts one value per rating dimension."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from torch import nn

from perception_shared.pretrained import WeightsSource, create_timm_model, preprocessing_for

from .config import ModelConfig

PACKAGE = "image-rating"
WEIGHTS_KEY = "model.weights_file"
# The research configs' backbones, by the identifier of their ImageNet weights (timm 1.0's default tag
# for each architecture); any other timm name with its tag works too.
BACKBONES = (
    "resnet50.a1_in1k",
    "resnet101.a1h_in1k",
    "efficientnet_b0.ra_in1k",
    "efficientnet_b3.ra2_in1k",
    "vit_base_patch16_224.augreg2_in21k_ft_in1k",
)


class RatingModel(nn.Module):
    """``(B, 3, H, W)`` normalized images -> ``(B, D)`` standardized ratings.

    The backbone returns its globally pooled features ``(B, F)`` (average pooling for CNNs, the class
    token for ViTs; its classifier is removed). The head is
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


def build_model(
    cfg: ModelConfig,
    num_outputs: int = 14,
    *,
    image_size: int | None = None,
    pretrained: bool | None = None,
    weights_file: str | Path | None = None,
) -> tuple[RatingModel, WeightsSource]:
    """``RatingModel`` around the timm backbone ``cfg.backbone``; returns it with the record of its weights.

    With ``pretrained`` (default ``cfg.pretrained``) the backbone's weights come through
    ``perception_shared.pretrained.create_timm_model`` from ``weights_file`` (default
    ``cfg.weights_file``), the hub or torch hub caches, or a download; they must cover every backbone
    tensor: the backbone is built with its ImageNet classifier, so timm loads the file strictly (a file
    as published, classifier included; timm would skip missing keys silently when the classifier is
    dropped first), and the classifier is removed afterwards. ``pretrained=False`` initializes randomly (``WeightsSource`` kind
    ``random``); ``evaluate`` and ``predict`` use it unless the checkpoint refers to frozen pretrained weights
    instead of holding them. ``image_size``
    goes to backbones with a fixed input size (ViTs), whose position embeddings timm then resamples.
    """
    use_pretrained = cfg.pretrained if pretrained is None else pretrained
    file = (weights_file if weights_file is not None else cfg.weights_file) if use_pretrained else None
    kwargs = {}
    if image_size is not None:
        native = preprocessing_for(cfg.backbone)["input_size"][-1]  # also rejects unknown names, naming close ones
        arch = timm.models.get_pretrained_cfg(cfg.backbone)
        if arch is not None and arch.fixed_input_size and native != image_size:
            kwargs["img_size"] = image_size
    if not use_pretrained:
        kwargs["num_classes"] = 0
    net, source = create_timm_model(
        cfg.backbone,
        pretrained=use_pretrained,
        file=file,
        package=PACKAGE,
        config_key=WEIGHTS_KEY,
        **kwargs,
    )
    if use_pretrained:  # loaded strictly with the classifier; the rating head replaces it
        net.reset_classifier(0)
    return RatingModel(net, net.num_features, num_outputs, cfg.hidden, cfg.dropout), source


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
