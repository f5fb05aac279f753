import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gaze_estimation.cli import build_parser, main
from perception_shared.checkpoint import load_checkpoint

SMALL = ["--config", "demo", "--set", "model.d_model=32", "--set", "model.num_layers=1", "--set", "figure_samples=2"]


@pytest.fixture(scope="module")
def cli_run(synth_root, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("cli") / "run"
    code = main(["train", *SMALL, "--data", str(synth_root), "--run-dir", str(run), "--set", "loop.epochs=1", "--device", "cpu"])
    assert code == 0
    return run


def test_train_evaluate_predict_resume(cli_run, synth_root, tmp_path):
    assert (cli_run / "best_model.pth").is_file() and (cli_run / "train.log").is_file()
    assert main(["evaluate", "--run-dir", str(cli_run), "--device", "cpu"]) == 0
    metrics = json.loads((cli_run / "evaluation_val" / "metrics.json").read_text())
    assert metrics["n_samples"] == 32 and set(metrics["per_participant"]) == {"val01", "val02"}
    assert (cli_run / "evaluation_val" / "per_participant.csv").is_file()
    out = tmp_path / "pred.csv"
    h5 = synth_root / "val" / "participant_val02" / "frames_basler.h5"
    assert main(["predict", str(h5), "--run-dir", str(cli_run), "--out", str(out), "--device", "cpu"]) == 0
    assert len(out.read_text().strip().splitlines()) == 1 + 16
    # resuming without --config uses the run's own config.yaml; one more epoch
    resumed = tmp_path / "resumed"
    shutil.copytree(cli_run, resumed)
    assert main(["train", "--resume", str(resumed), "--set", "loop.epochs=2", "--device", "cpu"]) == 0
    state = load_checkpoint(resumed / "final_model.pth")
    assert state["epoch"] == 2 and state["config"]["model"]["d_model"] == 32
    assert "random initialization" in (cli_run / "train.log").read_text()


def test_user_errors_exit_2_with_a_message(tmp_path, capsys, synth_root):
    assert main(["train", *SMALL, "--data", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path)]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err
    assert main(["train", "--config", "demo", "--set", "model.name=gazetr_huge", "--data", str(synth_root), "--output-dir", str(tmp_path)]) == 2
    assert "gazetr_huge" in capsys.readouterr().err
    assert main(["train", "--config", "no_such_config"]) == 2
    assert "no_such_config" in capsys.readouterr().err
    assert main(["evaluate"]) == 2
    assert "--run-dir or --checkpoint" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing.pth")]) == 2
    assert "missing.pth does not exist" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), "--checkpoint", str(tmp_path / "x.pth"), "--out", str(tmp_path / "o.csv")]) == 2


def test_make_synthetic_cli(tmp_path):
    assert main(["make-synthetic", str(tmp_path / "s"), "--train-participants", "1", "--val-participants", "1", "--samples", "3"]) == 0
    assert sorted(p.relative_to(tmp_path / "s").as_posix() for p in (tmp_path / "s").rglob("*.h5")) == [
        "train/participant_train01/frames_basler.h5",
        "val/participant_val01/frames_basler.h5",
    ]


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "make-synthetic", "convert-eve", "demo"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([command, "--help"])
    assert e.value.code == 0
    assert len(capsys.readouterr().out) > 200


@pytest.mark.slow
def test_torchrun_two_processes_train_and_evaluate(synth_root, tmp_path):
    """DDP on CPU (gloo): training runs in step on both ranks, evaluation sees every sample once."""
    worker = Path(__file__).with_name("gaze_dist_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PERCEPTION_NO_PROGRESS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker), str(synth_root), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 and r["global_step"] == 128 // 2 // 8 for r in ranks)
    assert all(r["n_samples"] == 32 for r in ranks)
    state = load_checkpoint(tmp_path / "run" / "best_model.pth")
    assert state["world_size"] == 2
    ddp = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert ddp["n_samples"] == 32 and ddp["per_participant"]["val01"]["n_samples"] == 16
    # the same checkpoint evaluated by one process gives the same numbers
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run" / "best_model.pth"), "--out", str(tmp_path / "one"), "--device", "cpu"]) == 0
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert ddp["mean_angular_error_deg"] == pytest.approx(one["mean_angular_error_deg"], abs=1e-4)
    assert ddp["median_angular_error_deg"] == pytest.approx(one["median_angular_error_deg"], abs=1e-4)


@pytest.mark.parametrize("name", ["demo", "eve_lite", "eve_hybrid", "synthetic_lite", "synthetic_tiny"])
def test_shipped_configs_load_and_name_a_known_model(name):
    from gaze_estimation.config import TrainConfig
    from gaze_estimation.models import MODEL_NAMES
    from perception_shared.config import load_config, resolve_config_path

    cfg = load_config(TrainConfig, resolve_config_path("gaze_estimation", name))
    assert cfg.model.name in MODEL_NAMES and cfg.loop.monitor == "val/angular_error"


def test_crop_folder_errors_name_the_folder(tmp_path):
    from PIL import Image

    from gaze_estimation.predict import CropFolderDataset
    from perception_shared.errors import DataError

    for part in ("face", "leye", "reye"):
        (tmp_path / part).mkdir()
    Image.new("RGB", (100, 100)).save(tmp_path / "face" / "a.png")
    Image.new("L", (50, 50)).save(tmp_path / "leye" / "a.png")
    with pytest.raises(DataError, match="reye: no image for sample"):
        CropFolderDataset(tmp_path)
    Image.new("RGB", (112, 112), (10, 20, 30)).save(tmp_path / "reye" / "a.jpg")
    ds = CropFolderDataset(tmp_path)
    s = ds[0]
    assert s["face"].shape == (3, 224, 224) and s["leye"].shape == (3, 112, 112)  # resized, gray -> RGB
    (tmp_path / "reye" / "a.jpg").unlink()
    (tmp_path / "reye" / "a.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot decode image"):
        CropFolderDataset(tmp_path)[0]
