"""Training on synthetic data: it learns toward the known optimum, the entropy term raises the bias
entropy, the run directory holds what it should, resumption is exact, and it runs under torchrun."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from perception_shared.checkpoint import load_checkpoint
from perception_shared.distributed import init_distributed
from perception_shared.samplers import make_eval_loader
from saliency_entropy.data import FixationDataset, collate
from saliency_entropy.evaluate import load_run_model
from saliency_entropy.registry import build_model
from saliency_entropy.train import load_mit_records, make_eval_fn

from conftest import TINY, tiny_config, train_run


def _history(run: Path) -> list[dict[str, float]]:
    with open(run / "training_history.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def _metrics(run: Path) -> dict:
    return json.loads((run / "evaluation" / "metrics.json").read_text())


@pytest.mark.slow  # the first to run builds the trained_runs fixture (two trainings, ~15 s)
def test_training_improves_information_gain_toward_the_known_optimum(trained_runs: dict[str, Path]) -> None:
    run = trained_runs["baseline"]
    model, cfg, state = load_run_model(run / "best_model.pth", torch.device("cpu"))
    val = load_mit_records(cfg, policy=None, names=state["extra"]["split"]["val"])
    loader = make_eval_loader(FixationDataset(val, cfg.data.image_size), 8, collate_fn=collate)
    eval_fn = make_eval_fn(cfg, loader, init_distributed("cpu"))
    untrained = build_model(cfg.model, cfg.entropy).eval()
    untrained.set_center_prior(model.center_prior)
    with torch.no_grad():
        before, after = eval_fn(untrained, 0), eval_fn(model, 0)
    gt_ig = _metrics(run)["datasets"]["mit1003_val"]["gt_ig"]
    assert gt_ig > 0.5  # the content part of the synthetic density is learnable information
    assert after["ig"] > before["ig"] + 0.2
    assert after["ig"] > 0.5 * gt_ig
    assert after["ig"] == pytest.approx(_metrics(run)["datasets"]["mit1003_val"]["ig"], rel=1e-6)  # evaluate agrees


@pytest.mark.slow  # the first to run builds the trained_runs fixture (two trainings, ~15 s)
def test_entropy_term_increases_the_bias_map_entropy(trained_runs: dict[str, Path]) -> None:
    base, reg = _history(trained_runs["baseline"]), _history(trained_runs["entropy_reg"])
    assert reg[-1]["val/bias_entropy"] > base[-1]["val/bias_entropy"]
    assert reg[-1]["val/bias_entropy"] > reg[0]["val/bias_entropy"] - 1e-3
    mb, mr = _metrics(trained_runs["baseline"])["bias_map"], _metrics(trained_runs["entropy_reg"])["bias_map"]
    assert mr["entropy_nats"] > mb["entropy_nats"]
    assert mb["max_entropy_nats"] == pytest.approx(math.log(96 * 128))
    assert mr["entropy_bits"] == pytest.approx(mr["entropy_nats"] / math.log(2))


@pytest.mark.slow  # the first to run builds the trained_runs fixture (two trainings, ~15 s)
def test_run_directory_contents(trained_runs: dict[str, Path]) -> None:
    run = trained_runs["entropy_reg"]
    for name in (
        "best_model.pth",
        "final_model.pth",
        "last.pth",
        "checkpoint_epoch_3.pth",
        "split.json",
        "center_prior.json",
        "config.yaml",
        "train.log",
        "metrics.csv",
        "training_history.png",
    ):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    with open(run / "metrics.csv", newline="") as f:
        tags = {row["tag"] for row in csv.DictReader(f)}
    assert {
        "train_step/nll",
        "train_step/bias_entropy",
        "train_step/ig",
        "val/nll",
        "val/ig",
        "val/bias_entropy",
    } <= tags
    split = json.loads((run / "split.json").read_text())
    assert len(split["val"]) == 3 and len(split["train"]) == 27
    state = load_checkpoint(run / "final_model.pth")
    assert state["extra"]["split"] == split
    assert state["extra"]["weights"] == {
        "identifier": "timm:resnet18",
        "kind": "random",
        "path": None,
        "sha256": None,
        "pretrained": False,
    }
    # 27 images / batch 8 = 4 steps per epoch, 3 epochs, every step regularized (compute_every 1)
    assert state["extra"]["dose"] == {"steps": 12, "regularized_steps": 12} and state["global_step"] == 12
    base = load_checkpoint(trained_runs["baseline"] / "final_model.pth")["extra"]["dose"]
    assert base == {"steps": 12, "regularized_steps": 0}  # weight 0: nothing regularized, H only at validation
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["weights"][0]["kind"] == "random"
    assert set(manifest["data"]) == {"mit1003_stimuli", "mit1003_fixations"}
    assert manifest["data"]["mit1003_stimuli"]["files"] == 30 and manifest["config"]["entropy"]["weight"] == 1.0
    assert "RANDOM INITIALIZATION" in (run / "train.log").read_text() and "TOY settings" in (run / "train.log").read_text()
    prior = json.loads((run / "center_prior.json").read_text())
    assert prior["n_images"] == 27 and 0 < prior["bandwidth"] and 0 < prior["uniform_weight"] < 1


@pytest.mark.slow  # the first to run builds the trained_runs fixture (two trainings, ~15 s)
def test_evaluation_counts_every_image_once(trained_runs: dict[str, Path]) -> None:
    m = _metrics(trained_runs["baseline"])
    mit, cat = m["datasets"]["mit1003_val"], m["datasets"]["cat2000"]
    assert (mit["n_samples"], cat["n_samples"]) == (3, 6)
    assert m["n_samples"] == 9 and m["n_fixations"] == mit["n_fixations"] + cat["n_fixations"]
    assert sum(c["n_samples"] for c in cat["per_category"].values()) == 6
    with open(trained_runs["baseline"] / "evaluation" / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9 and sum(int(r["n_fixations"]) for r in rows) == m["n_fixations"]
    assert 0.5 < mit["auc_judd"] <= 1 and mit["nss"] > 0
    for name in ("bias_map.png", "bias_map.npy", "examples_mit1003_val.png", "examples_cat2000.png", "examples.npz"):
        assert (trained_runs["baseline"] / "evaluation" / name).is_file(), name


@pytest.mark.slow  # the first to run builds the trained_runs fixture (two trainings, ~15 s)
def test_resume_finishes_equal_to_an_uninterrupted_run(
    synthetic_root: Path, trained_runs: dict[str, Path], tmp_path: Path
) -> None:
    cfg2 = tiny_config(synthetic_root, "entropy.weight=0.0", "loop.epochs=2", "eval.cat2000=false")
    train_run(cfg2, tmp_path / "run")
    cfg3 = tiny_config(synthetic_root, "entropy.weight=0.0", "loop.epochs=3", "eval.cat2000=false")
    train_run(cfg3, tmp_path / "run", resume=True)
    resumed = load_checkpoint(tmp_path / "run" / "final_model.pth")["model"]
    straight = load_checkpoint(trained_runs["baseline"] / "final_model.pth")["model"]
    assert resumed.keys() == straight.keys()
    for k in straight:
        assert torch.equal(resumed[k], straight[k]), k


def test_the_dose_schedule_counts_global_optimizer_steps() -> None:
    """Every compute_every-th step whatever the world size: the fraction is 1 / compute_every over any
    stretch of steps, also one that a resume with another world size continues."""
    from saliency_entropy.train import dose_summary, regularized_step

    assert [regularized_step(s, 1) for s in range(4)] == [True] * 4
    flags = [regularized_step(s, 4) for s in range(40)]
    assert flags[:8] == [False, False, False, True] * 2 and sum(flags) == 10
    # 13 steps on one GPU, then a resume on two GPUs (half the steps per epoch) continues the count
    counts = {"steps": 13 + 27, "regularized_steps": sum(regularized_step(s, 4) for s in range(13 + 27))}
    assert dose_summary(2.0, counts, 4) == {
        "weight": 2.0,
        "compute_every": 4,
        "planned_dose": 0.5,
        "steps": 40,
        "regularized_steps": 10,
        "regularized_fraction": 0.25,
        "dose": 0.5,
    }


def test_the_training_step_reads_the_host_once_per_log_interval(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real step_fn (regularizer on every step) through the Trainer: at most ceil(N / log_every) + 1
    host reads in N steps."""
    from perception_shared.testing import count_epoch_reads

    cfg = tiny_config(synthetic_root, "loop.epochs=1", "loop.log_every=2", "eval.cat2000=false")
    with count_epoch_reads(monkeypatch, "saliency_entropy.train.Trainer") as reads:
        result = train_run(cfg, tmp_path / "run")
    assert result.global_step == 4  # 27 training images, batch 8
    assert reads.count <= math.ceil(4 / 2), reads.summary()


@pytest.mark.slow
def test_resume_on_two_processes_keeps_the_dose_and_evaluates_every_image_once(synthetic_root: Path, tmp_path: Path) -> None:
    """One epoch on one process, then a resume under torchrun with two: the dose schedule continues
    on the global step count (half the regularized steps, compute_every 2), and evaluation counts every
    image once."""
    overrides = ["data.ood_images=5", "entropy.n_samples=2", "center_prior.folds=3", "entropy.compute_every=2"]
    cfg = tiny_config(synthetic_root, "loop.epochs=1", *overrides)
    train_run(cfg, tmp_path / "run")
    script = tmp_path / "ddp.py"
    script.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "from perception_shared.distributed import init_distributed\n"
        "from perception_shared.cli import ResumeSpec\n"
        "from saliency_entropy.train import run_training\n"
        "from saliency_entropy.evaluate import evaluate_run\n"
        "run = sys.argv[1]\n"
        f"run_training('demo', {[*TINY, *overrides, 'loop.epochs=2']!r},\n"
        f"    resume_spec=ResumeSpec(Path(run), True, None), device='cpu', data={str(synthetic_root / 'MIT1003')!r}, cat2000={str(synthetic_root / 'CAT2000')!r})\n"
        "evaluate_run(run, init_distributed('cpu'))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PERCEPTION_NO_PROGRESS": "1"}
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", str(script), str(tmp_path / "run")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    m = json.loads((tmp_path / "run" / "evaluation" / "metrics.json").read_text())
    assert m["datasets"]["mit1003_val"]["n_samples"] == 3 and m["datasets"]["cat2000"]["n_samples"] == 5
    fixations = sum(
        len(r.fixations)
        for r in load_mit_records(
            tiny_config(synthetic_root),
            policy=None,
            names=json.loads((tmp_path / "run" / "split.json").read_text())["val"],
        )
    )
    assert m["datasets"]["mit1003_val"]["n_fixations"] == fixations
    history = _history(tmp_path / "run")
    assert len(history) == 2 and math.isfinite(history[1]["val/nll"])
    # 4 steps on one process (batch 8), then 2 on two (ceil(27 / 2) = 14 images per rank, batch 8)
    state = load_checkpoint(tmp_path / "run" / "final_model.pth")
    assert state["global_step"] == 6 and state["extra"]["dose"] == {"steps": 6, "regularized_steps": 3}
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and len(manifest["resumed_at"]) == 1
    assert m["entropy_dose"]["dose"] == pytest.approx(0.5)


def test_a_step_on_images_of_different_sizes_matches_the_per_image_computation(synthetic_root: Path) -> None:
    """The keep-aspect path through the real step: a landscape and a portrait image in one batch (a
    list), each scored on its own grid with the center prior rescaled to it."""
    from perception_shared.training import StepInfo
    from saliency_entropy.data import collate
    from saliency_entropy.losses import fixation_log_likelihoods
    from saliency_entropy.train import make_step_fn

    cfg = tiny_config(synthetic_root, "data.aspect=keep", "entropy.n_samples=2")
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.entropy).train()
    items = [
        {"image": torch.rand(3, 96, 128), "fixations": torch.tensor([[10.5, 20.5], [100.0, 50.0]], dtype=torch.float64), "index": 0},
        {"image": torch.rand(3, 128, 96), "fixations": torch.tensor([[90.2, 120.9]], dtype=torch.float64), "index": 1},
    ]
    batch = collate(items)
    assert isinstance(batch["image"], list) and batch["mask"].tolist() == [[True, True], [True, False]]
    out = make_step_fn(cfg, model)(model, batch, StepInfo(0, 0, 0))
    out.loss.backward()
    assert "bias_entropy" in out.metrics and torch.isfinite(out.loss)
    ll = []
    for item in items:
        logp, _ = model(item["image"][None])
        ll.append(fixation_log_likelihoods(logp, item["fixations"][None], 4)[0])
    ll = torch.cat(ll)
    torch.testing.assert_close(out.metrics["nll"], -ll.mean(), rtol=1e-5, atol=1e-5)
    base = torch.cat(
        [
            model.center_log_density(tuple(item["image"].shape[-2:])).double()[
                item["fixations"][:, 1].long(), item["fixations"][:, 0].long()
            ]
            for item in items
        ]
    )
    torch.testing.assert_close(out.metrics["ig"], (ll.double() - base).mean() / math.log(2), rtol=1e-5, atol=1e-5)
