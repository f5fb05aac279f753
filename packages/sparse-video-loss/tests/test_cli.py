import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from perception_shared.checkpoint import load_checkpoint
from perception_shared.distributed import init_distributed
from perception_shared.errors import UserError
from sparse_video_loss import __version__
from sparse_video_loss.cli import main
from sparse_video_loss.compare import compare, parse_losses
from sparse_video_loss.demo import run_demo
from sparse_video_loss.losses import LOSSES


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["make-synthetic"], ["validate-data"], ["predict"], ["export"],
                                     ["weights"], ["import-csv"], ["compare"], ["demo"]])
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
    assert "demo, phase1, simvp_gsta, simvp_incepu" in capsys.readouterr().err
    assert main(["compare", "--losses", "focal,huber", "--out", str(tmp_path / "c")]) == 2
    assert "unknown loss(es) huber" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing.pth")]) == 2
    assert "missing.pth: no such run directory or checkpoint file" in capsys.readouterr().err
    assert main(["train", "--config", "demo", "--data", str(tiny_data), "--set", "model.pretrained=true", "--output-dir", str(tmp_path / "o")]) == 2
    assert "SimVP has no published pretrained weights (the study trains it from scratch)" in capsys.readouterr().err
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
    assert "9 test sequences: localization error" in capsys.readouterr().out
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["n_samples"] == 9
    # --auto-resume on a finished run continues from its checkpoint instead of starting again.
    assert main(args + ["--auto-resume"]) == 0
    assert "resumed from" in (run / "train.log").read_text()


def test_compare_over_seeds_reports_mean_and_sd_of_each_run(tiny_config, tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, "loop.max_steps_per_epoch=1", "compare.loss_kwargs={weighted_mse: {pos_weight: 50}}")
    out = compare(cfg, ["weighted_mse"], tmp_path / "cmp", init_distributed("cpu", environ={}), seeds=2)
    seeds = [cfg.seed, cfg.seed + 1]
    runs = {(n, s): json.loads((tmp_path / "cmp" / "runs" / n / f"seed_{s}" / "eval" / "metrics.json").read_text())
            for n in ("weighted_mse",) for s in seeds}
    assert runs[("weighted_mse", seeds[1])]["loss"] == {"name": "weighted_mse", "kwargs": {"pos_weight": 50.0}}
    for name in ("weighted_mse",):
        agg = out["aggregate"][name]
        assert agg["n_seeds"] == 2
        for key in ("loc_error_px", "hit@1px", "f1@best", "loss"):
            values = [runs[(name, s)]["overall"][key] for s in seeds]
            assert agg["overall"][key] == pytest.approx(np.mean(values))
            assert agg["overall"][f"{key}_sd"] == pytest.approx(np.std(values, ddof=1))
        h3 = [runs[(name, s)]["per_horizon"][2]["hit@2px"] for s in seeds]
        assert agg["per_horizon"][2]["hit@2px"] == pytest.approx(np.mean(h3))
    # different seeds, different initial weights
    a = load_checkpoint(tmp_path / "cmp" / "runs" / "weighted_mse" / f"seed_{seeds[0]}" / "checkpoint_epoch_1.pth")
    b = load_checkpoint(tmp_path / "cmp" / "runs" / "weighted_mse" / f"seed_{seeds[1]}" / "checkpoint_epoch_1.pth")
    assert a["config"]["seed"] != b["config"]["seed"] and not torch.equal(a["model"]["dec.readout.weight"], b["model"]["dec.readout.weight"])
    with open(tmp_path / "cmp" / "comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["predictor"] for r in rows] == ["weighted_mse", "blank", "last_position"]
    assert float(rows[0]["loc_error_px_sd"]) == pytest.approx(out["aggregate"]["weighted_mse"]["overall"]["loc_error_px_sd"])
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "TOY SETTINGS" in md and "RANDOM INIT" in md and " ± " in md and "Headline: localization error" in md
    assert md.index("loc_error_px") < md.index("f1@0.5")
    with open(tmp_path / "cmp" / "per_horizon.csv", newline="") as f:
        horizon_rows = list(csv.DictReader(f))
    assert len(horizon_rows) == 3 * 10 and "hit@1px_sd" in horizon_rows[0]
    assert len((tmp_path / "cmp" / "per_seed.csv").read_text().splitlines()) == 1 + 2
    for name in ("per_horizon.png", "prediction_grid.png", "comparison.json"):
        assert (tmp_path / "cmp" / name).stat().st_size > 0
    # Runs whose manifests record different data are not compared: finished runs keep their manifests.
    manifest = tmp_path / "cmp" / "runs" / "weighted_mse" / f"seed_{seeds[1]}" / "manifest.json"
    m = json.loads(manifest.read_text())
    m["data"]["train"]["hash"] = "0" * 64  # as if this seed had been trained on another train.pt
    manifest.write_text(json.dumps(m))
    ctx = init_distributed("cpu", environ={})
    with pytest.raises(UserError, match="refusing to compare runs on different data: .*seed_1.*data 'train'"):
        compare(cfg, ["weighted_mse"], tmp_path / "cmp", ctx, seeds=2)
    again = compare(cfg, ["weighted_mse"], tmp_path / "cmp", ctx, seeds=2, allow_data_mismatch=True)
    assert "DATA MISMATCH ALLOWED" in Path(again["outputs"]["table_md"]).read_text()
    assert again["aggregate"]["weighted_mse"]["overall"] == out["aggregate"]["weighted_mse"]["overall"]


@pytest.mark.slow
def test_demo_writes_summary(tmp_path, capsys):
    summary = run_demo(tmp_path / "demo", losses=("focal",), overrides=["loop.max_steps_per_epoch=2"])
    written = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert written["package"] == "sparse-video-loss" and written["version"] == __version__
    assert written["metrics"]["n_samples"] == 48 and written["seconds"] > 0 and written["random_init"] and written["toy"]
    for path in written["outputs"].values():
        assert Path(path).exists(), path
    printed = capsys.readouterr().out
    assert "demo: wall time" in printed and "TOY SETTINGS" in printed and "RANDOM INIT" in printed
    assert summary["metrics"]["compare_focal_f1@best"] is not None


def test_compare_leaves_a_preemption_marker_where_slurm_looks(tiny_config, tiny_data, tmp_path, monkeypatch):
    from perception_shared.preemption import MARKER, Preempted

    def preempted(*args, **kwargs):
        raise Preempted("received SIGUSR1")

    monkeypatch.setattr("sparse_video_loss.compare.train", preempted)
    with pytest.raises(Preempted):
        compare(tiny_config(tiny_data), ["bce"], tmp_path / "cmp", init_distributed("cpu", environ={}))
    assert "loss bce" in (tmp_path / "cmp" / MARKER).read_text()
