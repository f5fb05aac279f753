"""The command line: help texts, make-synthetic, extract-fixations, one-line errors with exit code 2."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from saliency_entropy.cli import main

COMMANDS = ["train", "evaluate", "report", "make-synthetic", "extract-fixations", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert f"saliency-entropy {command}" in out and "usage" in out


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
    assert len(err) == 1 and err[0].startswith("error: checkpoint") and "best_model.pth" in err[0]
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


def test_configs_ship_with_the_package() -> None:
    from perception_shared.config import load_config, resolve_config_path
    from saliency_entropy.config import TrainConfig

    base = load_config(TrainConfig, resolve_config_path("saliency_entropy", "baseline"))
    reg = load_config(TrainConfig, resolve_config_path("saliency_entropy", "entropy_reg"))
    assert (base.entropy.weight, reg.entropy.weight) == (0.0, 1.0)
    base.entropy.weight = reg.entropy.weight
    assert base == reg  # the regularizer weight is the only difference between the two research configs
    assert reg.optim.lr * reg.optim.gamma ** len(reg.optim.milestones) == pytest.approx(1.585e-7)


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
