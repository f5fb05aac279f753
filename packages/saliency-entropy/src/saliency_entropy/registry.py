"""Models by name (``model.architecture``), as timm builds models: an unknown name fails loudly.

``variant``: this package's DeepGaze IIE/III-style spatial model (``models.SaliencyModel``);
``deepgaze3``: DeepGaze III as published (``deepgaze3.DeepGazeIII``).
"""

from __future__ import annotations

from perception_shared.errors import ConfigError
from perception_shared.logging import get_logger

from .config import EntropyConfig, ModelConfig
from .deepgaze3 import DeepGazeIII
from .models import DensityModel, SaliencyModel

log = get_logger("saliency_entropy.registry")

ARCHITECTURES: dict[str, type[DensityModel]] = {"variant": SaliencyModel, "deepgaze3": DeepGazeIII}


def build_model(cfg: ModelConfig, entropy: EntropyConfig, *, pretrained: bool | None = None) -> DensityModel:
    """The model of a config; ``pretrained=False`` skips the pretrained weights (a checkpoint follows)."""
    if cfg.architecture not in ARCHITECTURES:
        raise ConfigError(f"model.architecture {cfg.architecture!r} is not one of {sorted(ARCHITECTURES)}")
    model = ARCHITECTURES[cfg.architecture](cfg, entropy, pretrained=pretrained)
    source = model.weights_source
    if pretrained is None:
        if source.pretrained:
            log.info("backbone weights: %s", source.describe())
        else:
            log.warning(
                "backbone %s: RANDOM INITIALIZATION (model.pretrained is false): the frozen features are noise, "
                "results do not reflect ImageNet features",
                cfg.backbone,
            )
    return model
