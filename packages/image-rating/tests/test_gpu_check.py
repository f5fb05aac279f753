"""The image-rating part of tools/gpu_check.sh, as its CPU dry run: research-size model, configured workers."""

from __future__ import annotations

import pytest
import torch

from image_rating.gpu_check import CPU_BATCH, build_spec
from perception_shared.gpu_check import run_check


@pytest.mark.slow
def test_dry_run_on_cpu_trains_the_baseline_model_at_research_size(tmp_path):
    spec = build_spec(torch.device("cpu"), tmp_path, steps=2)
    assert spec.loader.num_workers == 8  # configs/baseline.yaml
    batch = next(iter(spec.loader))
    assert batch["image"].shape == (CPU_BATCH, 3, 224, 224) and batch["target"].shape == (CPU_BATCH, 14)
    assert type(spec.model.backbone).__name__ == "ResNet" and spec.model.backbone.num_features == 2048
    assert "RANDOM INIT" in spec.notes["weights"]
    result = run_check(spec, torch.device("cpu"), steps=1, warmup=1)
    assert result["problems"] == [], result
    assert result["model_samples_per_s"] > 0 and result["loader_to_model_ratio"] >= 2
    assert result["parameters"] > 23e6  # ResNet-50 (23.5M without its classifier) plus the rating head
