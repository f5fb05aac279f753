"""Held-out reporting, every figure in the shared style, and the first errors a new user meets."""

import csv
import importlib.util
import json
import shutil

import pytest
import torch

from image_rating.cli import main
from image_rating.data import load_split, make_split
from image_rating.evaluate import evaluate_run
from image_rating.report import history_plot
from perception_shared.figures import record_figures
from perception_shared.plotting import plot_history


def test_split_has_a_seeded_held_out_test_part_disjoint_from_train_and_val():
    names = [f"img_{i:03d}.png" for i in range(100)]
    split = make_split(names, 0.2, 7, 0.15)
    parts = [set(split[k]) for k in ("train", "val", "test")]
    assert [len(p) for p in parts] == [65, 20, 15]
    assert set().union(*parts) == set(names) and sum(map(len, parts)) == 100
    assert make_split(list(reversed(names)), 0.2, 7, 0.15) == split
    # val is drawn first: without a test part it is the val of earlier versions
    assert make_split(names, 0.2, 7, 0.0)["val"] == split["val"]


def test_evaluate_reports_the_test_split_and_says_val_chose_the_epoch(trained_run, tmp_path):
    split = load_split(trained_run.run_dir / "split.json")
    with record_figures() as figures:
        metrics = evaluate_run(trained_run.run_dir, out_dir=tmp_path / "ev", device="cpu", n_boot=20)
        history = [
            {k: float(v) if k != "epoch" else int(v) for k, v in row.items() if v != ""}
            for row in csv.DictReader(open(trained_run.run_dir / "training_history.csv"))
        ]
        weights = json.loads((trained_run.run_dir / "manifest.json").read_text())["weights"][0]
        plot_history(history, tmp_path / "training_history.png", run_name="run", best_epoch=2, **history_plot(True, weights))
    assert metrics["split"] == "test" and metrics["n_samples"] == len(split["test"]) == 9
    assert "held out" in metrics["split_note"] and f"val split (n={len(split['val'])})" in metrics["split_note"]
    assert metrics["warnings"] == []
    # every figure kind of a run (training history, per-dimension bars, scatter) passes the style check
    assert len(figures) == 3 and all(problems == [] for problems in figures.values()), figures


def test_a_run_without_a_test_split_is_evaluated_on_val_with_a_warning(trained_run, tmp_path, caplog):
    old = tmp_path / "old_run"
    shutil.copytree(trained_run.run_dir, old)
    state = torch.load(old / "best_model.pth", weights_only=True)
    del state["extra"]["split"]["test"]
    torch.save(state, old / "best_model.pth")
    metrics = evaluate_run(old, out_dir=tmp_path / "ev", device="cpu", n_boot=0)
    assert metrics["split"] == "val" and metrics["requested_split"] == "test"
    assert "no held-out test split" in metrics["warnings"][0] and "optimistic" in metrics["warnings"][0]
    assert "also chose the best epoch" in metrics["split_note"]


def test_export_without_onnx_is_one_line_naming_the_extra(trained_run, tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnx" else real(n, *a))
    assert main(["export", str(trained_run.run_dir), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == 'error: onnx export needs onnx (the [export] extra): pip install "packages/image-rating[export]"'
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n-images", "0"], "--n-images must be between 4 and 1000000, got 0"),
        (["--size", "100000"], "--size must be between 16 and 4096, got 100000"),
        (["--raters", "1"], "--raters must be between 2 and 100000, got 1"),
        (["--noise-scale", "nan"], "--noise-scale must be at least 0, got nan"),
        (["--seed", "-1"], "--seed must be at least 0, got -1"),
    ],
)
def test_make_synthetic_arguments_fail_in_one_line(args, message, tmp_path, capsys):
    assert main(["make-synthetic", str(tmp_path / "d"), *args]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"


def test_make_synthetic_into_a_file_fails_in_one_line(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    assert main(["make-synthetic", str(tmp_path / "f"), "--n-images", "4", "--size", "16"]) == 2
    assert capsys.readouterr().err.startswith("error: make-synthetic: cannot write")


def test_train_with_a_wrong_data_folder_leaves_no_run_folder(tmp_path, capsys):
    out = tmp_path / "outputs"
    assert main(["train", "--config", "demo", "--data", str(tmp_path / "nowhere"), "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "failed before its first step" in err
    assert list(out.iterdir()) == []


def test_a_training_split_smaller_than_a_batch_says_the_way_out(synthetic, tmp_path, capsys):
    args = ["train", "--config", "demo", "--data", str(synthetic.root), "--output-dir", str(tmp_path / "o")]
    assert main([*args, "--set", "data.batch_size=64"]) == 2
    err = capsys.readouterr().err
    assert "--set data.batch_size=39" in err and "--config demo" in err
