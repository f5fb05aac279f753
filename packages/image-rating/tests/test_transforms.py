"""Training augmentation (the study's protocol, seeded per sample) and the deterministic evaluation pipeline."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
import timm
import timm.data
import torch
from PIL import Image
from torchvision.transforms import v2

from image_rating.config import AugmentConfig, RatingConfig
from image_rating.data import RatingImageDataset
from image_rating.transforms import Preprocessing, build_eval_transform, build_train_transform, resolve_preprocessing
from perception_shared.config import load_config, resolve_config_path
from perception_shared.samplers import SeededDataset

PRE = Preprocessing(32, 40, "bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "test")
OFF = AugmentConfig(
    hflip_p=0,
    rotation_degrees=0,
    affine_translate=0,
    affine_scale=(1.0, 1.0),
    affine_shear=0,
    brightness=0,
    contrast=0,
    saturation=0,
    hue=0,
    grayscale_p=0,
    perspective_p=0,
    erasing_p=0,
)
DRAWS = 600


def _image(seed: int = 0, size: tuple[int, int] = (60, 50)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8))


def _spy(transform: v2.Compose) -> dict[str, list[dict[str, Any]]]:
    """Record the parameters every random step draws (a step that is skipped by its p draws none)."""
    drawn: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def recording(step: v2.Transform):
        original, record = step.make_params, drawn[type(step).__name__]

        def spy(flat_inputs):
            params = original(flat_inputs)
            record.append(params)
            return params

        return spy

    for step in transform.transforms:
        step.make_params = recording(step)
    return drawn


def _rate_ok(k: int, n: int, p: float) -> bool:
    """``k`` successes in ``n`` draws agree with probability ``p`` (within 4.5 binomial sds)."""
    return abs(k / n - p) <= 4.5 * math.sqrt(p * (1 - p) / n)


def test_default_augmentation_draws_the_studys_parameters():
    """Flip 0.5; rotation ±15°, translate 10%, scale 0.9-1.1, shear 10°; jitter 0.3/0.3/0.3, hue 0.1;
    grayscale 0.1; erasing 0.2 of 2-15% of the image; no perspective."""
    tf = build_train_transform(PRE, AugmentConfig())
    assert not any(isinstance(t, v2.RandomPerspective) for t in tf.transforms)
    drawn = _spy(tf)
    torch.manual_seed(0)
    img = _image()
    for _ in range(DRAWS):
        tf(img)
    assert _rate_ok(len(drawn["RandomHorizontalFlip"]), DRAWS, 0.5)
    assert _rate_ok(len(drawn["RandomGrayscale"]), DRAWS, 0.1)
    assert _rate_ok(len(drawn["RandomErasing"]), DRAWS, 0.2)

    affine = drawn["RandomAffine"]
    assert len(affine) == DRAWS
    angle = np.array([p["angle"] for p in affine])
    tx, ty = np.array([p["translate"] for p in affine]).T
    scale = np.array([p["scale"] for p in affine])
    shear_x, shear_y = np.array([p["shear"] for p in affine]).T
    # the full range is used and not exceeded (600 uniform draws come within 2% of each end)
    assert -15 <= angle.min() < -14 and 14 < angle.max() <= 15
    assert np.abs(tx).max() == np.abs(ty).max() == round(0.1 * 32)  # pixels of the 32 px crop
    assert 0.9 <= scale.min() < 0.905 and 1.095 < scale.max() <= 1.1
    assert -10 <= shear_x.min() < -9.5 and 9.5 < shear_x.max() <= 10 and not shear_y.any()

    jitter = drawn["ColorJitter"]
    assert len(jitter) == DRAWS
    for key, low, high in [
        ("brightness_factor", 0.7, 1.3),
        ("contrast_factor", 0.7, 1.3),
        ("saturation_factor", 0.7, 1.3),
        ("hue_factor", -0.1, 0.1),
    ]:
        v = np.array([p[key] for p in jitter])
        span = high - low
        assert low <= v.min() < low + 0.02 * span and high - 0.02 * span < v.max() <= high, key

    area = np.array([p["h"] * p["w"] / 32**2 for p in drawn["RandomErasing"]])
    assert 0.015 < area.min() < 0.04 and 0.12 < area.max() < 0.165  # 2-15%, sides rounded to pixels


def test_each_random_step_has_its_effect():
    img = _image(3, (40, 40))
    pre = Preprocessing(32, 32, "bilinear", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "test")
    plain = build_eval_transform(pre)(img)
    mean, std = torch.tensor(pre.mean)[:, None, None], torch.tensor(pre.std)[:, None, None]
    torch.manual_seed(1)

    flip = build_train_transform(pre, AugmentConfig(**{**vars(OFF), "hflip_p": 0.5}))
    outs = [flip(img) for _ in range(200)]
    flipped = sum(torch.equal(o, plain.flip(-1)) for o in outs)
    assert flipped + sum(torch.equal(o, plain) for o in outs) == 200 and _rate_ok(flipped, 200, 0.5)

    gray = build_train_transform(pre, AugmentConfig(**{**vars(OFF), "grayscale_p": 1.0}))(img) * std + mean
    torch.testing.assert_close(gray[0], gray[1], atol=1e-6, rtol=0)
    torch.testing.assert_close(gray[1], gray[2], atol=1e-6, rtol=0)
    luma = (0.299 * plain[0] + 0.587 * plain[1] + 0.114 * plain[2]) * 0.25 + 0.5
    assert (gray[0] - luma).abs().max() < 0.01

    erase = build_train_transform(pre, AugmentConfig(**{**vars(OFF), "erasing_p": 1.0}))
    for _ in range(50):
        zero = (erase(img) == 0).all(dim=0)
        rows, cols = torch.nonzero(zero, as_tuple=True)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert zero.sum() == box  # one filled rectangle
        assert 0.012 < box / 32**2 < 0.17  # 2-15% of the image, sides rounded to pixels

    rotate = build_train_transform(pre, AugmentConfig(**{**vars(OFF), "rotation_degrees": 15.0}))
    white = Image.new("RGB", (32, 32), (255, 255, 255))

    def dark_share(image: torch.Tensor) -> float:  # the corners a rotation leaves black
        return float(((image * std + mean).mean(dim=0) < 0.5).float().mean())

    def at(angle: float) -> float:
        return dark_share(plain_tf(v2.functional.rotate(white, angle, v2.InterpolationMode.BILINEAR)))

    plain_tf = build_eval_transform(pre)
    shares = [dark_share(rotate(white)) for _ in range(100)]
    assert at(13.0) < max(shares) <= at(15.0) + 1e-9 and min(shares) < at(2.0) + 1e-9

    jitter = build_train_transform(pre, AugmentConfig(**{**vars(OFF), "brightness": 0.3}))
    gray_img = Image.new("RGB", (32, 32), (100, 100, 100))
    level = np.array([float((jitter(gray_img) * std + mean).mean()) * 255 for _ in range(200)])
    assert 70 - 1 < level.min() < 75 and 125 < level.max() < 130 + 1  # 100 x [0.7, 1.3]


def test_shapes_and_normalization():
    gray = Image.new("RGB", (70, 50), (128, 64, 255))
    out = build_eval_transform(PRE)(gray)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    expected = (torch.tensor([128, 64, 255]) / 255.0 - torch.tensor(PRE.mean)) / torch.tensor(PRE.std)
    torch.testing.assert_close(out.mean(dim=(1, 2)), expected.float())
    torch.testing.assert_close(out.std(dim=(1, 2)), torch.zeros(3), atol=1e-6, rtol=0)
    assert build_train_transform(PRE, AugmentConfig())(_image()).shape == (3, 32, 32)


@pytest.mark.parametrize("config", ["baseline", "efficientnet_b3", "vit_base"])
def test_research_preprocessing_is_timms_for_the_weights(config):
    """No constants in the research configs: size, resize (size / crop_pct), interpolation and mean/std
    come from the weights' pretrained config, and the eval pipeline equals timm's own for them."""
    cfg = load_config(RatingConfig, resolve_config_path("image_rating", config), [])
    pre, overrides = resolve_preprocessing(cfg.model, cfg.data)
    assert overrides == [] and cfg.model.backbone in pre.source
    weights_cfg = timm.models.get_pretrained_cfg(cfg.model.backbone)
    reference = timm.data.create_transform(**timm.data.resolve_data_config(pretrained_cfg=weights_cfg.to_dict()))
    img = _image(4, (330, 300))
    ours = build_eval_transform(pre)(img)
    assert ours.shape[-1] == weights_cfg.input_size[-1]
    torch.testing.assert_close(ours, reference(img), atol=1e-6, rtol=0)


def test_config_values_override_the_weights_and_are_reported():
    cfg = load_config(
        RatingConfig,
        resolve_config_path("image_rating", "vit_base"),
        ["data.mean=[0.4, 0.4, 0.4]", "data.image_size=160"],
    )
    pre, overrides = resolve_preprocessing(cfg.model, cfg.data)
    assert pre.mean == (0.4, 0.4, 0.4) and pre.std == (0.5, 0.5, 0.5)  # std still from the weights
    assert pre.image_size == 160 and pre.resize_size == math.floor(160 / 0.9)  # the weights' crop_pct 0.9
    assert sorted(o.split(":")[0] for o in overrides) == ["data.image_size", "data.mean"]


def test_no_augmentation_and_no_crop_margin_equals_eval():
    pre = Preprocessing(32, 32, "bilinear", PRE.mean, PRE.std, "test")
    img = _image(2, (48, 48))
    torch.testing.assert_close(build_train_transform(pre, OFF)(img), build_eval_transform(pre)(img))


def test_augmentation_is_seeded_per_sample_and_epoch(tmp_path):
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.png")
        _image(i).save(paths[-1])
    ds = RatingImageDataset(paths, np.zeros((4, 2)), build_train_transform(PRE, AugmentConfig()))
    seeded = SeededDataset(ds, seed=5)
    first = [seeded[i]["image"] for i in range(4)]
    torch.manual_seed(123)  # the global RNG state outside the dataset must not matter, nor the order
    for j in (3, 1, 0, 2):
        torch.testing.assert_close(seeded[j]["image"], first[j])
    seeded.set_epoch(1)
    assert not torch.equal(seeded[0]["image"], first[0])
    assert not torch.equal(SeededDataset(ds, seed=6)[0]["image"], first[0])
    assert not torch.equal(first[0], build_eval_transform(PRE)(_image(0)))
    assert seeded[2]["index"] == 2 and seeded[2]["target"].shape == (2,)
