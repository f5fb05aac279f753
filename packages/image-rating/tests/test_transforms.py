"""Training augmentation (seeded per sample) and the deterministic evaluation pipeline."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from image_rating.config import AugmentConfig, DataConfig
from image_rating.data import RatingImageDataset
from image_rating.transforms import build_eval_transform, build_train_transform
from perception_shared.samplers import SeededDataset

DATA = DataConfig(image_size=32, resize_size=40)
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


def _image(seed: int = 0, size: tuple[int, int] = (60, 50)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8))


def test_shapes_and_normalization():
    gray = Image.new("RGB", (70, 50), (128, 64, 255))
    out = build_eval_transform(DATA)(gray)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    expected = (torch.tensor([128, 64, 255]) / 255.0 - torch.tensor(DATA.mean)) / torch.tensor(DATA.std)
    torch.testing.assert_close(out.mean(dim=(1, 2)), expected.float())
    torch.testing.assert_close(out.std(dim=(1, 2)), torch.zeros(3), atol=1e-6, rtol=0)
    assert build_train_transform(DATA, AugmentConfig())(_image()).shape == (3, 32, 32)


def test_eval_is_resize_then_center_crop():
    img = _image(1, (80, 60))  # (H, W) = (80, 60): shorter side 60 -> 40, then the centre 32 x 32
    out = build_eval_transform(DATA)(img)
    resized = img.resize((40, 53), Image.BILINEAR)
    crop = np.asarray(resized)[10:42, 4:36].astype(np.float32) / 255.0
    ref = (torch.from_numpy(crop).permute(2, 0, 1) - torch.tensor(DATA.mean)[:, None, None]) / torch.tensor(DATA.std)[
        :, None, None
    ]
    assert (out - ref).abs().mean() < 0.03  # PIL vs torchvision antialiasing differ slightly


def test_no_augmentation_and_no_crop_margin_equals_eval():
    data = DataConfig(image_size=32, resize_size=32)
    img = _image(2, (48, 48))
    torch.testing.assert_close(build_train_transform(data, OFF)(img), build_eval_transform(data)(img))


def test_augmentation_is_seeded_per_sample_and_epoch(tmp_path):
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.png")
        _image(i).save(paths[-1])
    ds = RatingImageDataset(paths, np.zeros((4, 2)), build_train_transform(DATA, AugmentConfig()))
    seeded = SeededDataset(ds, seed=5)
    first = [seeded[i]["image"] for i in range(4)]
    torch.manual_seed(123)  # the global RNG state outside the dataset must not matter, nor the order
    for j in (3, 1, 0, 2):
        torch.testing.assert_close(seeded[j]["image"], first[j])
    seeded.set_epoch(1)
    assert not torch.equal(seeded[0]["image"], first[0])
    assert not torch.equal(SeededDataset(ds, seed=6)[0]["image"], first[0])
    assert not torch.equal(first[0], build_eval_transform(DATA)(_image(0)))
    assert seeded[2]["index"] == 2 and seeded[2]["target"].shape == (2,)
