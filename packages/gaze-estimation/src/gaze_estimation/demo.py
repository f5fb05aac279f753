"""The whole pipeline at toy size on synthetic data, on CPU, offline (RANDOM INIT, configs/demo.yaml):

make-synthetic -> train (model selection on a held-out training participant) -> evaluate (on the
validation participants) -> predict (HDF5 and crop folders) -> export (TorchScript, checked) -> predict-raw on
rendered camera images with their true gaze (CSV, annotated PNGs, screen points from a calibration).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
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
from .config import TrainConfig
from .data import GazeH5Dataset, find_h5_files
from .evaluate import evaluate
from .export import export_run
from .metrics import per_sample_errors
from .predict import predict
from .raw import RawConfig, run_predict_raw
from .synthetic import make_camera_images, make_synthetic
from .train import purpose_line, train

CAMERA_IMAGES = 6


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
        pred = {Path(r["source"]).name: r for r in csv.DictReader(f) if r["face_found"] == "1"}
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
        },
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
    return summary
