"""Export (ONNX, TorchScript), run manifests, the common CLI builders, host-read counting, the GPU check."""

import argparse
import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from perception_shared import cli
from perception_shared.errors import UserError
from perception_shared.export import ExportError, export_model, preprocessing_path, run_exported, verify_export
from perception_shared.gpu_check import GpuCheckSpec, check_process_group, run_check
from perception_shared.manifest import (
    DataMismatchError,
    check_same_data,
    describe_data,
    file_hash,
    load_manifest,
    start_manifest,
)
from perception_shared.testing import count_host_reads
from perception_shared.training import StepOutput


class TwoHeads(nn.Module):
    """Two inputs, a dict of two outputs, a data-independent shape check: like our models."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 + 2, 2)

    def forward(self, image: torch.Tensor, extra: torch.Tensor) -> dict[str, torch.Tensor]:
        if image.shape[1] != 3:
            raise ValueError("expects RGB")
        f = self.conv(image).relu().mean(dim=(2, 3))
        return {"gaze": self.fc(torch.cat([f, extra], 1)), "map": self.conv(image).log_softmax(1)}


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_runs_outside_pytorch_with_any_batch_size(tmp_path, fmt):
    torch.manual_seed(0)
    model = TwoHeads()
    out = export_model(
        model, (torch.randn(2, 3, 8, 8), torch.randn(2, 2)), tmp_path / f"m.{'onnx' if fmt == 'onnx' else 'pt'}",
        fmt=fmt, input_names=["image", "extra"], output_names=["gaze", "map"], output_keys=["gaze", "map"],
        preprocessing={"mean": [0.5] * 3, "std": [0.25] * 3, "units": {"gaze": "radians"}},
    )
    report = verify_export(out, model, [(torch.randn(1, 3, 8, 8), torch.randn(1, 2)), (torch.randn(3, 3, 8, 8), torch.randn(3, 2))],
                           output_keys=["gaze", "map"], atol=1e-5, rtol=1e-4)
    assert [c["batch_size"] for c in report["checks"]] == [1, 3]
    meta = json.loads(preprocessing_path(out).read_text())
    assert meta["inputs"][0] == {"name": "image", "shape": ["batch", 3, 8, 8], "dtype": "float32"}
    assert meta["preprocessing"]["std"] == [0.25] * 3
    # independent check of one output against the module itself at batch size 5
    x, e = torch.randn(5, 3, 8, 8), torch.randn(5, 2)
    got = run_exported(out, (x, e))
    with torch.no_grad():
        np.testing.assert_allclose(got[0], model(x, e)["gaze"].numpy(), atol=1e-5)


def test_verify_export_names_the_output_that_differs(tmp_path):
    model = nn.Linear(4, 2)
    out = export_model(model, torch.randn(2, 4), tmp_path / "m.onnx", fmt="onnx", input_names=["x"], output_names=["y"], preprocessing={})
    with torch.no_grad():
        model.bias += 1.0  # the file now disagrees with the module
    with pytest.raises(ExportError, match="y differs from PyTorch at batch size 3"):
        verify_export(out, model, [torch.randn(3, 4)])


def test_unknown_export_format_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="'tflite'"):
        export_model(nn.Linear(2, 2), torch.randn(2, 2), tmp_path / "m", fmt="tflite", input_names=["x"], output_names=["y"], preprocessing={})


def test_file_hash_small_full_and_large_sampled(tmp_path, monkeypatch):
    import hashlib

    import perception_shared.manifest as manifest

    small = tmp_path / "a.bin"
    small.write_bytes(b"x" * 5000)
    assert file_hash(small) == ("sha256", hashlib.sha256(b"x" * 5000).hexdigest())
    monkeypatch.setattr(manifest, "FULL_HASH_MAX_BYTES", 1000)
    monkeypatch.setattr(manifest, "_CHUNK", 100)
    method, h1 = file_hash(small)
    data = bytearray(small.read_bytes())
    data[4950] = ord("y")  # inside the last sampled chunk
    small.write_bytes(bytes(data))
    assert method == "sha256-sampled" and file_hash(small)[1] != h1


def test_manifest_and_data_comparison(tmp_path):
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    for d, content in ((d1, b"abc"), (d2, b"abd")):
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "f.txt").write_bytes(content)
        (d / ".hidden").write_bytes(b"ignored")
    assert describe_data(d1)["files"] == 1
    runs = {}
    for name, data in (("a", d1), ("b", d1), ("c", d2)):
        m = start_manifest(tmp_path / name, config={"lr": 1}, argv=["prog", "train"], data_paths={"train": data}, seeds={"seed": 1})
        m.finish("completed", 0)
        runs[name] = load_manifest(tmp_path / name)
    assert runs["a"]["status"] == "completed" and runs["a"]["command"] == ["prog", "train"]
    assert runs["a"]["git"]["commit"] is None or len(runs["a"]["git"]["commit"]) == 40
    assert check_same_data({"a": runs["a"], "b": runs["b"]}) == []
    with pytest.raises(DataMismatchError, match="data 'train'.*--allow-data-mismatch"):
        check_same_data({"a": runs["a"], "c": runs["c"]})
    assert len(check_same_data({"a": runs["a"], "c": runs["c"]}, allow=True)) == 1
    with pytest.raises(DataMismatchError, match="no manifest"):
        check_same_data({"a": runs["a"], "old": None})


def test_resumed_manifest_keeps_its_start_time_and_its_first_data(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"a")
    b.write_bytes(b"bb")
    first = start_manifest(tmp_path / "run", config={}, data_paths={"train": a})
    first.finish("preempted", 75)
    again = start_manifest(tmp_path / "run", config={}, data_paths={"train": a})
    assert again.data["start_time"] == first.data["start_time"] and len(again.data["resumed_at"]) == 1
    assert "data_first_attempt" not in again.data
    other = start_manifest(tmp_path / "run", config={}, data_paths={"train": b})
    assert other.data["data_first_attempt"]["train"]["bytes"] == 1 and other.data["data"]["train"]["bytes"] == 2
    assert len(other.data["data_changed_on_resume"]) == 1
    # the difference shows when this run is compared with one trained on a alone
    assert check_same_data({"run": other.data, "ref": first.data}, allow=True)


def test_common_subcommands_have_one_shape(tmp_path):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli.add_train_command(sub, default_config="baseline")
    cli.add_evaluate_command(sub)
    cli.add_predict_command(sub, inputs_help="images")
    cli.add_export_command(sub)
    cli.add_validate_data_command(sub, path_help="data root")
    cli.add_make_synthetic_command(sub)
    cli.add_demo_command(sub)
    a = parser.parse_args(["evaluate", "runs/r1", "--device", "cpu", "--allow-data-mismatch"])
    assert (a.run, a.device, a.allow_data_mismatch) == ("runs/r1", "cpu", True)
    a = parser.parse_args(["predict", "--run", "r", "x.png", "y.png"])
    assert a.inputs == ["x.png", "y.png"] and a.run == "r"
    a = parser.parse_args(["export", "r", "--format", "torchscript"])
    assert a.fmt == "torchscript" and a.check
    a = parser.parse_args(["train", "--weights", "w.pth", "--set", "a=1", "--set", "b=2"])
    assert a.weights == "w.pth" and a.overrides == ["a=1", "b=2"] and a.config == "baseline"
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "r", "--format", "tflite"])


def test_resolve_run_prefers_the_best_checkpoint(tmp_path):
    with pytest.raises(UserError, match="holds no checkpoint"):
        cli.resolve_run(tmp_path)
    (tmp_path / "last.pth").write_bytes(b"")
    assert cli.resolve_run(tmp_path).checkpoint.name == "last.pth"
    (tmp_path / "best_model.pth").write_bytes(b"")
    assert cli.resolve_run(tmp_path).checkpoint.name == "best_model.pth"
    assert cli.resolve_run(tmp_path / "last.pth") == cli.RunRef(tmp_path, tmp_path / "last.pth")
    with pytest.raises(UserError, match="no such run directory"):
        cli.resolve_run(tmp_path / "nope")


def test_count_host_reads_sees_each_kind_of_read():
    t = torch.tensor([1.5, 2.0])
    with count_host_reads() as reads:
        float(t[0])
        t.sum().item()
        bool(t[0] > 0)
        t.tolist()
        t.numpy()
        int(t[1])
        _ = t * 2  # no read
    assert reads.count == 6, reads.summary()


def test_count_host_reads_ignores_the_optimizer_and_data_loading():
    p = nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p], lr=0.1)
    loader = DataLoader(TensorDataset(torch.arange(6.0)), batch_size=2)
    with count_host_reads() as reads:
        for (x,) in loader:
            loss = (p * x.sum()).sum()
            loss.backward()
            opt.step()
    assert reads.count == 0, reads.summary()


def test_gpu_check_dry_run_on_cpu():
    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))

    def step(m, batch, info):
        xb, yb = batch
        return StepOutput(((m(xb) - yb) ** 2).mean())

    spec = GpuCheckSpec("mlp", model, DataLoader(TensorDataset(x, y), batch_size=8), step, batch_size=8)
    result = run_check(spec, torch.device("cpu"), steps=3, warmup=1, min_loader_ratio=0.0)
    assert result["problems"] == [] and result["precision"] == "fp32"
    assert result["model_samples_per_s"] > 0 and result["loader"]["batches"] == 3 and result["peak_memory_mb"] > 0
    slow = run_check(spec, torch.device("cpu"), steps=1, warmup=0, min_loader_ratio=1e9)
    assert "loader" in slow["problems"][0]
    assert check_process_group(torch.device("cpu"))["problems"] == []
