"""Pretrained backbones (issue 12), offline: caches built in tmp_path in the layouts the libraries read."""

import os
import shutil
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from gaze_estimation.cli import load_train_config, main
from gaze_estimation.models import build_model
from gaze_estimation.train import check_weights_hashes, train
from perception_shared.distributed import init_distributed
from perception_shared.errors import WeightsError
from perception_shared.pretrained import WeightsSource, preprocessing_for, sha256_file
from perception_shared.testing import go_offline, put_in_offline_hf_cache

TV_RESNET18 = "torchvision:ResNet18_Weights.IMAGENET1K_V1"


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network (a connection attempt raises), HF_HUB_OFFLINE=1, empty caches under tmp_path."""
    go_offline(monkeypatch, tmp_path)


def test_research_config_loads_exactly_the_cached_and_the_local_weights(tmp_path):
    """eve_lite as shipped, except its face backbone switched by --set to timm's ResNet-18 (same family),
    which comes from the hub cache; the eye backbones keep torchvision's ResNet-18, from a local file."""
    torch.manual_seed(0)
    face_state = {k: v.contiguous() for k, v in timm.create_model("resnet18", pretrained=False).state_dict().items()}
    save_file(face_state, str(tmp_path / "resnet18.safetensors"))
    cached = put_in_offline_hf_cache("timm/resnet18.a1_in1k", "model.safetensors", tmp_path / "resnet18.safetensors")
    eye = torchvision.models.resnet18(weights=None)
    torch.save(eye.state_dict(), tmp_path / "eye.pth")
    cfg = load_train_config("eve_lite", ["model.face_weights=resnet18.a1_in1k", f"model.eye_weights_file={tmp_path / 'eye.pth'}"])
    assert cfg.model.pretrained and cfg.model.weights_identifier("eye") == TV_RESNET18
    model, sources = build_model(cfg.model)
    for key in ("conv1.weight", "layer4.1.bn2.running_var", "layer2.0.downsample.0.weight"):
        assert torch.equal(model.face.state_dict()[key], face_state[key]), key
        for branch in (model.leye, model.reye):
            assert torch.equal(branch.state_dict()[key], eye.state_dict()[key]), key
    assert sources["face"].kind == "hf-cache" and sources["face"].sha256 == sha256_file(cached)
    assert sources["eye"].kind == "file" and sources["eye"].sha256 == sha256_file(tmp_path / "eye.pth")
    # each branch normalizes with its own weights' statistics
    assert model.face_norm.mean.flatten().tolist() == pytest.approx(preprocessing_for("resnet18.a1_in1k")["mean"])
    assert model.eye_norm.std.flatten().tolist() == pytest.approx(preprocessing_for(TV_RESNET18)["std"])


def test_missing_weights_fail_before_anything_trains(synth_root, tmp_path):
    cfg = load_train_config("eve_lite", ["data.selection_participants=1", "data.num_workers=0"], data=str(synth_root))
    with pytest.raises(WeightsError) as e:
        train(cfg, ctx=init_distributed("cpu"), run_dir=tmp_path / "run")
    message = str(e.value)
    assert "ResNet18_Weights.IMAGENET1K_V1" in message and "HF_HUB_OFFLINE" in message
    for way in ("--weights PATH", "weights fetch CONFIG", "run online once"):
        assert way in message
    assert not list((tmp_path / "run").glob("*.pth")) and not (tmp_path / "run" / "manifest.json").exists()


def test_preprocessing_follows_the_weights_config():
    """The hybrid's timm ViTs (augreg: mean = std = 0.5), built at random init with small ViTs of the same family."""
    cfg = load_train_config(
        "eve_hybrid",
        ["model.face_weights=vit_tiny_patch16_224.augreg_in21k_ft_in1k", "model.eye_weights=vit_tiny_patch16_224.augreg_in21k_ft_in1k"],
    )
    model, sources = build_model(cfg.model, load_weights=False)
    assert model.face_norm.mean.flatten().tolist() == [0.5, 0.5, 0.5] and model.eye_norm.std.flatten().tolist() == [0.5, 0.5, 0.5]
    assert not sources["face"].pretrained  # load_weights=False: evaluation rebuilds, the checkpoint has the weights
    face, leye, reye = torch.rand(1, 3, 224, 224), torch.rand(1, 3, 112, 112), torch.rand(1, 3, 112, 112)
    assert model.eval()(face, leye, reye).shape == (1, 2)  # the eye ViT runs at 112 px
    lite = build_model(load_train_config("eve_lite").model, load_weights=False)[0]
    assert lite.face_norm.mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])


def test_weights_list_and_check(tmp_path, capsys):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "eve_lite" in out and "eve_hybrid" in out and "vit_base_patch16_224.augreg2_in21k_ft_in1k" in out
    assert "MISSING" in out  # offline with empty caches
    # a file that is not the published torchvision ResNet-18 (its sha256 does not start with f37072fd)
    fake = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), fake)
    assert main(["weights", "check", f"{TV_RESNET18}={fake}"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and str(fake) in out and "f37072fd" in out
    # a damaged file in the torch hub cache under the published name is refused by name
    damaged = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    damaged.parent.mkdir(parents=True)
    shutil.copyfile(fake, damaged)
    assert main(["weights", "check"]) == 1
    assert "resnet18-f37072fd.pth" in capsys.readouterr().out


def test_training_warns_when_a_loaded_file_differs_from_the_manifest(tmp_path):
    fake = tmp_path / "resnet18.pth"
    fake.write_bytes(b"not the published file")
    warnings = check_weights_hashes({"face": WeightsSource(TV_RESNET18, "file", fake, sha256_file(fake))})
    assert len(warnings) == 1 and str(fake) in warnings[0] and "f37072fd" in warnings[0]
    assert check_weights_hashes({"face": WeightsSource("gazetr_tiny", "random", None, None)}) == []
