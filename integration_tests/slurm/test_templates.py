"""Every shipped template, submitted with sbatch to a real Slurm: the job completes, its log is where the
template's #SBATCH --output says, and the run leaves the results it should (template_runs.py submits)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import pytest

from .cluster import assert_written_once_by_rank0
from .template_runs import Submitted
from conftest import PACKAGES, REPO, read_json

pytestmark = pytest.mark.slow

TEMPLATES = sorted(str(p.relative_to(REPO)) for p in [*(REPO / "slurm").glob("*.sbatch"), *(REPO / "packages").glob("*/slurm/*.sbatch")])
TRAIN = ["svl_train_incepu", "svl_train_gsta", "ge_train_eve_lite", "ge_train_eve_temporal", "ge_train_eve_hybrid", "ge_train_synthetic_lite", "ir_train",
         "se_train_baseline", "se_train_entropy_reg", "se_train_deepgaze3_scanpath"]


def expected_outputs(sub: Submitted) -> list[Path]:
    """The --output files the template names, for each record of the job (each array task)."""
    text = (REPO / sub.template).read_text()
    pattern = re.search(r"^#SBATCH --output=(\S+)", text, re.M).group(1)  # type: ignore[union-attr]
    paths = []
    for r in sub.job.records():
        name = pattern.replace("%x", r["JobName"]).replace("%j", r["JobId"])
        name = name.replace("%A", r.get("ArrayJobId", r["JobId"])).replace("%a", r.get("ArrayTaskId", ""))
        paths.append(sub.job.cluster.clone / name)
    return paths


def assert_done(sub: Submitted) -> str:
    """The job completed and wrote its log where the template says; returns the log."""
    sub.job.assert_completed()
    for expected, record in zip(expected_outputs(sub), sub.job.records()):
        assert Path(record["StdOut"]) == expected and expected.is_file(), f"log not at {expected}: {record['StdOut']}"
    return sub.job.log()


def test_every_template_is_submitted(template_jobs):
    assert {s.template for s in template_jobs.values()} == set(TEMPLATES)


def launched(sub: Submitted) -> str:
    return "1 node x 2 processes" if sub.nproc == 2 else "1 node x 1 process:"


@pytest.mark.parametrize("run_id", TRAIN)
def test_train_template_trains_on_one_node(run_id, template_jobs):
    sub = template_jobs[run_id]
    log = assert_done(sub)
    assert launched(sub) in log
    assert_written_once_by_rank0(sub.run_dir)
    assert len((sub.run_dir / "training_history.csv").read_text().splitlines()) == 2  # header + the one epoch


def test_gaze_convert_template_writes_every_frame(template_jobs):
    sub = template_jobs["ge_convert_eve"]
    assert_done(sub)
    frames = sub.extra["frames"]
    for split, participant in (("train", "train01"), ("train", "train02"), ("val", "val01")):
        with h5py.File(sub.data / split / f"participant_{participant}" / "frames_basler.h5") as f:
            assert len(f["gaze"]) == frames and f["face"].shape[1:3] == (224, 224)


@pytest.mark.parametrize("run_id, package", [("ge_evaluate", "gaze-estimation"), ("ir_evaluate", "image-rating")])
def test_evaluate_template_counts_every_sample_once(run_id, package, template_jobs):
    sub = template_jobs[run_id]
    log = assert_done(sub)
    assert launched(sub) in log
    metrics = read_json(PACKAGES[package].metrics_json(sub.extra["out"]))
    assert metrics["n_samples"] == PACKAGES[package].n_eval_samples(sub.data)


def test_saliency_evaluate_template_writes_the_report(template_jobs):
    sub = template_jobs["se_evaluate"]
    assert_done(sub)
    for run_dir in (sub.extra["baseline"], sub.run_dir):
        assert (run_dir / "evaluation" / "metrics.json").is_file()
    assert (sub.run_dir / "report" / "report.md").is_file()


def test_study_array_trains_and_evaluates_both_arms_and_the_aggregation_reports(template_jobs):
    sub = template_jobs["se_study"]
    assert_done(sub)
    assert sorted(int(r["ArrayTaskId"]) for r in sub.job.records()) == [0, 1]
    for arm in ("baseline", "entropy_reg"):
        run_dir = sub.run_dir / "seed_0" / arm
        assert (run_dir / "final_model.pth").is_file() and (run_dir / "evaluation" / "metrics.json").is_file(), arm
        assert read_json(run_dir / "manifest.json")["config"]["seed"] == 0
    sub.extra["aggregate"].assert_completed()
    assert (sub.run_dir / "report" / "report.md").is_file()


def test_compare_template_trains_and_evaluates_every_loss(template_jobs):
    sub = template_jobs["svl_compare_all"]
    assert_done(sub)
    losses = sorted(read_json(sub.run_dir / "comparison.json")["aggregate"])
    assert len(losses) == 8 and (sub.run_dir / "comparison.md").is_file()
    for loss in losses:
        assert [p.parent.name for p in (sub.run_dir / "runs" / loss).glob("*/final_model.pth")] == ["seed_0"], loss


def test_backbone_array_trains_each_config_in_its_own_task(template_jobs):
    sub = template_jobs["ir_train_backbones"]
    assert_done(sub)
    tasks = sub.job.records()
    assert sorted(int(r["ArrayTaskId"]) for r in tasks) == [0, 1, 2, 3, 4]
    configs = sorted(p.name for p in sub.run_dir.iterdir())
    assert configs == sorted(["baseline", "resnet101", "efficientnet_b0", "efficientnet_b3", "vit_base"])
    for config in configs:
        assert (sub.run_dir / config / "final_model.pth").is_file()
        command = read_json(sub.run_dir / config / "manifest.json")["command"]
        assert command[command.index("--config") + 1] == config


def test_multi_node_template_gives_each_node_its_cpus_and_a_reachable_rendezvous(template_jobs):
    sub = template_jobs["multi_node_probe"]
    log = assert_done(sub)
    ranks = [json.loads(line.split("probe ", 1)[1]) for line in log.splitlines() if line.startswith("probe ")]
    assert sorted(r["rank"] for r in ranks) == [0, 1] and {r["world"] for r in ranks} == {2}
    assert sorted(r["node"] for r in ranks) == ["n1", "n2"], "one torchrun per node"
    # srun got --cpus-per-task: without it Slurm 22.05 binds each task to one CPU
    assert [r["cpus"] for r in ranks] == [2, 2]
    # n1 is not a host name here: the template asked Slurm for the node's address
    assert "rendezvous 127.0.0.1:" in log


@pytest.mark.parametrize("run_id, launch", [("multi_node", "2 nodes x 1 processes"), ("srun_launcher", "srun, 2 tasks x 1 CPUs")])
def test_two_rank_launchers_train_one_run(run_id, launch, template_jobs):
    """multi_node.sbatch across both nodes, and single_node.sbatch with PL_LAUNCHER=srun (a rank per task)."""
    sub = template_jobs[run_id]
    log = assert_done(sub)
    assert launch in log
    assert_written_once_by_rank0(sub.run_dir)
    assert read_json(sub.run_dir / "manifest.json")["world_size"] == 2
