import csv
import json
from pathlib import Path

import pytest

from perception_shared.distributed import init_distributed
from sparse_video_loss import __version__
from sparse_video_loss.cli import main
from sparse_video_loss.compare import compare, parse_losses
from sparse_video_loss.demo import run_demo
from sparse_video_loss.losses import LOSSES


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["make-synthetic"], ["import-csv"], ["compare"], ["demo"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main(command + ["--help"])
    assert e.value.code == 0
    assert "usage: sparse-video-loss" in capsys.readouterr().out


def test_user_errors_exit_2_with_one_line(tiny_data, tmp_path, capsys):
    assert main(["train", "--config", "demo", "--data", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "o")]) == 2
    assert "nowhere/train.pt: no such file" in capsys.readouterr().err
    assert main(["train", "--config", "demo", "--data", str(tiny_data), "--set", "loss.name=l2", "--output-dir", str(tmp_path / "o")]) == 2
    assert "unknown loss 'l2'; valid names: mse, bce" in capsys.readouterr().err
    assert main(["train", "--config", "nonexistent"]) == 2
    assert "demo, simvp_gsta, simvp_incepu" in capsys.readouterr().err
    assert main(["compare", "--losses", "focal,huber", "--out", str(tmp_path / "c")]) == 2
    assert "unknown loss(es) huber" in capsys.readouterr().err
    assert main(["evaluate"]) == 2
    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing.pth")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["make-synthetic", str(tmp_path / "s"), "--n-val", "0"]) == 2


def test_parse_losses():
    assert parse_losses("all") == list(LOSSES)
    assert parse_losses("dice, mse") == ["dice", "mse"]


def test_cli_make_synthetic_train_evaluate(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["make-synthetic", str(data), "--n-train", "24", "--n-val", "8", "--n-test", "9", "--seed", "1"]) == 0
    run = tmp_path / "run"
    args = ["train", "--config", "demo", "--data", str(data), "--run-dir", str(run), "--device", "cpu",
            "--set", "loop.epochs=1", "--set", "loop.max_steps_per_epoch=2", "--set", "data.batch_size=4"]
    assert main(args) == 0
    assert (run / "config.yaml").is_file() and (run / "train.log").is_file() and (run / "best_model.pth").is_file()
    assert main(["evaluate", str(run), "--out", str(tmp_path / "eval")]) == 0
    assert "9 test sequences: F1@0.5" in capsys.readouterr().out
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["n_samples"] == 9
    # --auto-resume on a finished run continues from its checkpoint instead of starting again.
    assert main(args + ["--auto-resume"]) == 0
    assert "resumed from" in (run / "train.log").read_text()


def test_compare_two_losses_writes_table_plots_and_grid(tiny_config, tiny_data, tmp_path):
    cfg = tiny_config(tiny_data)
    out = compare(cfg, ["mse", "dice"], tmp_path / "cmp", init_distributed("cpu", environ={}))
    assert set(out["results"]) == {"mse", "dice"}
    with open(tmp_path / "cmp" / "comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["predictor"] for r in rows] == ["mse", "dice", "blank", "last_position"]
    assert float(rows[0]["f1@best"]) == pytest.approx(out["results"]["mse"]["overall"]["f1@best"])
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| dice | loss |" in md and "| last_position | baseline |" in md
    for name in ("per_horizon.png", "prediction_grid.png", "comparison.json", "runs/mse/eval/metrics.json"):
        assert (tmp_path / "cmp" / name).stat().st_size > 0
    # Same seed, data and budget: the two runs start from the same weights.
    from perception_shared.checkpoint import load_checkpoint

    a = load_checkpoint(tmp_path / "cmp" / "runs" / "mse" / "checkpoint_epoch_1.pth")
    assert a["config"]["loss"]["name"] == "mse" and a["config"]["seed"] == cfg.seed


@pytest.mark.slow
def test_demo_writes_summary(tmp_path, capsys):
    summary = run_demo(tmp_path / "demo", losses=("focal",), overrides=["loop.max_steps_per_epoch=2"])
    written = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert written["package"] == "sparse-video-loss" and written["version"] == __version__
    assert written["metrics"]["n_samples"] == 48 and written["seconds"] > 0
    for path in written["outputs"].values():
        assert Path(path).exists(), path
    assert "demo finished" in capsys.readouterr().out
    assert summary["metrics"]["compare_focal_f1@best"] is not None


def test_compare_leaves_a_preemption_marker_where_slurm_looks(tiny_config, tiny_data, tmp_path, monkeypatch):
    from perception_shared.preemption import MARKER, Preempted

    def preempted(*args, **kwargs):
        raise Preempted("received SIGUSR1")

    monkeypatch.setattr("sparse_video_loss.compare.train", preempted)
    with pytest.raises(Preempted):
        compare(tiny_config(tiny_data), ["bce"], tmp_path / "cmp", init_distributed("cpu", environ={}))
    assert "loss bce" in (tmp_path / "cmp" / MARKER).read_text()
