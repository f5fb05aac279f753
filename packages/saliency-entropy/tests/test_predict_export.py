"""predict on images of any size and aspect ratio, export to ONNX / TorchScript, and the study's reuse
of finished runs; all on the tiny trained runs."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from perception_shared.distributed import init_distributed
from perception_shared.errors import UserError
from saliency_entropy.evaluate import load_run_model
from saliency_entropy.export import ATOL, ExportableSaliency, export_run
from saliency_entropy.predict import predict_images
from saliency_entropy.study import run_dir_of, run_study


@pytest.mark.slow  # uses the trained_runs fixture
def test_predict_gives_a_normalized_log_density_on_each_images_own_grid(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(rng.integers(0, 255, (37, 50, 3), dtype=np.uint8)).save(inputs / "small.png")
    Image.fromarray(rng.integers(0, 255, (300, 121), dtype=np.uint8)).save(inputs / "tall_gray.jpg")  # portrait, 1 channel
    results = predict_images(trained_runs["entropy_reg"], [inputs], tmp_path / "out", device="cpu")
    assert [r.image.name for r in results] == ["small.png", "tall_gray.jpg"]
    for r, (h, w) in zip(results, [(37, 50), (300, 121)]):
        logp = np.load(r.log_density)
        assert logp.shape == (h, w) and logp.dtype == np.float32
        assert np.exp(logp.astype(np.float64)).sum() == pytest.approx(1.0, abs=1e-5)
        assert r.overlay.is_file() and max(r.model_size) == 128 and all(s % 4 == 0 for s in r.model_size)
    assert results[1].model_size == (128, 52)  # the aspect ratio kept: 300 x 121 -> 128 x 51.6 -> 52
    with open(tmp_path / "out" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["height"]), int(r["width"])) for r in rows] == [(37, 50), (300, 121)]


@pytest.mark.slow  # uses the trained_runs fixture; two exports (~10 s)
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_reproduces_pytorch_at_two_batch_sizes(trained_runs: dict[str, Path], tmp_path: Path, fmt: str) -> None:
    result = export_run(trained_runs["entropy_reg"], fmt=fmt, out=tmp_path / f"model.{'onnx' if fmt == 'onnx' else 'pt'}")
    checks = result["check"]["checks"]
    assert [c["batch_size"] for c in checks] == [1, 3] and all(c["max_abs_diff"] <= ATOL for c in checks)
    meta = json.loads(Path(result["preprocessing"]).read_text())
    assert [i["name"] for i in meta["inputs"]] == ["image", "centerbias"]
    assert meta["inputs"][1]["shape"] == ["batch", 24, 32] and meta["outputs"][0]["shape"] == ["batch", 96, 128]
    assert meta["preprocessing"]["weights"]["kind"] == "random"
    # the exported model's inputs are the model's own: with the run's center bias it is the model
    model, _, _ = load_run_model(trained_runs["entropy_reg"] / "best_model.pth", torch.device("cpu"))
    centerbias = torch.from_numpy(np.load(tmp_path / "model.centerbias.npy"))
    images = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        exported = ExportableSaliency(model)(images, centerbias.expand(2, -1, -1))
        logp, _ = model(images)
    torch.testing.assert_close(exported, model.full_resolution(logp), rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # uses the trained_runs fixture
def test_study_reuses_finished_runs_and_reports_over_them(trained_runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "study"
    for arm in ("baseline", "entropy_reg"):
        shutil.copytree(trained_runs[arm], run_dir_of(out, 0, arm))
    with pytest.raises(UserError, match="seed_1/baseline has not been trained"):
        run_study(out, [0, 1], init_distributed("cpu"), report_only=True)
    report = run_study(out, [0], init_distributed("cpu"))  # nothing to train or evaluate again
    assert report["seeds"] == [0] and (out / "report" / "report.md").is_file()
    assert not (run_dir_of(out, 0, "baseline") / "evaluation" / "evaluate.log").exists()


def test_export_without_onnx_names_the_extra_before_reading_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a))
    with pytest.raises(UserError) as e:  # the run does not exist: the extra is checked first
        export_run(tmp_path / "no_such_run", fmt="onnx", out=tmp_path / "m.onnx")
    assert str(e.value) == 'onnx export needs onnxruntime (the [export] extra): pip install "packages/saliency-entropy[export]"'
    with pytest.raises(UserError, match="no such run directory"):  # without the check, onnxruntime is not needed
        export_run(tmp_path / "no_such_run", fmt="onnx", out=tmp_path / "m.onnx", check=False)
