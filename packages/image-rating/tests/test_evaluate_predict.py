"""evaluate (metrics JSON/CSV with bootstrap intervals) and predict (ratings back in rating units)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from image_rating.evaluate import evaluate_run, load_trained
from image_rating.predict import predict_images
from image_rating.scaler import TargetScaler
from perception_shared.checkpoint import atomic_save, load_checkpoint
from perception_shared.errors import CheckpointError, DataError, UserError
from perception_shared.manifest import DataMismatchError


def test_evaluate_writes_metrics_with_bootstrap_intervals(trained_run, tmp_path):
    metrics = evaluate_run(trained_run.run_dir, split="val", out_dir=tmp_path / "ev", device="cpu", n_boot=200)
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved == metrics and metrics["n_samples"] == 12 and metrics["split"] == "val"
    assert metrics["weights"].startswith("test_resnet: RANDOM INIT") and metrics["weights_record"]["kind"] == "random"
    assert metrics["settings"].startswith("TOY SETTINGS") and metrics["bootstrap"]["n_boot"] == 200
    assert metrics["selection"] == "best epoch by val/pearson_r (max) on the val split (n=12)" and metrics["data_differences"] == []
    pred = pd.read_csv(tmp_path / "ev" / "predictions.csv")
    table = pd.read_csv(tmp_path / "ev" / "per_dimension_metrics.csv").set_index("dimension")
    for d, m in metrics["per_dimension"].items():
        r = stats.pearsonr(pred[f"{d}_pred"], pred[f"{d}_true"]).statistic
        assert m["pearson_r"] == pytest.approx(r, abs=1e-6) and table.loc[d, "pearson_r"] == pytest.approx(r, abs=1e-5)
        assert -1 <= m["r_ci_low"] < m["r_ci_high"] <= 1  # 12 images: the interval need not hold r itself
        assert m["noise_ceiling_r"] > 0.5  # the run's config knows the 20 raters
    assert (tmp_path / "ev" / "per_dimension_metrics.png").stat().st_size > 5000
    assert (tmp_path / "ev" / "scatter.png").is_file()
    # The run's own per-dimension file came from the same checkpoint and images.
    perf = pd.read_csv(trained_run.run_dir / "per_dimension_performance.csv").set_index("dimension")
    np.testing.assert_allclose(table["pearson_r"], perf["pearson_r"], atol=1e-5)

    everything = evaluate_run(trained_run.run_dir, split="all", out_dir=tmp_path / "all", device="cpu", n_boot=0)
    assert everything["n_samples"] == 60 and everything["per_dimension"]["Brightness"]["r_ci_low"] is None


def test_evaluate_refuses_other_data_than_the_run_was_trained_on(trained_run, synthetic, tmp_path):
    """The same files elsewhere are fine; one changed rating is refused unless allowed, and recorded."""
    copy = tmp_path / "copy"
    shutil.copytree(synthetic.root, copy)
    same = evaluate_run(trained_run.run_dir, data_root=copy, out_dir=tmp_path / "same", device="cpu", n_boot=0)
    assert same["data_differences"] == []
    lines = (copy / synthetic.csv.name).read_text().splitlines()
    lines[1] = lines[1].replace(",", ",1", 2)  # image 0 gets other ratings
    (copy / synthetic.csv.name).write_text("\n".join(lines) + "\n")
    with pytest.raises(DataMismatchError, match="ratings_csv.*--allow-data-mismatch"):
        evaluate_run(trained_run.run_dir, data_root=copy, out_dir=tmp_path / "refused", device="cpu", n_boot=0)
    allowed = evaluate_run(
        trained_run.run_dir,
        data_root=copy,
        out_dir=tmp_path / "allowed",
        device="cpu",
        n_boot=0,
        allow_data_mismatch=True,
    )
    assert len(allowed["data_differences"]) == 1 and "ratings_csv" in allowed["data_differences"][0]
    # a held-out set (--split all) is other data on purpose
    assert evaluate_run(trained_run.run_dir, split="all", data_root=copy, out_dir=tmp_path / "test", n_boot=0)


def test_predict_output_is_denormalized(trained_run, synthetic, tmp_path):
    """With a head that outputs the constant c, every prediction must be scaler.mean + c * scaler.std."""
    state = load_checkpoint(trained_run.run_dir / "best_model.pth")
    last = max(k for k in state["model"] if k.startswith("head.") and k.endswith(".weight"))
    bias = last.replace("weight", "bias")
    c = torch.linspace(-2.0, 2.0, state["model"][bias].numel())
    state["model"][last] = torch.zeros_like(state["model"][last])
    state["model"][bias] = c
    atomic_save(state, tmp_path / "constant.pth")
    df = predict_images(tmp_path / "constant.pth", [synthetic.images_dir], out_csv=tmp_path / "p.csv", device="cpu")
    scaler = TargetScaler.from_dict(state["extra"]["scaler"])
    expected = scaler.mean + c.double().numpy() * scaler.std
    assert len(df) == 60 and list(df.columns) == ["image", *scaler.dimensions]
    np.testing.assert_allclose(df[list(scaler.dimensions)].to_numpy(), np.tile(expected, (60, 1)), rtol=1e-5)
    saved = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(
        saved[list(scaler.dimensions)].to_numpy(), df[list(scaler.dimensions)].to_numpy(), rtol=1e-5
    )
    summary = pd.read_csv(tmp_path / "p_summary.csv").set_index("dimension")
    np.testing.assert_allclose(summary["mean"], expected, rtol=1e-5)
    np.testing.assert_allclose(summary["sd"], 0.0, atol=1e-3)


def test_predict_matches_evaluate_and_accepts_lists(trained_run, synthetic, tmp_path):
    val = json.loads((trained_run.run_dir / "split.json").read_text())["val"]
    listing = synthetic.root / "val_list.txt"
    listing.write_text("".join(f"images/{n}\n" for n in val))
    df = predict_images(trained_run.run_dir, [listing], device="cpu")
    ref = pd.read_csv(trained_run.run_dir / "val_predictions.csv")
    assert [p.rsplit("/", 1)[-1] for p in df["image"]] == ref["image"].tolist()
    for d in ("Brightness", "Sharpness"):
        np.testing.assert_allclose(df[d], ref[f"{d}_pred"], rtol=1e-4)


def test_predict_reports_unreadable_images(trained_run, synthetic, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    good = synthetic.images_dir / "img_0000.png"
    with pytest.raises(DataError, match="bad.png"):
        predict_images(trained_run.run_dir, [good, bad], device="cpu")
    df = predict_images(trained_run.run_dir, [good, bad], device="cpu", skip_bad=True)
    assert df["image"].tolist() == [str(good)]


def test_checkpoint_errors(tmp_path, trained_run):
    with pytest.raises(UserError, match="holds no checkpoint"):
        load_trained(tmp_path)
    (tmp_path / "x.pth").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        load_trained(tmp_path / "x.pth")
    atomic_save({"model": {}}, tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match="not an image-rating checkpoint"):
        load_trained(tmp_path / "foreign.pth")
    trained = load_trained(trained_run.run_dir)
    assert trained.config.model.backbone == "test_resnet" and not trained.model.training
    assert trained.checkpoint.name == "best_model.pth" and trained.preprocessing.image_size == 32
