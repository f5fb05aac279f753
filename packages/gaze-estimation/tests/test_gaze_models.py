from dataclasses import replace

import pytest
import torch
import torchvision

from gaze_estimation.models import (
    GazeTRHybrid,
    GazeTRLite,
    GazeTRTiny,
    ModelConfig,
    build_model,
    count_parameters,
)
from perception_shared.errors import ConfigError, WeightsError

TINY = ModelConfig(name="gazetr_tiny", tiny_width=8, d_model=32, num_layers=1, num_heads=4, dim_feedforward=64)
TINY_RANDOM = replace(TINY, pretrained=False)


def real_batch(b: int = 2):
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, 3, 224, 224, generator=g), torch.rand(b, 3, 112, 112, generator=g), torch.rand(b, 3, 112, 112, generator=g)


def forward_backward(model: torch.nn.Module) -> torch.Tensor:
    face, leye, reye = real_batch()
    out = model(face, leye, reye)
    assert out.shape == (2, 2) and torch.isfinite(out).all()
    out.square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing[:5]
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    return out


def test_gazetr_lite_parameters_and_real_shaped_forward_backward():
    torch.manual_seed(0)
    model = GazeTRLite()
    n = count_parameters(model)
    assert n == 35_574_722
    assert abs(n - 35.6e6) / 35.6e6 < 0.005
    resnet = torchvision.models.resnet18(weights=None)
    assert n - 3 * (count_parameters(resnet) - 513_000) < 2.1e6  # three ResNet-18 trunks and a small fusion
    forward_backward(model)


@pytest.mark.slow
def test_gazetr_hybrid_parameters_and_real_shaped_forward_backward():
    torch.manual_seed(0)
    model = GazeTRHybrid()
    n = count_parameters(model)
    assert n == 109_354_498
    assert count_parameters(model.face) == 85_798_656  # ViT-B/16 trunk
    assert count_parameters(model.leye) == 21_609_216 and model.reye is None  # one ViT-S/16 at 112 px for both eyes
    forward_backward(model)


def test_eyes_are_told_apart_and_batch_independent():
    torch.manual_seed(0)
    model = GazeTRTiny(TINY).eval()
    face, leye, reye = real_batch()
    with torch.no_grad():
        out = model(face, leye, reye)
        swapped = model(face, reye, leye)
        single = model(face[:1], leye[:1], reye[:1])
    assert not torch.allclose(out, swapped)
    torch.testing.assert_close(single, out[:1], atol=1e-5, rtol=1e-4)


def test_build_model_by_name_and_unknown_name():
    model, sources = build_model(TINY_RANDOM)
    assert isinstance(model, torch.nn.Module) and not any(s.pretrained for s in sources.values())
    bad = ModelConfig(name="gazetr_tiny", pretrained=False)
    bad.name = "gazetr_huge"
    with pytest.raises(ConfigError, match="unknown model 'gazetr_huge'"):
        build_model(bad)
    with pytest.raises(ConfigError, match="gazetr_tiny has no pretrained weights"):
        build_model(TINY)


def test_init_checkpoint_whole_model_and_mismatch(tmp_path):
    torch.manual_seed(0)
    src = GazeTRTiny(TINY).eval()
    path = tmp_path / "w.pth"
    torch.save(src.state_dict(), path)
    loaded = build_model(replace(TINY_RANDOM, init_checkpoint=path))[0].eval()
    batch = real_batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded(*batch), src(*batch))
    with pytest.raises(WeightsError, match="shape mismatches") as e:
        build_model(replace(TINY_RANDOM, d_model=64, init_checkpoint=path))
    assert str(path) in str(e.value)
    sd = src.state_dict()
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "extra.pth")
    with pytest.raises(WeightsError, match="unexpected keys: extra.weight"):
        build_model(replace(TINY_RANDOM, init_checkpoint=tmp_path / "extra.pth"))


def test_backbone_weights_from_a_local_classifier_file(tmp_path):
    """``model.face_weights_file``/``eye_weights_file`` (``train --weights``): a torchvision ImageNet file, fc dropped."""
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None, num_classes=1000)
    path = tmp_path / "resnet18_imagenet.pth"
    torch.save(resnet.state_dict(), path)  # has fc.weight / fc.bias, which the branch lacks
    model, sources = build_model(ModelConfig(name="gazetr_lite", face_weights_file=path, eye_weights_file=path))
    for branch in (model.face, model.leye, model.reye):
        torch.testing.assert_close(branch.conv1.weight, resnet.conv1.weight)
        torch.testing.assert_close(branch.layer4[1].bn2.running_var, resnet.layer4[1].bn2.running_var)
    assert {r: (s.kind, s.identifier) for r, s in sources.items()} == {
        "face": ("file", "torchvision:ResNet18_Weights.IMAGENET1K_V1"), "eye": ("file", "torchvision:ResNet18_Weights.IMAGENET1K_V1")
    }
    wrong = tmp_path / "tiny.pth"
    torch.save(GazeTRTiny(TINY).face.state_dict(), wrong)
    with pytest.raises(WeightsError, match="does not fit torchvision's ResNet18_Weights"):
        build_model(ModelConfig(name="gazetr_lite", face_weights_file=wrong))
