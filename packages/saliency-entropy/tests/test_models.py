"""The saliency model: exact fast readout, normalized log-densities, bias map, frozen backbone."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter1d

from perception_shared.errors import ConfigError, WeightsError
from saliency_entropy.config import EntropyConfig, ModelConfig
from saliency_entropy.losses import entropy_nats, fixation_log_likelihoods, fixation_nll
from saliency_entropy.models import Readout, SaliencyModel, bias_images, blur_matrix, softplus

TINY = ModelConfig(
    backbone="timm:resnet18", pretrained=False, layers=["layer1", "layer2"], initial_sigma=2.0, center_prior_grid=16
)


@pytest.fixture(scope="module")
def tiny_model() -> SaliencyModel:
    torch.manual_seed(0)
    model = SaliencyModel(TINY, EntropyConfig(n_samples=3))
    with torch.no_grad():
        for p in list(model.readout.parameters()) + list(model.finalizer.parameters()):
            p.add_(torch.randn_like(p) * 0.2)
        prior = torch.rand(16, 16) + 0.5
        model.set_center_prior(prior / prior.mean())
    return model


def test_fast_readout_equals_resize_concatenate_layernorm_convolve() -> None:
    torch.manual_seed(1)
    readout = Readout(96, [8, 16])
    with torch.no_grad():
        for p in readout.parameters():
            p.copy_(torch.randn_like(p))
    # three maps at different resolutions, one larger than the readout grid (downsampled)
    feats = [torch.randn(3, 32, 5, 7) * 3 + 1, torch.randn(3, 48, 11, 13), torch.randn(3, 16, 30, 41) - 2]
    size = (12, 17)
    fast, reference = readout(feats, size), readout.reference(feats, size)
    assert fast.shape == (3, 1, 12, 17)
    torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-5)
    grads = torch.autograd.grad(fast.sum(), list(readout.parameters()))
    ref_grads = torch.autograd.grad(reference.sum(), list(readout.parameters()))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-3, atol=1e-4)


def test_blur_matrix_matches_scipy_gaussian_filter_with_nearest_padding() -> None:
    x = np.random.default_rng(2).normal(size=40)
    sigma = torch.tensor(2.0, dtype=torch.float64)  # radius ceil(3 * 2) = 6 = scipy's int(3 * 2 + 0.5)
    ours = blur_matrix(40, sigma).numpy() @ x
    np.testing.assert_allclose(ours, gaussian_filter1d(x, 2.0, mode="nearest", truncate=3.0), rtol=1e-10)


def test_softplus_matches_torch() -> None:
    x = torch.linspace(-40, 40, 2001, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(softplus(x), F.softplus(x), atol=1e-7, rtol=0)
    far = torch.tensor([-1e4, -200.0, -81.0, -79.0, 79.0, 81.0, 200.0, 1e4])  # beyond the exp clamp, float32
    torch.testing.assert_close(softplus(far), F.softplus(far), atol=1e-30, rtol=1e-7)
    (g,) = torch.autograd.grad(softplus(x).sum(), x)
    torch.testing.assert_close(g, torch.sigmoid(x))


def test_log_density_sums_to_one_over_image_pixels(tiny_model: SaliencyModel) -> None:
    images = torch.rand(2, 3, 96, 128)
    logp, bias = tiny_model(images, with_bias=True)
    assert logp.shape == (2, 24, 32) and bias.shape == (24, 32)
    full = tiny_model.full_resolution(logp)
    assert full.shape == (2, 96, 128)
    torch.testing.assert_close(full.exp().sum(dim=(1, 2)), torch.ones(2), atol=1e-5, rtol=0)
    full_bias = tiny_model.full_resolution(bias)
    assert full_bias.exp().sum().item() == pytest.approx(1.0, abs=1e-5)
    entropy = tiny_model.entropy_full_resolution(bias)
    assert entropy.item() == pytest.approx(entropy_nats(full_bias).item(), rel=1e-5)
    assert 0 < entropy.item() <= math.log(96 * 128) + 1e-5


def test_bias_images_do_not_change_the_batch_predictions(tiny_model: SaliencyModel) -> None:
    images = torch.rand(2, 3, 96, 128)
    with_bias, bias = tiny_model(images, with_bias=True)
    without, none = tiny_model(images)
    assert none is None
    torch.testing.assert_close(with_bias, without, rtol=1e-5, atol=1e-5)
    again = tiny_model.bias_log_density((96, 128))
    torch.testing.assert_close(again, bias, rtol=1e-5, atol=1e-5)
    feats, _ = tiny_model.bias_features((96, 128), torch.device("cpu"))
    assert tiny_model.bias_features((96, 128), torch.device("cpu"))[0] is feats  # computed once
    tiny_model.load_state_dict(tiny_model.state_dict())  # new weights: the cache is the old weights'
    assert tiny_model.bias_features((96, 128), torch.device("cpu"))[0] is not feats


def test_bias_images_are_near_uniform_and_deterministic() -> None:
    cfg = EntropyConfig(intensities=[0.0, 0.5, 1.0], n_samples=5, noise_std=0.01, seed=3)
    a, b = bias_images(cfg, (8, 10)), bias_images(cfg, (8, 10))
    assert torch.equal(a, b) and a.shape == (5, 3, 8, 10)
    assert a.min() >= 0 and a.max() <= 1
    torch.testing.assert_close(a.mean(dim=(1, 2, 3))[[1, 4]], torch.tensor([0.5, 0.5]), atol=0.01, rtol=0)


def test_only_readout_and_finalizer_learn(tiny_model: SaliencyModel) -> None:
    tiny_model.train()
    assert not tiny_model.backbone.training and tiny_model.readout.training
    images = torch.rand(1, 3, 96, 128)
    fix = torch.tensor([[[10.5, 20.5], [100.2, 70.9]]], dtype=torch.float64)
    logp, bias = tiny_model(images, with_bias=True)
    loss = fixation_nll(logp, fix, torch.ones(1, 2, dtype=torch.bool), 4) - tiny_model.entropy_full_resolution(bias)
    loss.backward()
    assert all(p.grad is None for p in tiny_model.backbone.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in tiny_model.readout.parameters())
    assert tiny_model.finalizer.sigma.grad is not None and tiny_model.finalizer.center_bias_weight.grad is not None
    tiny_model.zero_grad()


def test_fixation_log_likelihood_reads_the_full_resolution_map(tiny_model: SaliencyModel) -> None:
    logp, _ = tiny_model(torch.rand(2, 3, 96, 128))
    full = tiny_model.full_resolution(logp)
    fix = torch.tensor(
        [[[0.2, 0.3], [127.9, 95.9], [64.0, 48.0]], [[5.5, 90.1], [33.3, 3.7], [1.0, 1.0]]], dtype=torch.float64
    )
    ll = fixation_log_likelihoods(logp, fix, 4)
    expected = torch.stack([full[b, fix[b, :, 1].long(), fix[b, :, 0].long()] for b in range(2)])
    torch.testing.assert_close(ll, expected)


def test_unknown_backbone_or_layer_is_a_named_error() -> None:
    with pytest.raises(WeightsError, match="unknown timm model 'resnet1'"):
        SaliencyModel(ModelConfig(backbone="timm:resnet1", pretrained=False, layers=["layer1"]), EntropyConfig())
    with pytest.raises(ConfigError, match="has no layer 'layer9'"):
        SaliencyModel(ModelConfig(backbone="timm:resnet18", pretrained=False, layers=["layer9"]), EntropyConfig())
    with pytest.raises(WeightsError, match="DenseNet2010_Weights"):
        SaliencyModel(ModelConfig(backbone="torchvision:DenseNet2010_Weights.IMAGENET1K_V1", layers=["features"]), EntropyConfig())


def test_backbone_weights_come_from_a_local_file(tmp_path: Path) -> None:
    import timm

    source = timm.create_model("resnet18", pretrained=False)
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    cfg = ModelConfig(
        backbone="timm:resnet18.a1_in1k", weights_file=str(tmp_path / "resnet18.pth"), layers=["layer1"], center_prior_grid=16
    )
    model = SaliencyModel(cfg, EntropyConfig())
    assert model.weights_source.kind == "file" and model.weights_source.pretrained
    torch.testing.assert_close(model.backbone.net.conv1.weight, source.conv1.weight)
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="bad.pth"):
        SaliencyModel(
            ModelConfig(backbone="timm:resnet18.a1_in1k", weights_file=str(tmp_path / "bad.pth"), layers=["layer1"]),
            EntropyConfig(),
        )


def test_normalization_follows_the_weights_config() -> None:
    from perception_shared.pretrained import preprocessing_for

    cfg = ModelConfig(backbone="timm:test_resnet.r160_in1k", pretrained=False, layers=["layer1"], center_prior_grid=16)
    model = SaliencyModel(cfg, EntropyConfig(n_samples=2))
    expected = preprocessing_for("timm:test_resnet.r160_in1k")
    assert expected["mean"] == pytest.approx([0.5, 0.5, 0.5])  # not ImageNet's: the test would see a constant
    torch.testing.assert_close(model.mean.flatten(), torch.tensor(expected["mean"]))
    torch.testing.assert_close(model.std.flatten(), torch.tensor(expected["std"]))


@pytest.mark.slow
def test_densenet201_forward_backward_on_real_shaped_tensors() -> None:
    """The real configuration: DenseNet-201 denseblock4 features of a 1024x768 image (batch 1)."""
    torch.manual_seed(0)
    model = SaliencyModel(ModelConfig(pretrained=False), EntropyConfig(n_samples=2)).train()
    assert model.channels == [1888, 128, 32]  # 2048 channels, as in DeepGaze IIE/III
    images = torch.rand(1, 3, 768, 1024)
    logp, bias = model(images, with_bias=True)
    assert logp.shape == (1, 192, 256) and bias.shape == (192, 256)
    assert model.readout_size((768, 1024)) == (96, 128)
    full = model.full_resolution(logp)
    assert full.shape == (1, 768, 1024)
    assert full.exp().sum().item() == pytest.approx(1.0, abs=1e-4)
    fix = torch.tensor([[[512.0, 384.0], [100.5, 700.2]]], dtype=torch.float64)
    loss = fixation_nll(logp, fix, torch.ones(1, 2, dtype=torch.bool), 4) - model.entropy_full_resolution(bias)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.readout.parameters())
    assert math.log(768 * 1024) - 1 < model.entropy_full_resolution(bias).item() <= math.log(768 * 1024)


def test_torchvision_densenet_files_with_legacy_keys_load(tmp_path: Path) -> None:
    import re

    import torchvision

    source = torchvision.models.densenet121(weights=None)
    # the layout of torchvision's published files: legacy layer names, no BatchNorm num_batches_tracked
    legacy = {
        re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v
        for k, v in source.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    torch.save(legacy, tmp_path / "densenet121.pth")
    cfg = ModelConfig(
        backbone="torchvision:DenseNet121_Weights.IMAGENET1K_V1",
        weights_file=str(tmp_path / "densenet121.pth"),
        layers=["features.denseblock1"],
    )
    model = SaliencyModel(cfg, EntropyConfig())
    torch.testing.assert_close(
        model.backbone.net.features.denseblock1.denselayer1.norm1.weight,
        source.features.denseblock1.denselayer1.norm1.weight,
    )


def test_images_of_different_sizes_run_in_one_forward(tiny_model: SaliencyModel) -> None:
    """The keep-aspect path: a list of images of two sizes gives each its own map, equal to the batched
    forward of its size, and the bias map of the requested size is the one ``bias_log_density`` gives."""
    torch.manual_seed(3)
    a, b, c = torch.rand(3, 96, 128), torch.rand(3, 128, 96), torch.rand(3, 96, 128)
    maps, bias = tiny_model([a, b, c], with_bias=True, bias_size=(96, 128))
    assert [tuple(m.shape) for m in maps] == [(24, 32), (32, 24), (24, 32)]
    same, _ = tiny_model(torch.stack([a, c]))
    torch.testing.assert_close(torch.stack([maps[0], maps[2]]), same, rtol=1e-5, atol=1e-5)
    alone, _ = tiny_model(b[None])
    torch.testing.assert_close(maps[1], alone[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bias, tiny_model.bias_log_density((96, 128)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(maps[1].exp().sum(), torch.tensor(1.0), atol=1e-5, rtol=0)


def test_blur_reads_no_value_back_and_follows_sigma() -> None:
    from perception_shared.testing import count_host_reads

    sigma = torch.tensor(3.0, requires_grad=True)
    with count_host_reads() as reads:
        m = blur_matrix(50, sigma)
        (g,) = torch.autograd.grad(m[25].pow(2).sum(), sigma)
    assert reads.count == 0, reads.summary()
    torch.testing.assert_close(m.sum(1), torch.ones(50))
    assert g < 0  # a wider blur spreads the row: its sum of squares falls


def test_the_backbone_past_the_last_layer_read_is_pruned_and_changes_nothing() -> None:
    import timm

    from saliency_entropy.models import FeatureExtractor

    torch.manual_seed(0)
    full = timm.create_model("resnet18", pretrained=False).eval()
    extractor = FeatureExtractor("timm:resnet18", ["layer1", "layer2"], pretrained=False)
    assert extractor.pruned == ["layer3", "layer4", "global_pool", "fc"]
    assert sum(p.numel() for p in extractor.parameters()) < 0.1 * sum(p.numel() for p in full.parameters())
    extractor.load_state_dict({f"net.{k}": v for k, v in full.state_dict().items()})  # a whole backbone still loads
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        stem = full.maxpool(full.act1(full.bn1(full.conv1(x))))
        expected = [full.layer1(stem), full.layer2(full.layer1(stem))]
    for got, want in zip(extractor(x), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
