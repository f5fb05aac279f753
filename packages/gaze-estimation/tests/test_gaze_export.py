"""``export RUN``: ONNX (onnxruntime) and TorchScript (torch.jit.load) reproduce PyTorch at two batch sizes."""

import importlib.util
import json

import numpy as np
import pytest
import torch

from gaze_estimation.cli import main
from gaze_estimation.evaluate import load_model
from gaze_estimation.export import ATOL, RTOL, example_inputs
from perception_shared.export import run_exported


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("torchscript", ".pt")])
def test_export_reproduces_pytorch(tiny_run, tmp_path, fmt, suffix):
    out = tmp_path / f"model{suffix}"
    assert main(["export", str(tiny_run), "--format", fmt, "--out", str(out)]) == 0
    meta = json.loads(out.with_name("model.preprocessing.json").read_text())
    assert [i["name"] for i in meta["inputs"]] == ["face", "leye", "reye"] and meta["inputs"][0]["shape"] == ["batch", 3, 224, 224]
    assert meta["outputs"][0]["shape"] == ["batch", 2] and meta["preprocessing"]["normalization"]["focal_px"] == 600.0
    assert meta["preprocessing"]["weights"]["face"]["pretrained"] is False
    model, _, _ = load_model(tiny_run / "best_model.pth")
    for batch in (2, 5):  # batch sizes other than the example's: the batch axis is dynamic
        inputs = example_inputs(batch, seed=10 + batch)
        with torch.no_grad():
            want = model(*inputs).numpy()
        got = run_exported(out, inputs)[0]
        assert got.shape == (batch, 2)
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)


def test_export_without_onnx_names_the_extra_before_reading_the_run(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnx" else real(n, *a))
    # the run does not exist: the missing extra is found first, so the error names it, not the run
    assert main(["export", str(tmp_path / "no_run"), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == 'error: onnx export needs onnx (the [export] extra): pip install "packages/gaze-estimation[export]"'
