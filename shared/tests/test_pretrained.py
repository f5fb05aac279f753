"""perception_shared.pretrained, offline: caches built in tmp_path in the layouts the libraries use."""

import argparse
import json
import os
import shutil
from pathlib import Path

import huggingface_hub
import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from perception_shared import pretrained as P
from perception_shared.errors import ConfigError, WeightsError
from perception_shared.testing import go_offline, put_in_offline_hf_cache

TIMM_ID = "resnet18.a1_in1k"
TV_ID = "torchvision:ResNet18_Weights.IMAGENET1K_V1"


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network (a connection attempt raises), HF_HUB_OFFLINE=1, empty caches under tmp_path."""
    go_offline(monkeypatch, tmp_path)


@pytest.fixture
def cached_resnet18(tmp_path):
    """Weights of a randomly initialized resnet18 in the hub cache as timm/resnet18.a1_in1k."""
    torch.manual_seed(0)
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    state = {k: v.contiguous() for k, v in state.items()}
    path = tmp_path / "resnet18.safetensors"
    save_file(state, str(path))
    link = put_in_offline_hf_cache("timm/resnet18.a1_in1k", "model.safetensors", path)
    return state, link


def test_cache_layout_is_the_one_huggingface_hub_reads(cached_resnet18):
    _, link = cached_resnet18
    found = huggingface_hub.try_to_load_from_cache(
        "timm/resnet18.a1_in1k", "model.safetensors", cache_dir=str(Path(os.environ["HF_HOME"]) / "hub")
    )
    assert found == str(link)


def test_timm_model_loads_exactly_the_cached_weights(cached_resnet18):
    state, link = cached_resnet18
    model, source = P.create_timm_model(TIMM_ID, pretrained=True, pretrained_cfg_overlay={"mean": (0.1, 0.2, 0.3)})
    assert source.kind == "hf-cache" and source.path == link
    assert source.sha256 == P.sha256_file(link) and source.identifier == TIMM_ID
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert tuple(model.pretrained_cfg["mean"]) == (0.1, 0.2, 0.3)  # the caller's overlay is kept
    record = json.loads(json.dumps(source.to_dict()))
    assert record["kind"] == "hf-cache" and record["sha256"] == source.sha256 and record["pretrained"] is True
    assert source.describe().startswith(f"{TIMM_ID} from hf-cache {link} (sha256 {source.sha256[:12]}")
    # timm adapts the file as usual: a feature extractor drops the classifier and keeps the rest
    features, _ = P.create_timm_model(f"timm:{TIMM_ID}", pretrained=True, num_classes=0)
    assert torch.equal(features.conv1.weight, state["conv1.weight"]) and "fc.weight" not in features.state_dict()


def test_a_local_file_or_folder_comes_first(cached_resnet18, tmp_path):
    state, _ = cached_resnet18
    own = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}
    folder = tmp_path / "mine"
    folder.mkdir()
    save_file(own, str(folder / "model.safetensors"))
    model, source = P.create_timm_model(TIMM_ID, pretrained=True, file=folder)
    assert source.kind == "file" and source.path == folder / "model.safetensors"
    assert torch.equal(model.state_dict()["fc.weight"], own["fc.weight"])
    torch.save({"fc.weight": own["fc.weight"]}, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match="partial.pth"):
        P.create_timm_model(TIMM_ID, pretrained=True, file=tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match="does not exist"):
        P.locate_weights(TIMM_ID, tmp_path / "nowhere.safetensors")


def test_missing_weights_name_the_model_and_the_three_ways():
    for call in (
        lambda: P.locate_weights(TIMM_ID, package="image-rating", config_key="model.weights"),
        lambda: P.create_timm_model(TIMM_ID, pretrained=True, package="image-rating"),
        lambda: P.torchvision_state_dict(TV_ID, allow_download=False),
    ):
        with pytest.raises(WeightsError) as e:
            call()
        msg = str(e.value)
        assert "not available" in msg and ("resnet18.a1_in1k" in msg or "ResNet18_Weights" in msg)
        assert "--weights PATH" in msg and "weights fetch CONFIG" in msg and "HF_HOME" in msg and "TORCH_HOME" in msg
        assert "run online" in msg and "pretrained: false" in msg
    with pytest.raises(WeightsError, match="image-rating weights fetch CONFIG"):
        P.locate_weights(TIMM_ID, package="image-rating")


def test_online_but_unreachable_is_the_same_error_naming_the_failed_download(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(WeightsError, match=r"(?s)download failed.*weights fetch CONFIG"):
        P.torchvision_state_dict(TV_ID)


def test_random_init_is_explicit_and_says_so():
    model, source = P.create_timm_model("resnet18", pretrained=False, num_classes=3)
    assert source.kind == "random" and source.path is None and source.sha256 is None and not source.pretrained
    assert "RANDOM initialization (pretrained: false)" in source.describe()
    assert model.fc.out_features == 3
    with pytest.raises(WeightsError, match="pretrained is false"):
        P.create_timm_model("resnet18", pretrained=False, file="w.pth")


def test_identifiers_are_checked_with_close_matches():
    assert P.parse_identifier("timm:resnet50.a1_in1k") == ("timm", "resnet50.a1_in1k")
    assert P.canonical_identifier("torchvision:DenseNet201_Weights.DEFAULT") == (
        "torchvision:DenseNet201_Weights.IMAGENET1K_V1"
    )
    with pytest.raises(WeightsError, match=r"does not say which weights.*resnet50\.a1_in1k"):
        P.parse_identifier("resnet50")
    with pytest.raises(WeightsError, match="no pretrained weights 'resnet50.zz_in1k'.*resnet50.tv_in1k"):
        P.parse_identifier("resnet50.zz_in1k")
    with pytest.raises(WeightsError, match="unknown timm model 'resnet5O'.*close matches: resnet50"):
        P.parse_identifier("resnet5O.a1_in1k")
    with pytest.raises(WeightsError, match="DenseNet202_Weights.*close matches: DenseNet201_Weights.IMAGENET1K_V1"):
        P.parse_identifier("torchvision:DenseNet202_Weights.IMAGENET1K_V1")
    with pytest.raises(WeightsError, match="names a model, not its weights.*DenseNet201_Weights.IMAGENET1K_V1"):
        P.parse_identifier("torchvision:densenet201")
    with pytest.raises(WeightsError, match="is a torchvision identifier; use create_torchvision_model"):
        P.create_timm_model(TV_ID, pretrained=True)


def test_torch_hub_cache_file_must_match_the_published_prefix(tmp_path):
    torch.manual_seed(0)
    state = torchvision.models.resnet18(weights=None).state_dict()
    url = torchvision.models.get_weight("ResNet18_Weights.IMAGENET1K_V1").url
    prefix = url.rsplit("-", 1)[1].split(".")[0]
    cached = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / os.path.basename(url)
    cached.parent.mkdir(parents=True)
    torch.save(state, cached)
    assert not P.sha256_file(cached).startswith(prefix)
    with pytest.raises(WeightsError, match=rf"{cached.name}.*does not start with {prefix}"):
        P.torchvision_state_dict(TV_ID)
    own = tmp_path / "my_resnet18.pth"
    shutil.copyfile(cached, own)
    loaded, source = P.torchvision_state_dict(TV_ID, file=own)
    assert source.kind == "file" and source.identifier == TV_ID
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    warning = P.check_against_manifest(source, {})
    assert warning is not None and str(own) in warning and prefix in warning


def test_densenet_legacy_key_names_load_into_todays_torchvision(tmp_path):
    torch.manual_seed(0)
    state = torchvision.models.densenet121(weights=None).state_dict()
    # torchvision's published file: layer names from before torch 0.4, no BatchNorm batch counters
    legacy = {
        k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v
        for k, v in state.items()
        if not k.endswith("num_batches_tracked")
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    torch.save(legacy, tmp_path / "densenet121.pth")
    model, source = P.create_torchvision_model(
        "torchvision:DenseNet121_Weights.IMAGENET1K_V1", pretrained=True, file=tmp_path / "densenet121.pth"
    )
    assert source.kind == "file"
    assert all(torch.equal(model.state_dict()[k], state[k]) for k in state if not k.endswith("num_batches_tracked"))


def test_preprocessing_follows_the_weights_config():
    vit = P.preprocessing_for("vit_base_patch16_224.augreg2_in21k_ft_in1k")
    assert vit["mean"] == [0.5, 0.5, 0.5] and vit["std"] == [0.5, 0.5, 0.5]
    a1 = P.preprocessing_for("resnet50.a1_in1k")
    assert a1["mean"] == pytest.approx([0.485, 0.456, 0.406]) and a1["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert a1["interpolation"] == "bicubic" and a1["crop_pct"] == 0.95 and a1["input_size"] == [3, 224, 224]
    tv = P.preprocessing_for("torchvision:DenseNet201_Weights.IMAGENET1K_V1")
    assert tv["interpolation"] == "bilinear" and tv["crop_pct"] == 224 / 256 and tv["input_size"] == [3, 224, 224]
    overlaid = P.preprocessing_for("resnet50.a1_in1k", overlay={"mean": (0.1, 0.2, 0.3), "input_size": (3, 288, 288)})
    assert overlaid["mean"] == pytest.approx([0.1, 0.2, 0.3]) and overlaid["input_size"] == [3, 288, 288]
    assert overlaid["std"] == a1["std"]


def run_weights(argv, requests, manifest, capsys):
    parser = argparse.ArgumentParser(prog="pkg")
    P.add_weights_subcommands(parser.add_subparsers(dest="command").add_parser("weights"))
    args = parser.parse_args(["weights", *argv])
    code = P.weights_command(args, package="pkg", requests=requests, manifest_path=manifest)
    return code, capsys.readouterr().out


def write_manifest(path: Path, entries: dict) -> Path:
    path.write_text(json.dumps({"_note": "test manifest", **entries}))
    return path


def test_weights_check_refuses_a_file_with_one_byte_changed(tmp_path, cached_resnet18, capsys):
    _, link = cached_resnet18
    digest = P.sha256_file(link)
    manifest = write_manifest(tmp_path / "m.json", {TIMM_ID: {"file": "model.safetensors", "sha256": digest}})
    requests = {"research": [P.WeightsRequest(TIMM_ID, True)]}
    good = tmp_path / "good.safetensors"
    shutil.copyfile(link, good)
    bad = tmp_path / "bad.safetensors"
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 1
    bad.write_bytes(bytes(data))
    code, out = run_weights(["check", f"{TIMM_ID}={good}"], requests, manifest, capsys)
    assert code == 0 and "OK" in out
    code, out = run_weights(["check", f"{TIMM_ID}={bad}"], requests, manifest, capsys)
    assert code == 1 and f"FAIL {bad}" in out and digest in out
    code, out = run_weights(["check"], requests, manifest, capsys)  # the cached file the config uses
    assert code == 0 and str(link) in out
    link.resolve().write_bytes(bytes(data))  # the cached blob damaged in place
    code, out = run_weights(["check"], requests, manifest, capsys)
    assert code == 1 and "damaged" in out and str(link) in out
    with pytest.raises(WeightsError, match="damaged"):
        P.locate_weights(TIMM_ID)


def test_weights_list_and_fetch(tmp_path, cached_resnet18, capsys):
    _, link = cached_resnet18
    manifest = write_manifest(tmp_path / "m.json", {})
    requests = {
        "research": [P.WeightsRequest(TIMM_ID, True, role="face"), P.WeightsRequest(TV_ID, True, role="eye")],
        "demo": [P.WeightsRequest("resnet18", False)],
    }
    code, out = run_weights(["list"], requests, manifest, capsys)
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:4] == ["CONFIG", "ROLE", "IDENTIFIER", "FROM"]
    assert any("face" in x and "hf-cache" in x and P.sha256_file(link) in x for x in lines)
    assert any("eye" in x and "MISSING" in x for x in lines)
    assert any(x.startswith("demo") and "random" in x for x in lines)
    code, out = run_weights(["fetch", "demo"], requests, manifest, capsys)
    assert code == 0 and "nothing to fetch" in out
    with pytest.raises(WeightsError, match="(?s)ResNet18_Weights.*HF_HUB_OFFLINE is set.*pkg weights fetch CONFIG"):
        run_weights(["fetch", "research"], requests, manifest, capsys)
    with pytest.raises(ConfigError, match="unknown config 'nope'.*research, demo"):
        run_weights(["fetch", "nope"], requests, manifest, capsys)


def test_manifest_entries_are_validated(tmp_path):
    with pytest.raises(ConfigError, match=r"m.json: resnet18.a1_in1k.sha256 must be 64"):
        P.load_weights_manifest(write_manifest(tmp_path / "m.json", {TIMM_ID: {"sha256": "abc"}}))
    with pytest.raises(ConfigError, match="neither sha256 nor sha256_prefix"):
        P.load_weights_manifest(write_manifest(tmp_path / "m.json", {TIMM_ID: {"file": "model.safetensors"}}))
    with pytest.raises(ConfigError, match="does not exist"):
        P.load_weights_manifest(tmp_path / "none.json")
    entries = P.load_weights_manifest(
        write_manifest(tmp_path / "m.json", {f"timm:{TIMM_ID}": {"sha256_prefix": "ab12"}})
    )
    assert entries == {TIMM_ID: {"sha256_prefix": "ab12"}}
