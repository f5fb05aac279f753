"""The whole pipeline at tiny size on synthetic data: make-synthetic -> validate-data -> train -> evaluate
-> predict -> export (TorchScript, which needs no extra package; checked against PyTorch). Toy settings (``configs/demo.yaml``: a tiny
backbone at RANDOM INIT, nothing downloaded), which the summary states.

The synthetic data's achievable r per dimension is known, so the demo also writes ``comparison.csv``:
the held-out test r the model reached (the best epoch was chosen on val), its bootstrap interval, the achievable r and the noise ceiling that the
evaluation estimated from the CSV's sd columns alone (it should match the achievable r).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from perception_shared.config import load_config, resolve_config_path
from perception_shared.distributed import init_distributed
from perception_shared.errors import DataError
from perception_shared.jsonio import write_json

from . import __version__
from .config import RatingConfig
from .evaluate import evaluate_run
from .export import export_run
from .predict import predict_images
from .report import TOY_NOTE
from .synthetic import EASY_DIMENSIONS, make_synthetic
from .train import train
from .validate import validate_data

DEMO_IMAGES = 300
DEMO_SIZE = 64
DEMO_RATERS = 20


def run_demo(
    out: str | Path, device: str = "cpu", config: str = "demo", overrides: list[str] | None = None
) -> dict[str, Any]:
    """Run the demo into ``out`` and return the summary that it also writes to ``out/summary.json``.

    Runs with one torch thread: the demo's network is too small to gain from intra-op threads, and on a
    busy machine their spin-waiting made it several times slower (measured back to back on a shared
    2-core machine: 218 s with 2 threads, 33 s with one).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_demo(Path(out), device, config, overrides or [])
    finally:
        torch.set_num_threads(threads)


def _run_demo(out: Path, device: str, config: str, overrides: list[str]) -> dict[str, Any]:
    start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    syn = make_synthetic(out / "data", n_images=DEMO_IMAGES, size=DEMO_SIZE, n_raters=DEMO_RATERS, seed=0)
    sets = [f"data.root={syn.root}", f"data.n_raters={DEMO_RATERS}", *overrides]
    cfg = load_config(RatingConfig, resolve_config_path("image_rating", config), sets)
    validation = validate_data(cfg.data)
    write_json(out / "validate_data.json", validation.to_dict())
    if not validation.ok:
        raise DataError("the demo's synthetic data fail validate-data: " + "; ".join(validation.problems[:3]))
    ctx = init_distributed(device)
    result = train(cfg, run_dir=out / "run", ctx=ctx)
    metrics = evaluate_run(result.run_dir, split="test", out_dir=out / "evaluation", ctx=ctx)
    sample = syn.root / "predict_list.txt"  # a file list, paths relative to the list's folder
    sample.write_text("".join(f"images/{p.name}\n" for p in sorted(syn.images_dir.iterdir())[:8]))
    predictions = predict_images(result.run_dir, [sample], out_csv=out / "predictions.csv", device=device)
    exported = export_run(result.run_dir, fmt="torchscript", out=out / "export" / "model.pt")

    truth = json.loads(syn.truth_json.read_text())["dimensions"]
    per_dim = metrics["per_dimension"]
    comparison = pd.DataFrame(
        {
            "dimension": list(per_dim),
            "pearson_r": [per_dim[d]["pearson_r"] for d in per_dim],
            "r_ci_low": [per_dim[d]["r_ci_low"] for d in per_dim],
            "r_ci_high": [per_dim[d]["r_ci_high"] for d in per_dim],
            "achievable_r": [truth[d]["achievable_r"] for d in per_dim],
            "noise_ceiling_r_estimated": [per_dim[d].get("noise_ceiling_r") for d in per_dim],
        }
    )
    comparison.to_csv(out / "comparison.csv", index=False, float_format="%.4f")
    easy = comparison[comparison["dimension"].isin(EASY_DIMENSIONS)]
    summary = {
        "package": "image-rating",
        "version": __version__,
        "seconds": round(time.time() - start, 1),
        "settings": TOY_NOTE if cfg.toy else "research config",
        "weights": metrics["weights"],
        "split": metrics["split_note"],  # which split the numbers below are on (metrics holds numbers only)
        "outputs": {
            "data": str(syn.root),
            "validate_data": str(out / "validate_data.json"),
            "run_dir": str(result.run_dir),
            "best_model": str(result.outputs["best_model"]),
            "manifest": str(result.run_dir / "manifest.json"),
            "export": exported["model"],
            "per_dimension_performance": str(result.outputs["per_dimension_csv"]),
            "evaluation": str(out / "evaluation" / "metrics.json"),
            "predictions": str(out / "predictions.csv"),
            "comparison": str(out / "comparison.csv"),
        },
        "metrics": {
            "n_test_images": metrics["n_samples"],
            "epochs": result.epochs_completed,
            "best_epoch": result.best_epoch,
            "test_mean_pearson_r": metrics["mean_over_dimensions"]["pearson_r"],
            "test_mean_mae": metrics["mean_over_dimensions"]["mae"],
            "test_easy_dims_mean_pearson_r": float(easy["pearson_r"].mean()),
            "test_brightness_pearson_r": per_dim["Brightness"]["pearson_r"],
            "achievable_brightness_r": truth["Brightness"]["achievable_r"],
            "n_predicted_images": len(predictions),
            "validate_data_ms_per_image": validation.to_dict()["ms_per_image"],
            "export_max_abs_diff": max(c["max_abs_diff"] for c in exported["verification"]["checks"]),
        },
    }
    write_json(out / "summary.json", summary)
    return summary


def format_summary(summary: dict[str, Any], comparison_csv: str | Path) -> str:
    m = summary["metrics"]
    lines = [
        f"image-rating demo: wall time {summary['seconds']:.1f} s",
        f"{summary['settings']}: {m['epochs']} epochs on synthetic data; backbone {summary['weights']}",
        f"{summary['split']}",
        f"mean r over 14 dimensions {m['test_mean_pearson_r']:.3f}, "
        f"easy dimensions {m['test_easy_dims_mean_pearson_r']:.3f}, Brightness {m['test_brightness_pearson_r']:.3f} "
        f"(achievable {m['achievable_brightness_r']:.3f})",
        "per dimension (r [95% CI] vs achievable):",
    ]
    for row in pd.read_csv(comparison_csv).itertuples():
        lines.append(
            f"  {row.dimension:16s} {row.pearson_r:6.3f} [{row.r_ci_low:6.3f}, {row.r_ci_high:6.3f}]  {row.achievable_r:.3f}"
        )
    lines.append(
        f"TorchScript export: {summary['outputs']['export']} (max |export - PyTorch| {m['export_max_abs_diff']:.2g} rating units)"
    )
    lines.append(f"summary: {Path(summary['outputs']['comparison']).parent / 'summary.json'}")
    return "\n".join(lines)
