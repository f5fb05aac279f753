"""Backbones at the real input size, the head, name errors and a user's own weights file."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from image_rating.config import ModelConfig
from image_rating.models import BACKBONES, build_model, param_groups
from perception_shared.errors import WeightsError


def _random(backbone: str, **kw) -> ModelConfig:
    return ModelConfig(backbone=backbone, pretrained=False, **kw)


def _forward_backward(name: str) -> None:
    torch.manual_seed(0)
    size = timm.models.get_pretrained_cfg(name).input_size[-1]  # the weights' own input size
    model, source = build_model(_random(name), num_outputs=14, image_size=size)
    assert source.kind == "random" and not source.pretrained
    images = torch.randn(2, 3, size, size)
    out = model.train()(images)
    assert out.shape == (2, 14) and out.dtype == torch.float32 and torch.isfinite(out).all()
    out.pow(2).mean().backward()
    first = next(p for p in model.backbone.parameters() if p.requires_grad)
    assert first.grad is not None and torch.isfinite(first.grad).all() and first.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.head.parameters())


@pytest.mark.parametrize(
    "name",
    [
        "efficientnet_b0.ra_in1k",
        pytest.param("resnet50.a1_in1k", marks=pytest.mark.slow),
        pytest.param("resnet101.a1h_in1k", marks=pytest.mark.slow),
        pytest.param("efficientnet_b3.ra2_in1k", marks=pytest.mark.slow),
        pytest.param("vit_base_patch16_224.augreg2_in21k_ft_in1k", marks=pytest.mark.slow),
    ],
)
def test_listed_backbone_forward_backward_at_its_input_size(name):
    assert name in BACKBONES
    _forward_backward(name)


def test_head_is_512_256_with_dropout():
    model, _ = build_model(_random("test_resnet"), num_outputs=14)
    linear = [m for m in model.head if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [
        (model.backbone.num_features, 512),
        (512, 256),
        (256, 14),
    ]
    assert [m.p for m in model.head if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    x = torch.randn(4, 3, 64, 64)
    model.eval()
    torch.testing.assert_close(model(x), model(x))  # no dropout at eval
    model.train()
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, model(x))  # dropout active in training


def test_unknown_backbone_suggests_names():
    with pytest.raises(WeightsError) as e:
        build_model(_random("resnet5O"))
    assert "unknown timm model 'resnet5O'" in str(e.value) and "resnet50" in str(e.value)


def test_vit_follows_the_configured_image_size():
    model, _ = build_model(_random("test_vit"), num_outputs=3, image_size=64)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)


def test_a_users_weights_file_loads_strictly(tmp_path):
    """As published (classifier included): every backbone tensor comes from the file, or it is an error."""
    torch.manual_seed(3)
    published = timm.create_model("test_resnet", pretrained=False).state_dict()
    torch.save(published, tmp_path / "w.pth")
    cfg = ModelConfig(backbone="test_resnet.r160_in1k", weights_file=str(tmp_path / "w.pth"))
    model, source = build_model(cfg, num_outputs=14)
    assert source.kind == "file" and source.path == tmp_path / "w.pth" and len(source.sha256) == 64
    backbone = model.backbone.state_dict()
    assert set(backbone) == {k for k in published if not k.startswith("fc.")}
    assert all(torch.equal(backbone[k], published[k]) for k in backbone)

    partial = dict(published)
    del partial["layer1.0.conv1.weight"]  # a missing backbone tensor must not stay randomly initialized
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match="partial.pth"):
        build_model(cfg, weights_file=tmp_path / "partial.pth")
    torch.save(timm.create_model("test_efficientnet").state_dict(), tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="other.pth"):
        build_model(cfg, weights_file=tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="does not exist"):
        build_model(cfg, weights_file=tmp_path / "none.pth")


def test_param_groups_split_decay_and_backbone_lr():
    model, _ = build_model(_random("test_resnet"), num_outputs=14)
    groups = param_groups(model, lr=1e-3, weight_decay=0.1, backbone_lr_scale=0.1)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    for g in groups:
        in_backbone = {id(p) in backbone_ids for p in g["params"]}
        assert len(in_backbone) == 1
        assert g["lr"] == pytest.approx(1e-4 if in_backbone.pop() else 1e-3)
        assert g["weight_decay"] == (0.0 if all(p.ndim <= 1 for p in g["params"]) else 0.1)
    frozen_model, _ = build_model(_random("test_resnet"))
    frozen = param_groups(frozen_model, 1e-3, 0.0, backbone_lr_scale=0.0)
    assert sum(len(g["params"]) for g in frozen) == len(list(frozen_model.head.parameters()))
