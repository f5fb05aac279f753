"""A frozen pretrained backbone (``optim.backbone_lr_scale: 0``) is referenced by its checkpoints, not stored.

The weights are timm's tiny test ResNet, randomly initialized and put in a temporary hub cache as
``timm/test_resnet.r160_in1k``; no test opens a network connection.
"""

from __future__ import annotations

import pytest
import timm
import torch

from image_rating.evaluate import load_trained
from image_rating.train import train
from perception_shared.errors import CheckpointError
from perception_shared.testing import cache_timm_weights, go_offline

from conftest import tiny_config

IDENTIFIER = "test_resnet.r160_in1k"


def test_frozen_pretrained_backbone_is_referenced_by_sha256_and_checked_when_evaluated(synthetic, tmp_path, monkeypatch):
    go_offline(monkeypatch, tmp_path / "empty")
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    torch.manual_seed(3)
    weights = {k: v.contiguous() for k, v in timm.create_model("test_resnet", pretrained=False).state_dict().items()}
    cache_timm_weights(home, IDENTIFIER, weights, tmp_path / "staging")
    cfg = tiny_config(
        synthetic.root, "data.n_raters=20", f"model.backbone={IDENTIFIER}", "model.pretrained=true",
        "optim.backbone_lr_scale=0", "loop.epochs=1", "eval.n_boot=0",
    )
    run = train(cfg, run_dir=tmp_path / "run", device="cpu").run_dir

    state = torch.load(run / "best_model.pth", map_location="cpu", weights_only=True)
    (ref,) = state["frozen"]
    assert ref["kind"] == "pretrained" and ref["identifier"] == IDENTIFIER
    stored_backbone = [k for k in state["model"] if k.startswith("backbone.")]
    assert "backbone.conv1.0.weight" in ref["keys"] and all("running_" in k or "num_batches" in k for k in stored_backbone)
    trained = load_trained(run)  # what evaluate, predict and export use
    params = dict(trained.model.backbone.named_parameters())
    assert params and all(torch.equal(p, weights[k]) for k, p in params.items())
    assert all(torch.equal(v, state["model"][k]) for k, v in trained.model.state_dict().items() if k in state["model"])

    changed = {k: v + 1 if v.is_floating_point() else v for k, v in weights.items()}
    cache_timm_weights(tmp_path / "other_home", IDENTIFIER, changed, tmp_path / "staging2")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "other_home"))
    with pytest.raises(CheckpointError, match=f"weights found for {IDENTIFIER} .* not the ones training used"):
        load_trained(run)
