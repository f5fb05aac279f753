"""The command line: the common subcommands, help texts, make-synthetic, extract-fixations, weights,
validate-data, one-line errors with exit code 2."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from saliency_entropy.cli import main

COMMANDS = [
    "make-synthetic",
    "validate-data",
    "train",
    "evaluate",
    "predict",
    "export",
    "weights",
    "demo",
    "report",
    "study",
    "extract-fixations",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert f"saliency-entropy {command}" in out and "usage" in out


def test_predict_has_no_batch_size_since_each_image_runs_at_its_own_size(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "batch" not in capsys.readouterr().out.lower()
    with pytest.raises(SystemExit) as e:
        main(["predict", "--run", "r", "x.png", "--batch-size", "4"])
    assert e.value.code == 2 and "unrecognized arguments: --batch-size 4" in capsys.readouterr().err


def test_make_synthetic_and_extract_fixations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "make-synthetic",
                str(tmp_path / "s"),
                "--mit-images",
                "3",
                "--subjects",
                "2",
                "--cat-per-category",
                "1",
                "--seed",
                "5",
            ]
        )
        == 0
    )
    assert len(list((tmp_path / "s" / "MIT1003" / "ALLSTIMULI").glob("*.jpeg"))) == 3
    assert len(list((tmp_path / "s" / "MIT1003" / "DATA").iterdir())) == 2
    assert len(list((tmp_path / "s" / "CAT2000" / "FIXATIONLOCS").glob("*/*.mat"))) == 4
    assert main(["extract-fixations", str(tmp_path / "s" / "MIT1003"), "--out", str(tmp_path / "fix.csv")]) == 0
    with open(tmp_path / "fix.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) == {"x", "y", "image", "subject"}
    assert {r["subject"] for r in rows} <= {"s00", "s01"} and {r["image"] for r in rows} <= {
        f"synth000{i}.jpeg" for i in range(3)
    }
    assert "fixations on 3 images" in capsys.readouterr().out


def test_user_errors_print_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(tmp_path / "no_run"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: RUN") and "no_run" in err[0]
    (tmp_path / "empty_run").mkdir()
    assert main(["evaluate", str(tmp_path / "empty_run"), "--device", "cpu"]) == 2
    assert "best_model.pth" in capsys.readouterr().err
    assert main(["train", "--config", "no_such_config", "--output-dir", str(tmp_path)]) == 2
    assert "neither a file nor one of saliency_entropy's configs" in capsys.readouterr().err
    assert main(["train", "--config", "demo", "--set", "model.readout_factor=0", "--output-dir", str(tmp_path)]) == 2
    assert "readout_factor" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--config",
                "demo",
                "--data",
                str(tmp_path / "missing"),
                "--run-dir",
                str(tmp_path / "r"),
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    assert "MIT1003 folder" in capsys.readouterr().err


def test_research_configs_differ_only_in_the_regularizer_weight() -> None:
    from saliency_entropy.cli import shipped_configs

    configs = shipped_configs()
    base, reg = configs["baseline"], configs["entropy_reg"]
    assert (base.entropy.weight, reg.entropy.weight) == (0.0, 1.0)
    base.entropy.weight = reg.entropy.weight
    assert base == reg
    assert reg.optim.lr * reg.optim.gamma ** len(reg.optim.milestones) == pytest.approx(1.585e-7)


def test_weights_list_shows_each_config_and_check_refuses_a_changed_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "torchvision:DenseNet201_Weights.IMAGENET1K_V1" in out and "MISSING" in out  # offline, empty cache
    assert "demo" in out and "random" in out
    # a file named like torchvision's published one whose sha256 does not start with its c1103571 prefix
    bad = tmp_path / "densenet201-c1103571.pth"
    bad.write_bytes(b"not the published weights")
    assert main(["weights", "check", f"torchvision:DenseNet201_Weights.IMAGENET1K_V1={bad}"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_validate_data_reports_every_planted_fault_by_file(
    synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import shutil

    assert main(["validate-data", str(synthetic_root), "--config", "demo", "--json", str(tmp_path / "ok.json")]) == 0
    good = json.loads((tmp_path / "ok.json").read_text())
    assert good["ok"] and good["sections"]["MIT1003"]["images"] == 30 and good["sections"]["CAT2000"]["images"] == 6
    assert good["kind"] == "MIT1003 and CAT2000" and good["ms_per_file"] > 0
    assert good["files"] > 150 and "no problems found" in capsys.readouterr().out
    root = tmp_path / "faulty"
    shutil.copytree(synthetic_root, root)
    mit, cat = root / "MIT1003", root / "CAT2000"
    (mit / "ALLSTIMULI" / "synth0003.jpeg").write_bytes(b"\xff\xd8 truncated")
    (mit / "DATA" / "s01" / "synth0005.mat").write_bytes(b"MATLAB garbage")
    (mit / "DATA" / "s02" / "orphan.mat").write_bytes((mit / "DATA" / "s02" / "synth0006.mat").read_bytes())
    (cat / "FIXATIONLOCS" / "Indoor" / "002.mat").unlink()
    np.save(mit / "GROUND_TRUTH" / "synth0007.npy", np.ones((5, 5), dtype=np.float32))
    assert main(["validate-data", str(root), "--config", "demo", "--json", str(tmp_path / "bad.json")]) == 1
    report = json.loads((tmp_path / "bad.json").read_text())
    files = [p.split(": ", 1)[0] for p in report["problems"]]  # each problem names its file first
    for planted in ("synth0003.jpeg", "s01/synth0005.mat", "orphan.mat", "Indoor/002.jpg", "synth0007.npy"):
        assert sum(planted in f for f in files) == 1, (planted, files)
    assert len(files) == 5
    printed = capsys.readouterr().out
    assert "5 problem(s)" in printed and "PROBLEM " + report["problems"][0] in printed


@pytest.mark.slow  # uses the trained_runs fixture (two tiny trainings)
def test_evaluate_and_report_commands(
    trained_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    run = str(trained_runs["baseline"])
    assert main(["evaluate", run, "--device", "cpu", "--datasets", "mit1003_val", "--out", str(tmp_path / "ev")]) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert list(m["datasets"]) == ["mit1003_val"] and m["n_samples"] == 3
    assert "mit1003_val: 3 images" in capsys.readouterr().out
    assert main(["report", run, str(trained_runs["entropy_reg"]), "--out", str(tmp_path / "rep")]) == 0
    assert "verdict" in capsys.readouterr().out and (tmp_path / "rep" / "report.md").is_file()
    assert main(["report", run, "--out", str(tmp_path / "odd")]) == 2
    assert "in pairs" in capsys.readouterr().err


@pytest.mark.slow  # uses the trained_runs fixture
def test_evaluate_refuses_other_data_than_the_runs_unless_allowed(
    trained_runs: dict[str, Path], synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from PIL import Image

    other = tmp_path / "MIT1003"
    shutil.copytree(synthetic_root / "MIT1003", other)
    image = other / "ALLSTIMULI" / "synth0000.jpeg"
    Image.open(image).save(image, quality=60)  # the same picture, other bytes
    args = ["evaluate", str(trained_runs["baseline"]), "--data", str(other), "--datasets", "mit1003_val", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "refusing to compare runs on different data" in err and "mit1003_stimuli" in err and "--allow-data-mismatch" in err
    assert main([*args, "--out", str(tmp_path / "b"), "--allow-data-mismatch"]) == 0
    assert (tmp_path / "b" / "metrics.json").is_file()
