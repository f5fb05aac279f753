"""The whole pipeline at tiny size on synthetic data: make-synthetic -> train -> evaluate -> predict."""

from __future__ import annotations

import time
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
from .predict import predict
from .synthetic import make_synthetic
from .train import train


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


def run_demo(out: str | Path, device: str = "cpu", config: str = "demo") -> dict[str, Any]:
    """Run the demo into ``out`` and write ``out/summary.json``; returns the summary."""
    t0 = time.time()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    cfg = load_config(TrainConfig, resolve_config_path("gaze_estimation", config))
    cfg.data.root = data
    make_synthetic(data, train_participants=4, val_participants=2, samples_per_participant=48, seed=cfg.seed)
    ctx = init_distributed(device)
    run_dir = prepare_run_dir(run_dir=out / "run")
    setup_logging(run_dir)
    result = train(cfg, ctx=ctx, run_dir=run_dir)
    metrics = evaluate(run_dir / "best_model.pth", ctx=ctx, out_dir=out / "evaluation")
    val_file = find_h5_files(data, cfg.data.val_split)[0]
    crops = export_crops(val_file, out / "crops", 4)
    pred_h5 = predict(run_dir / "best_model.pth", val_file, out / "predictions_h5.csv", device=ctx.device)
    pred_crops = predict(run_dir / "best_model.pth", crops, out / "predictions_crops.csv", device=ctx.device)
    history = result.history
    summary = {
        "package": "gaze-estimation",
        "version": __version__,
        "seconds": round(time.time() - t0, 1),
        "outputs": {
            "data": str(data),
            "run_dir": str(run_dir),
            "best_model": str(run_dir / "best_model.pth"),
            "training_history": str(run_dir / "training_history.csv"),
            "metrics": str(out / "evaluation" / "metrics.json"),
            "per_participant_csv": str(out / "evaluation" / "per_participant.csv"),
            "per_participant_png": str(out / "evaluation" / "per_participant.png"),
            "gaze_examples_png": str(out / "evaluation" / "gaze_examples.png"),
            "predictions_h5": str(pred_h5),
            "predictions_crops": str(pred_crops),
        },
        "metrics": {
            "n_samples": metrics["n_samples"],
            "mean_angular_error_deg": metrics["mean_angular_error_deg"],
            "median_angular_error_deg": metrics["median_angular_error_deg"],
            "mean_predictor_error_deg": metrics["mean_predictor_error_deg"],
            "epochs": result.epochs_completed,
            "first_epoch_val_error_deg": float(history[0].get("val/angular_error", np.nan)),
        },
    }
    write_json(out / "summary.json", summary)
    m = summary["metrics"]
    print(
        f"gaze-estimation demo: {m['epochs']} epochs on synthetic data in {summary['seconds']} s; "
        f"validation angular error {m['mean_angular_error_deg']:.2f} deg mean, {m['median_angular_error_deg']:.2f} deg median "
        f"over {m['n_samples']} samples (mean predictor {m['mean_predictor_error_deg']:.2f} deg). Summary: {out / 'summary.json'}"
    )
    return summary
