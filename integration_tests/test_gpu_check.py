"""tools/gpu_check.sh's dry mode: the same code path as on a GPU, on CPU in fp32, for every package."""

from __future__ import annotations

import sys

import pytest

from conftest import PACKAGES, REPO, cli_env, read_json, run


@pytest.mark.slow
def test_gpu_check_dry_run_on_cpu_covers_every_package(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = cli_env(PYTHON=sys.executable)
    proc = run(["bash", REPO / "tools" / "gpu_check.sh", "--device", "cpu", "--steps", "1", "--warmup", "1", "--out", out],
               env=env, timeout=900)
    report = read_json(out)
    assert report["ok"], report["problems"]
    assert {m["package"] for m in report["models"]} == set(PACKAGES)
    # gaze-estimation checks its single-frame and its temporal model
    assert sorted(m["name"].split()[0] for m in report["models"] if m["package"] == "gaze-estimation") == [
        "gazetr_lite", "gazetr_temporal"]
    for m in report["models"]:
        assert m["precision"] == "fp32" and m["model_samples_per_s"] > 0 and m["peak_memory_mb"] > 0, m
        assert m["loader_to_model_ratio"] >= 2.0, m
    assert report["process_group"]["backend"] == "gloo" and not report["process_group"]["problems"]
    assert "gpu_check: ok" in proc.stdout
