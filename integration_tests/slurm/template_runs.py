"""Every shipped SLURM template, submitted to the test cluster the way a user would.

Each submission overrides only what the test cluster lacks: no GPUs (`--gpus-per-node=0`), 2 CPUs per
node, a short time limit. Training commands get tiny settings through the templates' own argument
pass-through (`--set ...` after the script name) and synthetic data through the templates' data
variables. Each package's main train and evaluate templates run 2 processes (gloo) on one node
(`PL_NPROC_PER_NODE=2`, standing in for 2 GPUs); its other templates run 1 process, which keeps the
session short.

Jobs that need both nodes go first; the rest queue on n1 (`LANE`), leaving n2 to the preemption tests
and the uninterrupted runs they compare with (`PREEMPT_LANE`).
A template added to the repository must be added here: test_templates.py checks that every template
file is submitted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .cluster import NO_GPU, Cluster, Job

# The lanes. The queued n1 jobs also get a lower priority: Slurm's main scheduler stops at the first
# pending job of a partition that cannot start, so a queue waiting for n1 would hold back a job for n2
# until the backfill scheduler gets to it (10 s and more), and the preemption tests want theirs at once.
LANE = ("--nodelist=n1", "--nice=100")
PREEMPT_LANE = ("--nodelist=n2",)
TWO_CPUS = (*LANE, NO_GPU, "--cpus-per-task=2", "--time=10")
ONE_CPU = (*LANE, NO_GPU, "--cpus-per-task=1", "--time=10")
# Research configs shrunk to a step; the model and data pipeline stay the config's own.
FEW_STEPS = ("--set", "loop.epochs=1", "--set", "loop.max_steps_per_epoch=1", "--set", "data.num_workers=0")
# Random initialization: test jobs download nothing (a real submission fetches the weights first, on a
# login node: `<package> weights fetch CONFIG`).
NO_WEIGHTS = ("--set", "model.pretrained=false")


@dataclass(frozen=True)
class PreemptRun:
    """The preemption tests' training: sparse-video-loss's demo model on its synthetic data (48 training
    sequences), logging (and looking for a signal) every step."""

    epochs: int
    batch_size: int
    nproc: int

    @property
    def steps_per_epoch(self) -> int:
        return 48 // (self.batch_size * self.nproc)

    def command(self, data: Path) -> list[str]:
        return ["sparse-video-loss", "train", "--config", "demo", "--data", str(data), "--set", f"data.batch_size={self.batch_size}",
                "--set", f"loop.epochs={self.epochs}", "--set", "loop.log_every=1"]


# LONG (one process) trains about 30 s on an idle 2-core machine, longer than the 24-30 s from a job's
# start to its time-limit warning (see test_preemption), so some attempt is warned mid-training; SHORT
# (two processes under torchrun, sharing one CPU) is stopped by the tests' own signals mid-epoch.
PREEMPT = {"long": PreemptRun(epochs=16, batch_size=2, nproc=1), "short": PreemptRun(epochs=3, batch_size=1, nproc=2)}
PREEMPT_SBATCH = (NO_GPU, "--cpus-per-task=1", "--time=10")


@dataclass
class Submitted:
    """A submitted template run and what its checks need."""

    job: Job
    template: str
    nproc: int = 1
    run_dir: Path | None = None  # where the template's run lands (in the clone for relative run dirs)
    data: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def write_eve_release(root: Path, frames: int = 6) -> int:
    """A minimal EVE release (two train and one val participant, one stimulus each, camera basler).

    Labels are smooth pitch/yaw curves; the face and eye videos are plain gradients. Returns the number
    of labelled frames per participant.
    """
    import av  # gaze-estimation's own dependency for reading EVE videos

    t = np.linspace(0, 1, frames, dtype=np.float32)
    for participant, phase in (("train01", 0.0), ("train02", 0.5), ("val01", 1.0)):
        step = root / participant / "step010_image_MIT-synthetic"
        step.mkdir(parents=True)
        with h5py.File(step / "basler.h5", "w") as f:
            f["face_g_tobii/data"] = np.stack([0.2 * np.sin(6 * t + phase), 0.3 * np.cos(4 * t + phase)], axis=1)
            f["face_g_tobii/validity"] = np.ones(frames, bool)
        for name, (h, w) in (("basler_face.mp4", (64, 64)), ("basler_eyes.mp4", (32, 64))):
            with av.open(str(step / name), "w") as container:
                stream = container.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                for i in range(frames):
                    img = np.broadcast_to(np.linspace(0, 255, w, dtype=np.uint8)[None, :, None], (h, w, 3)).copy()
                    img[..., 1] = 8 * i
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
                container.mux(stream.encode())
    return frames


def submit_template_runs(cluster: Cluster, synthetic_data: Callable[[str], Path], workdir: Path) -> dict[str, Submitted]:
    """Submit every template; returns the submissions by test id."""
    runs: dict[str, Submitted] = {}
    clone = cluster.clone

    def train(run_id: str, template: str, *args: object, nproc: int, job_name: str, env: dict[str, str] | None = None,
              sbatch: tuple[str, ...] = (), data: Path | None = None) -> Submitted:
        """A training template whose run lands in the default runs/<job name>-<job id>."""
        job = cluster.submit(template, *args, sbatch=(*(TWO_CPUS if nproc == 2 else ONE_CPU), *sbatch),
                             env={"PL_NPROC_PER_NODE": str(nproc), **(env or {})})
        runs[run_id] = Submitted(job, template, nproc, clone / "runs" / f"{job_name}-{job.id}", data)
        return runs[run_id]

    def after(*subs: Submitted) -> tuple[str, str]:
        """Start when these jobs completed; cancel at once when one of them failed."""
        return "--dependency=afterok:" + ":".join(s.job.id for s in subs), "--kill-on-invalid-dep=yes"

    # --- both nodes, before the lanes fill ------------------------------------------------------
    svl = synthetic_data("sparse-video-loss")
    probe = ("import json, os; print('probe', json.dumps({'rank': int(os.environ['RANK']), 'world': int(os.environ['WORLD_SIZE']), "
             "'node': os.environ['SLURMD_NODENAME'], 'cpus': len(os.sched_getaffinity(0))}))")
    both = (NO_GPU, "--cpus-per-task=2", "--time=10")
    job = cluster.submit("slurm/multi_node.sbatch", "python", "-c", probe, sbatch=both, env={"PL_NPROC_PER_NODE": "1"})
    runs["multi_node_probe"] = Submitted(job, "slurm/multi_node.sbatch")
    job = cluster.submit("slurm/multi_node.sbatch", "sparse-video-loss", "train", "--config", "demo", "--data", svl,
                         "--set", "loop.epochs=1", sbatch=both, env={"PL_NPROC_PER_NODE": "1"})
    runs["multi_node"] = Submitted(job, "slurm/multi_node.sbatch", 2, clone / "runs" / f"perception-{job.id}", svl)

    # --- lane n2: the uninterrupted runs the preemption tests compare with --------------------------
    for name, spec in PREEMPT.items():
        run_dir = clone / "runs" / f"reference-{name}"
        job = cluster.submit("slurm/single_node.sbatch", *spec.command(svl), sbatch=(*PREEMPT_LANE, *PREEMPT_SBATCH),
                             env={"PL_RUN_DIR": str(run_dir), "PL_NPROC_PER_NODE": str(spec.nproc)})
        runs[f"reference_{name}"] = Submitted(job, "slurm/single_node.sbatch", spec.nproc, run_dir, svl)

    # --- lane n1 --------------------------------------------------------------------------------
    job = cluster.submit("slurm/single_node.sbatch", "sparse-video-loss", "train", "--config", "demo", "--data", svl,
                         "--set", "loop.epochs=1", sbatch=(*LANE, NO_GPU, "--ntasks-per-node=2", "--cpus-per-task=1", "--time=10"),
                         env={"PL_LAUNCHER": "srun"})
    runs["srun_launcher"] = Submitted(job, "slurm/single_node.sbatch", 2, clone / "runs" / f"perception-{job.id}", svl)

    # sparse-video-loss
    svl_env = {"PL_DATA": str(svl)}
    train("svl_train_incepu", "packages/sparse-video-loss/slurm/train_incepu.sbatch", *FEW_STEPS, "--set", "data.batch_size=2",
          nproc=2, job_name="sparse-video-loss-train-incepu", env=svl_env, data=svl)
    train("svl_train_gsta", "packages/sparse-video-loss/slurm/train_gsta.sbatch", *FEW_STEPS, "--set", "data.batch_size=2",
          nproc=1, job_name="sparse-video-loss-train-gsta", env=svl_env, data=svl)
    train("svl_compare_all", "packages/sparse-video-loss/slurm/compare_all.sbatch", *FEW_STEPS, "--set", "data.batch_size=2",
          nproc=1, job_name="sparse-video-loss-compare", env={**svl_env, "PL_CONFIG": "demo"}, data=svl)

    # gaze-estimation: convert a (tiny) EVE release and train on it; train on synthetic participants and
    # evaluate that run. The tiny data sets have two training participants: one trains, one selects.
    ge = synthetic_data("gaze-estimation")
    ge_small = ("--set", "data.selection_participants=1", "--set", "data.batch_size=2", "--set", "data.eval_batch_size=6", *NO_WEIGHTS)
    eve_root, eve_h5 = workdir / "eve", workdir / "eve_h5"
    frames = write_eve_release(eve_root)
    template = "packages/gaze-estimation/slurm/convert_eve.sbatch"
    job = cluster.submit(template, eve_root, eve_h5, sbatch=ONE_CPU, env={"EVERY": "1"})
    convert = runs["ge_convert_eve"] = Submitted(job, template, 1, None, eve_h5, {"frames": frames})
    eve_lite = train("ge_train_eve_lite", "packages/gaze-estimation/slurm/train_eve_lite.sbatch", "--data", eve_h5, *FEW_STEPS,
                     *ge_small, nproc=1, job_name="gaze-estimation-eve-lite", sbatch=after(convert), data=eve_h5)
    # the temporal model's frame encoder starts from that run, as the template's usage line says; windows of 3
    # of the tiny release's 6 frames
    train("ge_train_eve_temporal", "packages/gaze-estimation/slurm/train_eve_temporal.sbatch", "--data", eve_h5,
          "--init-from", eve_lite.run_dir, *FEW_STEPS, *ge_small, "--set", "data.sequence_length=3", "--set", "data.window_stride=3",
          nproc=1, job_name="gaze-estimation-eve-temporal", sbatch=after(convert, eve_lite), data=eve_h5)
    # the hybrid's ViT-B face branch writes 1.3 GB per checkpoint: the same architecture with ViT-Tiny branches
    tiny_vits = ("--set", "model.face_weights=vit_tiny_patch16_224.augreg_in21k_ft_in1k",
                 "--set", "model.eye_weights=vit_tiny_patch16_224.augreg_in21k_ft_in1k")
    train("ge_train_eve_hybrid", "packages/gaze-estimation/slurm/train_eve_hybrid.sbatch", "--data", eve_h5, *FEW_STEPS, *ge_small,
          *tiny_vits, nproc=1, job_name="gaze-estimation-eve-hybrid", sbatch=after(convert), data=eve_h5)
    ge_train = train("ge_train_synthetic_lite", "packages/gaze-estimation/slurm/train_synthetic_lite.sbatch", "--data", ge, *FEW_STEPS,
                     *ge_small, nproc=2, job_name="gaze-estimation-synthetic-lite", data=ge)
    template = "packages/gaze-estimation/slurm/evaluate.sbatch"
    job = cluster.submit(template, ge_train.run_dir, "--data", ge, "--out", workdir / "ge-eval", sbatch=(*TWO_CPUS, *after(ge_train)),
                         env={"PL_NPROC_PER_NODE": "2"})
    runs["ge_evaluate"] = Submitted(job, template, 2, ge_train.run_dir, ge, {"out": workdir / "ge-eval"})

    # image-rating: the baseline config, its evaluation, and the backbone array (one process per task), each
    # with timm's tiny test ResNet in place of the config's backbone (ViT-B alone writes 1 GB per checkpoint)
    ir = synthetic_data("image-rating")
    small_images = ("--set", "data.image_size=64", "--set", "data.resize_size=72", "--set", "data.batch_size=4",
                    "--set", "model.backbone=test_resnet", *NO_WEIGHTS)
    ir_train = train("ir_train", "packages/image-rating/slurm/train.sbatch", *FEW_STEPS, *small_images, nproc=2,
                     job_name="image-rating-train", env={"IR_DATA": str(ir)}, data=ir)
    template = "packages/image-rating/slurm/evaluate.sbatch"
    job = cluster.submit(template, "--out", workdir / "ir-eval", "--n-boot", "20", sbatch=(*TWO_CPUS, *after(ir_train)),
                         env={"PL_NPROC_PER_NODE": "2", "IR_RUN": str(ir_train.run_dir)})
    runs["ir_evaluate"] = Submitted(job, template, 2, ir_train.run_dir, ir, {"out": workdir / "ir-eval"})
    template = "packages/image-rating/slurm/train_backbones.sbatch"
    job = cluster.submit(template, *FEW_STEPS, *small_images, sbatch=ONE_CPU, env={"IR_DATA": str(ir)})
    runs["ir_train_backbones"] = Submitted(job, template, 1, clone / "runs" / f"image-rating-backbones-{job.id}", ir)

    # saliency-entropy: both trainings (DenseNet-201 at a small image size), then the evaluation + report
    se = synthetic_data("saliency-entropy")
    small_saliency = ("--set", "data.image_size=[96,128]", "--set", "data.ood_image_size=[72,128]", "--set", "data.ood_images=4",
                      "--set", "data.batch_size=2", "--set", "data.eval_batch_size=2", "--set", "entropy.n_samples=2", *NO_WEIGHTS)
    se_env = {"SE_DATA": str(se / "MIT1003"), "SE_CAT2000": str(se / "CAT2000")}
    baseline = train("se_train_baseline", "packages/saliency-entropy/slurm/train_baseline.sbatch", *FEW_STEPS, *small_saliency,
                     nproc=2, job_name="saliency-entropy-baseline", env=se_env, data=se)
    entropy = train("se_train_entropy_reg", "packages/saliency-entropy/slurm/train_entropy_reg.sbatch", *FEW_STEPS, *small_saliency,
                    nproc=2, job_name="saliency-entropy-entropy-reg", env=se_env, data=se)
    # DeepGaze III's scanpath stage starts from a spatial DeepGaze III run: a one-step one of the toy config
    spatial_dir = workdir / "se-deepgaze3-spatial"
    spatial = cluster.submit_command(
        f"saliency-entropy train --config demo_scanpath --set model.scanpath=false --data {se / 'MIT1003'} "
        f"--run-dir {spatial_dir} --device cpu {' '.join(FEW_STEPS)}",
        sbatch=ONE_CPU, label="saliency-entropy spatial DeepGaze III run",
    )
    train("se_train_deepgaze3_scanpath", "packages/saliency-entropy/slurm/train_deepgaze3_scanpath.sbatch", *FEW_STEPS,
          *small_saliency, nproc=1, job_name="saliency-entropy-deepgaze3-scanpath", env={**se_env, "SE_SPATIAL": str(spatial_dir)},
          sbatch=after(Submitted(spatial, "--wrap")), data=se)
    template = "packages/saliency-entropy/slurm/evaluate.sbatch"
    job = cluster.submit(template, sbatch=(*TWO_CPUS, *after(baseline, entropy)),
                         env={"PL_NPROC_PER_NODE": "2", "BASELINE_RUN": str(baseline.run_dir), "ENTROPY_RUN": str(entropy.run_dir)})
    runs["se_evaluate"] = Submitted(job, template, 2, entropy.run_dir, se, {"baseline": baseline.run_dir})
    # the seeds study for one seed (array tasks 0 and 1: both arms), then its aggregation as the template
    # says: a CPU job after the array, `study --report-only`
    template, study = "packages/saliency-entropy/slurm/study.sbatch", clone / "runs" / "study"
    job = cluster.submit(template, *FEW_STEPS, *small_saliency, sbatch=(*ONE_CPU, "--array=0-1"), env={**se_env, "SE_STUDY": str(study)})
    aggregate = cluster.submit_command(f"saliency-entropy study --seeds 1 --out {study} --report-only", label="study aggregation",
                                       sbatch=(*ONE_CPU, f"--dependency=afterok:{job.id}", "--kill-on-invalid-dep=yes",
                                               f"--output={study}/aggregate.out"))
    runs["se_study"] = Submitted(job, template, 1, study, se, {"aggregate": aggregate})
    return runs
