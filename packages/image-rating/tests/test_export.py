"""export: ONNX and TorchScript with a dynamic batch, equal to PyTorch, usable from its JSON alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from image_rating.export import ATOL, RTOL, export_run
from image_rating.predict import predict_images
from perception_shared.export import ExportError, run_exported

PIL_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


def _preprocess_from_json(path, meta: dict) -> np.ndarray:
    """What a user without this repository does with the JSON: PIL resize, center crop, normalize."""
    p = meta["preprocessing"]
    img = Image.open(path).convert("RGB")
    w, h = img.size
    short = p["resize_shorter_side"]
    size = (short, round(h * short / w)) if w <= h else (round(w * short / h), short)
    img = img.resize(size, PIL_FILTERS[p["interpolation"]])
    crop = p["center_crop"]
    left, top = int(round((img.width - crop) / 2.0)), int(round((img.height - crop) / 2.0))
    x = np.asarray(img.crop((left, top, left + crop, top + crop)), dtype=np.float32) / 255.0
    x = (x - np.asarray(p["mean"], dtype=np.float32)) / np.asarray(p["std"], dtype=np.float32)
    return x.transpose(2, 0, 1)[None]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch_at_two_batch_sizes_and_predict_on_real_images(fmt, trained_run, synthetic, tmp_path):
    out = tmp_path / ("model.onnx" if fmt == "onnx" else "model.pt")
    result = export_run(trained_run.run_dir, fmt=fmt, out=out)
    checks = result["verification"]["checks"]
    assert [c["batch_size"] for c in checks] == [1, 3]
    assert all(c["max_abs_diff"] <= ATOL for c in checks) and result["verification"]["rtol"] == RTOL
    meta = json.loads((tmp_path / "model.preprocessing.json").read_text())
    assert meta["inputs"][0]["shape"] == ["batch", 3, 32, 32] and meta["outputs"][0]["shape"] == ["batch", 14]
    assert meta["preprocessing"]["dimensions"][0] == "Brightness" and "RANDOM INIT" in meta["preprocessing"]["weights"]
    assert meta["preprocessing"]["settings"].startswith("TOY SETTINGS")

    images = sorted(synthetic.images_dir.iterdir())[:5]  # any batch size: 5 was never exported or checked
    batch = np.concatenate([_preprocess_from_json(p, meta) for p in images])
    (ratings,) = run_exported(out, torch.from_numpy(batch))
    expected = predict_images(trained_run.run_dir, images, device="cpu")
    assert ratings.shape == (5, 14)
    np.testing.assert_allclose(ratings, expected[meta["preprocessing"]["dimensions"]].to_numpy(), atol=1e-3, rtol=0)


def test_export_to_an_unknown_format_is_a_clear_error(trained_run, tmp_path):
    with pytest.raises(ExportError, match="onnx, torchscript"):
        export_run(trained_run.run_dir, fmt="tflite", out=tmp_path / "m.tflite")
