import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gaze_estimation.cli import build_parser, main, shipped_configs
from perception_shared.checkpoint import load_checkpoint
from perception_shared.manifest import load_manifest

from conftest import SMALL


def test_train_evaluate_predict_resume(tiny_run, synth_root, tmp_path):
    assert (tiny_run / "best_model.pth").is_file() and (tiny_run / "train.log").is_file()
    out = tmp_path / "eval"
    assert main(["evaluate", str(tiny_run), "--out", str(out), "--device", "cpu"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_samples"] == 32 and set(metrics["per_participant"]) == {"val01", "val02"}
    assert metrics["random_init"] is True and "RANDOM INIT" in metrics["weights_used"] and metrics["purpose"] == "toy"
    assert (out / "per_participant.csv").is_file()
    # RUN may also be the checkpoint file itself
    assert main(["evaluate", str(tiny_run / "best_model.pth"), "--out", str(tmp_path / "eval2"), "--device", "cpu"]) == 0
    pred = tmp_path / "pred.csv"
    h5 = synth_root / "val" / "participant_val02" / "frames_basler.h5"
    assert main(["predict", "--run", str(tiny_run), str(h5), str(h5), "--out", str(pred), "--device", "cpu"]) == 0
    assert len(pred.read_text().strip().splitlines()) == 1 + 2 * 16
    # resuming without --config uses the run's own config.yaml; one more epoch
    resumed = tmp_path / "resumed"
    shutil.copytree(tiny_run, resumed)
    assert main(["train", "--resume", str(resumed), "--set", "loop.epochs=2", "--device", "cpu"]) == 0
    state = load_checkpoint(resumed / "final_model.pth")
    assert state["epoch"] == 2 and state["config"]["model"]["d_model"] == 32
    log = (tiny_run / "train.log").read_text()
    assert "RANDOM initialization" in log and "TOY settings" in log


def test_every_run_has_a_manifest(tiny_run, synth_root):
    m = load_manifest(tiny_run)
    assert m["status"] == "completed" and m["exit_code"] == 0 and m["seeds"]["seed"] == 0
    roles = [k.split(":")[0] for k in m["data"]]
    assert (roles.count("train"), roles.count("selection"), roles.count("report")) == (3, 1, 2)
    assert {k.split(":")[1] for k in m["data"] if k.startswith("report:")} == {"val01", "val02"}
    assert all(e["kind"] == "file" and len(e["hash"]) == 64 for e in m["data"].values())
    assert {w["role"] for w in m["weights"]} == {"face", "eye"} and not any(w["pretrained"] for w in m["weights"])
    assert m["versions"]["gaze-estimation"] and m["command"][0]


def test_evaluate_refuses_other_data_unless_allowed(tiny_run, synth_root, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(synth_root, other)
    assert main(["evaluate", str(tiny_run), "--data", str(other), "--split", "train", "--out", str(tmp_path / "e"), "--device", "cpu"]) == 2
    assert "different data" in capsys.readouterr().err
    assert main(["evaluate", str(tiny_run), "--data", str(other), "--split", "train", "--out", str(tmp_path / "e"),
                 "--device", "cpu", "--allow-data-mismatch"]) == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["data_mismatch_allowed"] and metrics["protocol"]["disjoint"] is False
    assert metrics["protocol"]["statement"].startswith("NOT an independent estimate")


def test_user_errors_exit_2_with_a_message(tmp_path, capsys, synth_root):
    assert main(["train", *SMALL, "--data", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path)]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err
    assert main(["train", "--config", "demo", "--set", "model.name=gazetr_huge", "--data", str(synth_root), "--output-dir", str(tmp_path)]) == 2
    assert "gazetr_huge" in capsys.readouterr().err
    assert main(["train", "--config", "no_such_config"]) == 2
    assert "no_such_config" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing.pth")]) == 2
    assert "missing.pth" in capsys.readouterr().err
    assert main(["train", "--config", "eve_hybrid", "--weights", str(tmp_path / "w.pth")]) == 2
    assert "face_weights_file" in capsys.readouterr().err
    assert main(["train", *SMALL, "--set", "data.selection_participants=4", "--data", str(synth_root), "--output-dir", str(tmp_path)]) == 2
    assert "selection_participants is 4" in capsys.readouterr().err


def test_make_synthetic_cli(tmp_path):
    assert main(["make-synthetic", str(tmp_path / "s"), "--train-participants", "1", "--val-participants", "1", "--samples", "3"]) == 0
    assert sorted(p.relative_to(tmp_path / "s").as_posix() for p in (tmp_path / "s").rglob("*.h5")) == [
        "train/participant_train01/frames_basler.h5",
        "val/participant_val01/frames_basler.h5",
    ]


def test_make_synthetic_arguments_and_the_default_config_fail_with_one_line_that_says_the_way_out(tmp_path, capsys, synth_root):
    bad = (
        ["--train-participants", "0"], ["--val-participants", "-1"], ["--samples", "0"], ["--camera-images", "-2"],
        ["--steps", "0", "--format", "eve"], ["--steps", "2"], ["--sequences", "--format", "eve"], ["--sequences", "--blink-prob", "1"],
    )
    for args in bad:
        assert main(["make-synthetic", str(tmp_path / "x"), *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, (args, err)
    assert not (tmp_path / "x").exists()
    # make-synthetic's defaults (4 training participants) then train without --config (eve_lite holds out 4)
    assert main(["train", "--data", str(synth_root), "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "data.selection_participants is 4" in err and "--set data.selection_participants=N with 1 <= N < 4" in err
    assert "--config demo" in err


@pytest.mark.parametrize(
    "command",
    ["make-synthetic", "validate-data", "train", "evaluate", "compare", "predict", "predict-raw", "export", "weights", "demo", "convert-eve"],
)
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
    # 3 of the 4 training participants (one is held out for model selection), 32 samples each
    assert all(r["world_size"] == 2 and r["global_step"] == 96 // 2 // 8 for r in ranks)
    assert all(r["n_samples"] == 32 for r in ranks)
    state = load_checkpoint(tmp_path / "run" / "best_model.pth")
    assert state["world_size"] == 2
    ddp = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert ddp["n_samples"] == 32 and ddp["per_participant"]["val01"]["n_samples"] == 16
    # the same checkpoint evaluated by one process gives the same numbers
    assert main(["evaluate", str(tmp_path / "run" / "best_model.pth"), "--out", str(tmp_path / "one"), "--device", "cpu"]) == 0
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert ddp["mean_angular_error_deg"] == pytest.approx(one["mean_angular_error_deg"], abs=1e-4)
    assert ddp["median_angular_error_deg"] == pytest.approx(one["median_angular_error_deg"], abs=1e-4)


def test_shipped_configs_say_what_they_are():
    configs = shipped_configs()
    assert set(configs) == {"demo", "eve_lite", "eve_hybrid", "synthetic_lite", "synthetic_tiny", "temporal_demo", "eve_temporal"}
    for name, cfg in configs.items():
        research = cfg.purpose == "research"
        # research configs ask for ImageNet weights by identifier, one per backbone role; toys say pretrained: false
        assert cfg.model.pretrained == research, name
        requests = cfg.model.weights_requests()
        assert [r.role for r in requests] == (["face", "eye"] if research else []), name
        assert all(r.pretrained == research for r in requests)


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
