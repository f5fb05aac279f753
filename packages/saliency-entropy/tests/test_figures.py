"""Every saliency figure kind (history, evaluation, prediction, report) passes the shared figure check,
and evaluate's figures reach the run's W&B run."""

from __future__ import annotations

import shutil

import torch

from perception_shared import figures
from perception_shared.checkpoint import load_checkpoint
from perception_shared.cli import resolve_run
from perception_shared.config import config_from_dict
from perception_shared.distributed import init_distributed
from perception_shared.plotting import plot_history
from perception_shared.testing import read_wandb_offline
from saliency_entropy.config import TrainConfig
from saliency_entropy.evaluate import evaluate_run
from saliency_entropy.predict import predict_images
from saliency_entropy.report import make_report
from saliency_entropy.train import history_plot


def test_every_saliency_figure_is_labelled_and_uncut(trained_runs, synthetic_root, tmp_path):
    run = trained_runs["entropy_reg"]
    copy = shutil.copytree(run, tmp_path / "run")  # the same run, tracked with W&B offline
    checkpoint = resolve_run(copy).checkpoint
    state = load_checkpoint(checkpoint)
    state["config"]["tracking"] = {"wandb": {"project": "perception-lab-tests", "entity": None, "mode": "offline"}}
    torch.save(state, checkpoint)
    cfg = config_from_dict(TrainConfig, state["config"])
    with figures.record_figures() as found:
        plot_history(state["history"], tmp_path / "history" / "training_history.png", **history_plot(cfg, state["extra"]["weights"]))
        evaluate_run(copy, init_distributed("cpu"))
        image = next((synthetic_root / "CAT2000" / "Stimuli").rglob("*.jpg"))
        predict_images(run, [image], tmp_path / "predictions", device="cpu")
        make_report(trained_runs["baseline"], run, out_dir=tmp_path / "report", overrides=["criteria.min_entropy_increase_pct=1000"])
    kinds = {p.rsplit("/", 1)[-1] for p in found}
    assert {"training_history.png", "bias_map.png", "examples_mit1003_val.png", f"{image.stem}_saliency.png",
            "criteria.png", "curves.png", "bias_maps.png", "examples.png"} <= kinds
    assert {p: problems for p, problems in found.items() if problems} == {}
    logged = {tag: (step, value) for attempt in read_wandb_offline(copy) for step, row in attempt.history.items()
              for tag, value in row.items() if tag.startswith("evaluate/")}
    assert set(logged) == {"evaluate/bias_map", "evaluate/examples_mit1003_val", "evaluate/examples_cat2000"}
    assert all(step == state["global_step"] and v["_type"] == "image-file" for step, v in logged.values())
    report = (tmp_path / "report" / "report.json").read_text()
    assert "cannot pass" in report  # the threshold above the ceiling, which criteria.png says as CANNOT PASS
