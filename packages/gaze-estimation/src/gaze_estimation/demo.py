"""The whole pipeline at toy size on synthetic data, on CPU, offline (RANDOM INIT, configs/demo.yaml):

make-synthetic -> train (model selection on a held-out training participant) -> evaluate (on the
validation participants) -> predict (HDF5 and crop folders) -> export (TorchScript, checked) -> predict-raw on
rendered camera images with their true gaze (CSV, annotated PNGs, screen points from a calibration);
then the temporal model on 10 Hz synthetic sequences (``make-synthetic --sequences``): a single-frame run on
them, ``gazetr_temporal`` started from it (configs/temporal_demo.yaml: its frame encoder frozen for the
first epoch), and ``compare`` of the two on the same validation frames, whose verdict is printed.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from perception_shared.config import load_config, resolve_config_path
from perception_shared.distributed import init_distributed
from perception_shared.jsonio import write_json
from perception_shared.logging import setup_logging
from perception_shared.runs import prepare_run_dir

from . import __version__
from .compare import compare_runs
from .config import TrainConfig, purpose_line
from .data import GazeH5Dataset, find_h5_files
from .evaluate import evaluate
from .export import export_run
from .metrics import per_sample_errors
from .predict import predict
from .raw import RawConfig, run_predict_raw
from .synthetic import make_camera_images, make_synthetic
from .synthetic_sequences import SequenceNoise, context_margin, make_synthetic_sequences, readings_from_predictions
from .train import train

CAMERA_IMAGES = 6
# Synthetic sequences with a known temporal answer: half the frames blink, the iris is drawn 3 degrees off
# per axis, crops are not misaligned (so that the tiny model learns to read the eyes in seconds).
SEQUENCE_NOISE = SequenceNoise(blink_prob=0.5, pupil_jitter_deg=3.0, crop_jitter=0.0)


def run_temporal_demo(out: Path, *, device: str, frame_config: TrainConfig, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Single-frame then temporal on synthetic sequences, and their comparison; returns the summary part.

    The single-frame run uses ``frame_config`` (the demo's), the temporal run configs/temporal_demo.yaml
    with ``--init-from`` the single-frame run; both select on the same held-out training participant.
    """
    data = out / "data_sequences"
    make_synthetic_sequences(data, train_participants=6, val_participants=2, steps=1, frames_per_step=32, seed=frame_config.seed, noise=SEQUENCE_NOISE)
    ctx = init_distributed(device)
    runs = {}
    single_cfg = replace(frame_config, data=replace(frame_config.data, root=data))
    temporal_cfg = load_config(TrainConfig, resolve_config_path("gaze_estimation", "temporal_demo"), list(overrides))
    temporal_cfg.data.root = data
    for name, cfg in (("single_frame", single_cfg), ("temporal", temporal_cfg)):
        if name == "temporal":
            temporal_cfg.model.init_from = runs["single_frame"] / "best_model.pth"
        runs[name] = prepare_run_dir(run_dir=out / f"run_{name}")
        setup_logging(runs[name])
        train(cfg, ctx=ctx, run_dir=runs[name], argv=["gaze-estimation", "demo", "--out", str(out)])
    report = compare_runs(runs["single_frame"], runs["temporal"], ctx=ctx, out_dir=out / "compare")
    by_pos = report["error_by_position"]["B"]
    return {
        "outputs": {"sequence_data": str(data), "single_frame_run": str(runs["single_frame"]), "temporal_run": str(runs["temporal"]),
                    "compare": str(out / "compare" / "compare.json")},
        "metrics": {
            "sequence_single_frame_error_deg": report["run_a"]["mean_angular_error_deg"],
            "sequence_temporal_error_deg": report["run_b"]["mean_angular_error_deg"],
            "sequence_difference_deg": report["mean_difference_deg"],
            "sequence_difference_ci_low_deg": report["ci_low_deg"],
            "sequence_difference_ci_high_deg": report["ci_high_deg"],
            "sequence_temporal_error_first_frame_deg": by_pos[0]["mean_deg"],
            "sequence_temporal_error_last_frame_deg": by_pos[-1]["mean_deg"],
            # what averaging over the current fixation wins on the single-frame run's own readings
            "sequence_expected_margin_deg": context_margin(
                **readings_from_predictions(out / "compare" / "A" / "predictions.csv", temporal_cfg.data.sequence_length)
            )["margin_deg"],
        },
        "verdict": report["verdict"],
    }


def export_crops(h5_file: Path, out: Path, n: int) -> Path:
    """Write the first ``n`` samples of ``h5_file`` as PNGs into ``out/{face,leye,reye}/`` (a crop folder)."""
    ds = GazeH5Dataset([h5_file])
    for i in range(min(n, len(ds))):
        sample = ds[i]
        for part in ("face", "leye", "reye"):
            (out / part).mkdir(parents=True, exist_ok=True)
            Image.fromarray(sample[part].numpy().transpose(1, 2, 0)).save(out / part / f"{i:04d}.png")
    ds.close()
    return out


def raw_errors(gaze_csv: Path, truth_csv: Path) -> np.ndarray:
    """Angular errors (degrees) of predict-raw's camera-frame gaze against the rendered truth, faces found only."""
    with open(gaze_csv) as f:
        pred = {Path(r["source"]).name: r for r in csv.DictReader(f) if r["face_found"] == "1" and r["face_index"] == "0"}
    with open(truth_csv) as f:
        truth = {r["file"]: r for r in csv.DictReader(f)}
    names = [n for n in truth if n in pred]
    if not names:
        return np.zeros(0)
    p = np.array([[float(pred[n]["pitch"]), float(pred[n]["yaw"])] for n in names])
    t = np.array([[float(truth[n]["pitch"]), float(truth[n]["yaw"])] for n in names])
    return per_sample_errors(p, t)


def run_demo(out: str | Path, device: str = "cpu", config: str = "demo", overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Run the demo into ``out`` and write ``out/summary.json``; prints a summary with the wall time."""
    t0 = time.time()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    cfg = load_config(TrainConfig, resolve_config_path("gaze_estimation", config), list(overrides))
    cfg.data.root = data
    make_synthetic(data, train_participants=4, val_participants=2, samples_per_participant=48, seed=cfg.seed)
    camera = make_camera_images(data / "camera", CAMERA_IMAGES, seed=cfg.seed)
    ctx = init_distributed(device)
    run_dir = prepare_run_dir(run_dir=out / "run")
    setup_logging(run_dir)
    result = train(cfg, ctx=ctx, run_dir=run_dir, argv=["gaze-estimation", "demo", "--out", str(out)])
    best = run_dir / "best_model.pth"
    metrics = evaluate(best, ctx=ctx, out_dir=out / "evaluation")
    val_file = find_h5_files(data, cfg.data.val_split)[0]
    crops = export_crops(val_file, out / "crops", 4)
    pred_h5 = predict(best, [val_file], out / "predictions_h5.csv", device=ctx.device)
    pred_crops = predict(best, [crops], out / "predictions_crops.csv", device=ctx.device)
    # TorchScript: runs offline with torch alone (ONNX needs the [export] extra; the tests check both)
    exported = export_run(run_dir, fmt="torchscript", out=out / "export" / "model.pt")
    raw_cfg = load_config(RawConfig, None, ["landmarks.face_model=synthetic"])
    raw = run_predict_raw(
        best, [camera], out / "predict_raw", config=raw_cfg, calibration=camera / "calibration.json", device=ctx.device, annotate=True
    )
    raw_err = raw_errors(out / "predict_raw" / "gaze.csv", camera / "truth.csv")
    history = result.history
    temporal = run_temporal_demo(out, device=device, frame_config=cfg)
    seconds = round(time.time() - t0, 1)
    summary = {
        "package": "gaze-estimation",
        "version": __version__,
        "seconds": seconds,
        "purpose": purpose_line(cfg.purpose),
        "weights": metrics["weights_used"],
        "protocol": metrics["protocol"]["statement"],
        "outputs": {
            "data": str(data),
            "run_dir": str(run_dir),
            "manifest": str(run_dir / "manifest.json"),
            "best_model": str(best),
            "training_history": str(run_dir / "training_history.csv"),
            "metrics": str(out / "evaluation" / "metrics.json"),
            "per_participant_csv": str(out / "evaluation" / "per_participant.csv"),
            "per_participant_png": str(out / "evaluation" / "per_participant.png"),
            "gaze_examples_png": str(out / "evaluation" / "gaze_examples.png"),
            "predictions_h5": str(pred_h5),
            "predictions_crops": str(pred_crops),
            "torchscript": exported["path"],
            "torchscript_preprocessing": exported["preprocessing"],
            "predict_raw_csv": raw["outputs"]["csv"],
            "predict_raw_annotated": raw["outputs"]["annotated"],
            **temporal["outputs"],
        },
        "temporal_verdict": temporal["verdict"],
        "metrics": {
            "n_samples": metrics["n_samples"],
            "mean_angular_error_deg": metrics["mean_angular_error_deg"],
            "median_angular_error_deg": metrics["median_angular_error_deg"],
            "mean_predictor_error_deg": metrics["mean_predictor_error_deg"],
            "epochs": result.epochs_completed,
            "first_epoch_selection_error_deg": float(history[0].get("val/select_angular_error", np.nan)),
            "torchscript_max_abs_diff": max(c["max_abs_diff"] for c in exported["check"]["checks"]),
            "camera_images": raw["frames"],
            "camera_faces_found": raw["faces_found"],
            **temporal["metrics"],
        },
    }
    if len(raw_err):  # every metric is a number; without a face found there is no error to give
        summary["metrics"]["camera_mean_angular_error_deg"] = float(raw_err.mean())
    write_json(out / "summary.json", summary)
    m = summary["metrics"]
    raw_part = (
        f"; predict-raw found {m['camera_faces_found']}/{m['camera_images']} rendered faces, camera-frame error "
        f"{m['camera_mean_angular_error_deg']:.1f} deg" if "camera_mean_angular_error_deg" in m else
        f"; predict-raw found no face in {m['camera_images']} rendered images"
    )
    print(
        f"gaze-estimation demo ({summary['purpose']}; weights {summary['weights']}): {m['epochs']} epochs on synthetic data; "
        f"validation error {m['mean_angular_error_deg']:.2f} deg mean, {m['median_angular_error_deg']:.2f} deg median over "
        f"{m['n_samples']} samples (mean predictor {m['mean_predictor_error_deg']:.2f} deg){raw_part}. "
        f"Wall time {seconds:.1f} s. Summary: {out / 'summary.json'}"
    )
    print(
        f"temporal (10 Hz synthetic sequences, {purpose_line('toy')}): single-frame {m['sequence_single_frame_error_deg']:.2f} deg, "
        f"temporal {m['sequence_temporal_error_deg']:.2f} deg (expected margin: a causal filter over each fixation on the single-frame "
        f"run's own readings: {m['sequence_expected_margin_deg']:.1f} deg); "
        f"compare: {summary['temporal_verdict']}"
    )
    return summary
