"""The command line: every subcommand, exit codes, and the same pipeline under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from image_rating.cli import main

TINY_SET = [
    "--set",
    "data.image_size=32",
    "--set",
    "data.resize_size=36",
    "--set",
    "data.batch_size=8",
    "--set",
    "eval.n_boot=20",
    "--set",
    "loop.epochs=1",
]


COMMANDS = [
    "make-synthetic",
    "validate-data",
    "train",
    "evaluate",
    "predict",
    "export",
    "weights",
    "demo",
    "verify-setup",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "usage: image-rating " + command in capsys.readouterr().out


def test_make_synthetic_then_train_evaluate_predict_export(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["make-synthetic", str(data), "--n-images", "40", "--size", "40", "--seed", "3"]) == 0
    assert "achievable r per dimension: Brightness" in capsys.readouterr().out
    assert main(["validate-data", str(data), "--config", "demo"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("no problems found")
    run = tmp_path / "run"
    assert (
        main(["train", "--config", "demo", "--data", str(data), "--run-dir", str(run), "--device", "cpu", *TINY_SET])
        == 0
    )
    assert (run / "best_model.pth").is_file() and (run / "per_dimension_performance.csv").is_file()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["command"][:3] == ["image-rating", "train", "--config"] and manifest["status"] == "completed"
    assert manifest["weights"][0]["kind"] == "random" and manifest["toy_settings"] is True
    assert main(["evaluate", str(run), "--device", "cpu", "--n-boot", "10"]) == 0
    out = capsys.readouterr().out
    assert "test split (n=6, held out" in out and "chosen on val split (n=8)" in out
    assert "RANDOM INIT" in out and "TOY SETTINGS" in out
    assert json.loads((run / "evaluation_test" / "metrics.json").read_text())["n_samples"] == 6
    assert main(["evaluate", str(run / "final_model.pth"), "--split", "train", "--out", str(tmp_path / "e")]) == 0
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["n_samples"] == 26
    out_csv = tmp_path / "pred" / "p.csv"
    assert (
        main(
            [
                "predict",
                "--run",
                str(run),
                str(data / "images" / "img_0001.png"),
                str(data / "images"),
                "--out",
                str(out_csv),
            ]
        )
        == 0
    )
    assert len(pd.read_csv(out_csv)) == 41 and "Brightness" in capsys.readouterr().out
    assert main(["export", str(run), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 0
    assert "batch 3: max |exported - PyTorch|" in capsys.readouterr().out
    assert (tmp_path / "m.preprocessing.json").is_file()


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--config",
                "demo",
                "--data",
                str(tmp_path),
                "--set",
                "optim.name=lion",
                "--run-dir",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "optim.name" in err and "Traceback" not in err
    assert main(["train", "--config", "no_such_config"]) == 2
    assert "no_such_config" in capsys.readouterr().err
    assert main(["train", "--config", "demo", "--data", str(tmp_path), "--run-dir", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "no_run")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main(["make-synthetic", str(tmp_path / "s"), "--n-images", "2"]) == 2
    assert main(["train", "--config", "demo", "--set", "model.backbone=resnet5", "--data", str(tmp_path)]) == 2


def test_verify_setup_reports_ok_and_failures(synthetic, tmp_path, capsys):
    assert main(["verify-setup", "--config", "demo", "--data", str(synthetic.root), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for line in (
        "[ OK ] python packages",
        "[ OK ] preprocessing",
        "[WARN] weights          test_resnet: RANDOM INIT",
        "[ OK ] data",
        "[ OK ] backbone",
        "[ OK ] one batch",
    ):
        assert line in out, out
    assert "0 failure(s)" in out
    code = main(["verify-setup", "--config", "demo", "--data", str(tmp_path / "missing"), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 1 and "[FAIL] data" in out and "random images (the data checks failed)" in out


@pytest.mark.slow
def test_demo_writes_summary(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--set", "loop.epochs=1", "--set", "eval.n_boot=20"]) == 0
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["package"] == "image-rating" and summary["metrics"]["n_test_images"] == 45
    assert all(Path(p).exists() for p in summary["outputs"].values())
    assert summary["settings"].startswith("TOY SETTINGS") and "RANDOM INIT" in summary["weights"]
    out = capsys.readouterr().out
    assert out.startswith("image-rating demo: wall time ") and "achievable" in out and "TorchScript export" in out


@pytest.mark.slow
def test_train_under_torchrun_counts_every_val_image_once(synthetic, tmp_path):
    """Two gloo processes: the DDP run's val metrics equal a single-process evaluation of its checkpoint."""
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PERCEPTION_NO_PROGRESS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "image_rating",
        "train",
        "--config",
        "demo",
        "--data",
        str(synthetic.root),
        "--run-dir",
        str(run),
        "--device",
        "cpu",
        *TINY_SET,
        "--set",
        "loop.epochs=2",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(pd.read_csv(run / "training_history.csv")) == 2
    assert proc.stderr.count("done after 2 epoch(s)") == 1  # rank 0 logs, rank 1 stays quiet
    ddp = pd.read_csv(run / "per_dimension_performance.csv").set_index("dimension")
    assert main(["evaluate", str(run), "--split", "val", "--out", str(tmp_path / "single"), "--n-boot", "0"]) == 0
    assert json.loads((run / "manifest.json").read_text())["world_size"] == 2
    single = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert single["n_samples"] == 12 and (ddp["n"] == 12).all()
    for d, m in single["per_dimension"].items():
        assert ddp.loc[d, "pearson_r"] == pytest.approx(m["pearson_r"], abs=1e-5)
        assert ddp.loc[d, "mae"] == pytest.approx(m["mae"], rel=1e-5)
