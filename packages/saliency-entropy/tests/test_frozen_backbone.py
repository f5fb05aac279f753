"""Checkpoints of a run with a frozen pretrained backbone refer to its weights (identifier and sha256)
instead of holding them; evaluate/predict/export (``load_run_model``) rebuild it from the weights file and
refuse other weights. The "pretrained" ResNet-18 is random weights in a local file: no network."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from perception_shared.errors import CheckpointError
from saliency_entropy.evaluate import load_run_model

from conftest import tiny_config, train_run


def test_frozen_pretrained_backbone_is_referenced_not_stored(synthetic_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(5)
    weights = timm.create_model("resnet18", pretrained=False).state_dict()
    file = tmp_path / "resnet18.pth"
    torch.save(weights, file)
    cfg = tiny_config(
        synthetic_root, "model.backbone=timm:resnet18.a1_in1k", "model.pretrained=true",
        f"model.weights_file={file}", "loop.epochs=1",
    )
    run = tmp_path / "run"
    train_run(cfg, run)

    best = run / "best_model.pth"
    raw = torch.load(best, map_location="cpu", weights_only=True)
    (ref,) = raw["frozen"]
    assert ref["kind"] == "pretrained" and ref["identifier"] == "resnet18.a1_in1k"
    assert not [k for k in raw["model"] if k.startswith("backbone.") and k.endswith("weight")]
    assert best.stat().st_size < 2_000_000 < file.stat().st_size  # 45 MB of backbone left out
    assert not (run / "frozen").exists()  # pretrained: referenced, not stored even once

    model, _, _ = load_run_model(best, torch.device("cpu"))
    torch.testing.assert_close(model.backbone.net.conv1.weight, weights["conv1.weight"], rtol=0, atol=0)

    torch.save({k: v + 1 if v.is_floating_point() else v for k, v in weights.items()}, file)
    with pytest.raises(CheckpointError, match="resnet18.a1_in1k .* not the ones training used"):
        load_run_model(best, torch.device("cpu"))
