"""Pretrained backbone weights for the research configs, offline: a Hugging Face hub cache built in a
temp dir in the layout the hub client reads, the named error when nothing is there, and the record of
the weights in training's outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from perception_shared.config import load_config, resolve_config_path
from perception_shared.errors import WeightsError
from perception_shared.pretrained import sha256_file
from perception_shared.testing import go_offline, put_in_offline_hf_cache
from saliency_entropy.config import TrainConfig
from saliency_entropy.registry import build_model


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No network, HF_HUB_OFFLINE=1, empty hub and torch hub caches under tmp_path."""
    go_offline(monkeypatch, tmp_path)
    return tmp_path


def _research(*overrides: str) -> TrainConfig:
    return load_config(TrainConfig, resolve_config_path("saliency_entropy", "entropy_reg"), list(overrides))


def test_research_config_loads_exactly_the_cached_densenet201_weights(offline: Path) -> None:
    """The research config with only the backbone identifier changed to timm's DenseNet-201
    (torchvision's weights, hosted on the hub): the model holds exactly the cached tensors."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in timm.create_model("densenet201", pretrained=False).state_dict().items()}
    save_file(state, str(offline / "densenet201.safetensors"))
    link = put_in_offline_hf_cache("timm/densenet201.tv_in1k", "model.safetensors", offline / "densenet201.safetensors")
    cfg = _research("model.backbone=timm:densenet201.tv_in1k")
    assert cfg.model.pretrained and cfg.model.layers[0] == "features.denseblock4.denselayer32.norm1"
    model = build_model(cfg.model, cfg.entropy)
    source = model.weights_source
    assert source.kind == "hf-cache" and source.path == link and source.sha256 == sha256_file(link)
    loaded = model.backbone.net.state_dict()
    # what lies past the last layer read (the last dense layer's second half, norm5, the classifier) is pruned
    assert {"features.norm5", "classifier"} <= set(model.backbone.pruned)
    assert not any(model.backbone.is_pruned(layer + ".weight") for layer in cfg.model.layers)
    assert set(loaded) == {k for k in state if not model.backbone.is_pruned(k)}
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)
    assert model.channels == [1888, 128, 32]  # DeepGaze's 2048 channels from the three layers


def test_missing_research_weights_are_one_error_naming_the_model_and_the_three_ways(offline: Path) -> None:
    cfg = _research()
    assert cfg.model.backbone == "torchvision:DenseNet201_Weights.IMAGENET1K_V1"
    with pytest.raises(WeightsError) as e:
        build_model(cfg.model, cfg.entropy)
    message = str(e.value)
    assert "DenseNet201_Weights.IMAGENET1K_V1" in message and str(offline / "torch") in message
    assert "--weights PATH" in message and "model.weights_file" in message
    assert "saliency-entropy weights fetch" in message and "HF_HUB_OFFLINE" in message
