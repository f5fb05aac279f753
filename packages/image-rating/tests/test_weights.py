"""Pretrained backbones, offline: the research config loads exactly what a Hugging Face hub cache holds.

The cache is built in a temporary folder in the layout huggingface_hub writes (blobs named by sha256,
snapshots/<commit>/<file> linking to them, refs/main), holding a randomly initialized ResNet-50 saved as
timm/resnet50.a1_in1k, the baseline config's weights. No test opens a network connection.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import timm
import torch
import yaml

from image_rating.cli import main
from image_rating.evaluate import evaluate_run
from image_rating.models import build_model
from image_rating.train import train
from image_rating.transforms import resolve_preprocessing
from perception_shared.errors import WeightsError
from perception_shared.pretrained import preprocessing_for
from perception_shared.testing import cache_timm_weights, go_offline

from conftest import research_config

IDENTIFIER = "resnet50.a1_in1k"  # configs/baseline.yaml


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> dict:
    """HF_HOME with timm/resnet50.a1_in1k/model.safetensors: a random ResNet-50, classifier included."""
    home = tmp_path_factory.mktemp("hf_home")
    torch.manual_seed(11)
    state = {k: v.contiguous() for k, v in timm.create_model("resnet50", pretrained=False).state_dict().items()}
    link = cache_timm_weights(home, IDENTIFIER, state, home / "staging")
    blob = link.resolve()
    return {"home": home, "state": state, "link": link, "blob": blob, "sha256": blob.name}


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """HF_HUB_OFFLINE=1, empty caches, and any network connection attempt fails the test."""
    go_offline(monkeypatch, tmp_path / "empty")
    return monkeypatch


@pytest.fixture
def cached(offline, hub_cache):
    offline.setenv("HF_HOME", str(hub_cache["home"]))
    return hub_cache


def test_baseline_config_loads_exactly_the_cached_tensors(cached):
    cfg = research_config("baseline")
    assert cfg.model.backbone == IDENTIFIER and cfg.model.pretrained
    pre, _ = resolve_preprocessing(cfg.model, cfg.data)
    model, source = build_model(cfg.model, 14, image_size=pre.image_size)
    assert (source.identifier, source.kind, source.path, source.sha256) == (
        IDENTIFIER,
        "hf-cache",
        cached["link"],
        cached["sha256"],
    )
    backbone = model.backbone.state_dict()
    assert set(backbone) == {k for k in cached["state"] if not k.startswith("fc.")}  # the classifier is replaced
    assert all(torch.equal(backbone[k], cached["state"][k]) for k in backbone)
    assert model(torch.randn(1, 3, pre.image_size, pre.image_size)).shape == (1, 14)


@pytest.mark.slow
def test_a_baseline_run_records_and_reports_the_cached_weights(cached, synthetic, tmp_path):
    """Training records identifier, source and sha256 (warning that it is not the published file), uses the
    weights' preprocessing, and the evaluation prints which weights the run started from."""
    tiny = ["data.image_size=32", "data.batch_size=8", "data.num_workers=0", "loop.epochs=1", "loop.precision=fp32"]
    cfg = research_config("baseline", f"data.root={synthetic.root}", "eval.n_boot=0", *tiny)
    result = train(cfg, run_dir=tmp_path / "run", device="cpu")
    run = result.run_dir
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["weights"] == [
        {
            "identifier": IDENTIFIER,
            "kind": "hf-cache",
            "path": str(cached["link"]),
            "sha256": cached["sha256"],
            "pretrained": True,
        }
    ]
    log = (run / "train.log").read_text()
    assert f"backbone weights: {IDENTIFIER} from hf-cache" in log
    assert "differs from 773525d5821de224f8f30c33377b7a795d7863e08522698200d3217d3f2a41bb" in log  # the published hash
    weights_pre = preprocessing_for(IDENTIFIER)
    saved = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert saved["interpolation"] == weights_pre["interpolation"] == "bicubic"
    assert saved["mean"] == weights_pre["mean"] and saved["std"] == weights_pre["std"]
    assert saved["resize_size"] == int(32 / weights_pre["crop_pct"])  # the weights' crop_pct 0.95 -> 33 px
    metrics = evaluate_run(run, split="val", out_dir=tmp_path / "ev", device="cpu", n_boot=0)
    assert metrics["weights"] == f"{IDENTIFIER} from hf-cache {cached['link']} (sha256 {cached['sha256']})"
    assert metrics["settings"] == "research config" and len(pd.read_csv(tmp_path / "ev" / "predictions.csv")) == 12


def test_missing_weights_stop_training_before_anything_else(offline, tmp_path):
    cfg = research_config("baseline", f"data.root={tmp_path / 'no_data_either'}")
    with pytest.raises(WeightsError) as e:  # not a DataError: the weights are looked for first
        train(cfg, run_dir=tmp_path / "run", device="cpu")
    message = str(e.value)
    for part in (
        IDENTIFIER,
        "--weights PATH",
        "model.weights_file",
        "image-rating weights fetch",
        "HF_HOME",
        "pretrained: false",
    ):
        assert part in message, part
    assert not list((tmp_path / "run").glob("*.pth"))


def test_weights_list_and_check(cached, tmp_path, capsys, monkeypatch):
    assert main(["weights", "list"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    baseline = next(r for r in rows if r[0] == "baseline")
    assert baseline[2:5] == [IDENTIFIER, "hf-cache", cached["sha256"]]
    demo = next(r for r in rows if r[0] == "demo")
    assert demo[3] == "random"

    # the cached file is not the published one: the package manifest's hash refuses it
    assert main(["weights", "check"]) == 1
    assert f"FAIL {cached['link']}: sha256 {cached['sha256']} differs" in capsys.readouterr().out

    # against a manifest that records this file: accepted, and refused once one byte changes
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({IDENTIFIER: {"file": "model.safetensors", "sha256": cached["sha256"]}}))
    monkeypatch.setattr("image_rating.train.weights_manifest_path", lambda: manifest)
    assert main(["weights", "check"]) == 0
    changed = tmp_path / "model.safetensors"
    data = bytearray(cached["blob"].read_bytes())
    data[len(data) // 2] ^= 0x01
    changed.write_bytes(bytes(data))
    assert main(["weights", "check", f"{IDENTIFIER}={changed}"]) == 1
    assert f"FAIL {changed}: sha256" in capsys.readouterr().out
    assert os.path.getsize(changed) == cached["blob"].stat().st_size
