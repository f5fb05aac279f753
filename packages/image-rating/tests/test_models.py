"""Backbones at the real input size, the head, name errors and local pretrained weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from image_rating.models import BACKBONES, build_model, param_groups
from perception_shared.errors import ConfigError, WeightsError


def _forward_backward(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_outputs=14, image_size=224).train()
    images = torch.randn(2, 3, 224, 224)
    out = model(images)
    assert out.shape == (2, 14) and out.dtype == torch.float32 and torch.isfinite(out).all()
    out.pow(2).mean().backward()
    first = next(p for p in model.backbone.parameters() if p.requires_grad)
    assert first.grad is not None and torch.isfinite(first.grad).all() and first.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.head.parameters())


@pytest.mark.parametrize(
    "name",
    [
        "efficientnet_b0",
        pytest.param("resnet50", marks=pytest.mark.slow),
        pytest.param("resnet101", marks=pytest.mark.slow),
        pytest.param("efficientnet_b3", marks=pytest.mark.slow),
        pytest.param("vit_base_patch16_224", marks=pytest.mark.slow),
    ],
)
def test_listed_backbone_forward_backward_at_224(name):
    assert name in BACKBONES
    _forward_backward(name)


def test_head_is_512_256_with_dropout():
    model = build_model("test_resnet", num_outputs=14)
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
    with pytest.raises(ConfigError) as e:
        build_model("resnet5O")
    assert "unknown backbone 'resnet5O'" in str(e.value) and "resnet50" in str(e.value)


def test_vit_follows_the_configured_image_size():
    model = build_model("test_vit", num_outputs=3, image_size=64)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)


def test_local_pretrained_weights_load_and_mismatches_fail(tmp_path):
    source = build_model("test_resnet", num_outputs=14).backbone
    state = {k: v.clone() for k, v in source.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, source.num_features)  # timm classifier keys are ignored
    state["fc.bias"] = torch.zeros(1000)
    torch.save(state, tmp_path / "w.pth")
    model = build_model("test_resnet", num_outputs=14, pretrained_path=tmp_path / "w.pth")
    for k, v in source.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[k], v)

    del state[next(iter(source.state_dict()))]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match="missing"):
        build_model("test_resnet", pretrained_path=tmp_path / "partial.pth")
    other = build_model("test_efficientnet").backbone.state_dict()
    torch.save(other, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="other.pth"):
        build_model("test_resnet", pretrained_path=tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="does not exist"):
        build_model("test_resnet", pretrained_path=tmp_path / "none.pth")


def test_param_groups_split_decay_and_backbone_lr():
    model = build_model("test_resnet", num_outputs=14)
    groups = param_groups(model, lr=1e-3, weight_decay=0.1, backbone_lr_scale=0.1)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    for g in groups:
        in_backbone = {id(p) in backbone_ids for p in g["params"]}
        assert len(in_backbone) == 1
        assert g["lr"] == pytest.approx(1e-4 if in_backbone.pop() else 1e-3)
        assert g["weight_decay"] == (0.0 if all(p.ndim <= 1 for p in g["params"]) else 0.1)
    frozen = param_groups(build_model("test_resnet"), 1e-3, 0.0, backbone_lr_scale=0.0)
    assert sum(len(g["params"]) for g in frozen) == len(list(build_model("test_resnet").head.parameters()))
