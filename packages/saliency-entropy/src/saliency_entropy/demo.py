"""The whole pipeline at tiny size: synthetic data -> baseline and entropy-regularized training ->
evaluation in and out of domain -> go/no-go report -> predict -> export (TorchScript), under one folder with
``summary.json``.

TOY settings (``configs/demo.yaml``): a randomly initialized ResNet-18, 96x128 images, 6 epochs, one
seed. Its numbers check that the pipeline learns (the synthetic data's ground truth gives the best
achievable information gain); they do not answer the research question, and the summary and report
say so.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from perception_shared.distributed import init_distributed
from perception_shared.jsonio import write_json
from perception_shared.logging import get_logger

from . import __version__
from .export import export_run
from .predict import predict_images
from .study import run_dir_of, run_study
from .synthetic import SyntheticSpec, make_synthetic

log = get_logger("saliency_entropy.demo")
TOY = "TOY settings (configs/demo.yaml): RANDOM INIT ResNet-18, 96x128 images, 6 epochs, 1 seed, synthetic data"


def run_demo(
    out: str | Path,
    device: str = "cpu",
    *,
    config: str | Path = "demo",
    mit_images: int = 40,
    overrides: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Run the demo into ``out``, print its wall time, and return the summary written to ``out/summary.json``."""
    start = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    make_synthetic(data, SyntheticSpec(seed=0, mit_images=mit_images))
    ctx = init_distributed(device)
    report = run_study(
        out / "runs",
        [0],
        ctx,
        configs={"baseline": config, "entropy_reg": config},
        arm_overrides={"baseline": ["entropy.weight=0.0"]},
        overrides=overrides,
        data=str(data / "MIT1003"),
        cat2000=str(data / "CAT2000"),
    )
    runs = {arm: run_dir_of(out / "runs", 0, arm) for arm in ("baseline", "entropy_reg")}
    predictions = predict_images(runs["entropy_reg"], [data / "CAT2000" / "Stimuli" / "Action"], out / "predictions", device=device)
    # TorchScript needs nothing beyond torch, so the demo runs on a fresh install; ONNX needs the export extra
    exported = export_run(runs["entropy_reg"], fmt="torchscript", out=out / "export" / "model.pt")
    seconds = time.time() - start
    b, e = ({r["role"]: r for r in report["runs"]}[role] for role in ("baseline", "entropy_reg"))
    summary = {
        "package": "saliency-entropy",
        "version": __version__,
        "settings": TOY,
        "seconds": round(seconds, 2),
        "outputs": {
            "data": str(data),
            "baseline_run": str(runs["baseline"]),
            "entropy_run": str(runs["entropy_reg"]),
            "report_md": str(out / "runs" / "report" / "report.md"),
            "report_json": str(out / "runs" / "report" / "report.json"),
            "predictions": str(out / "predictions"),
            "export": exported["model"],
        },
        "metrics": {
            "baseline_mit_val_ig_bits": b["datasets"]["mit1003_val"]["ig"],
            "entropy_mit_val_ig_bits": e["datasets"]["mit1003_val"]["ig"],
            "mit_val_gt_ig_bits": b["datasets"]["mit1003_val"].get("gt_ig", float("nan")),
            "baseline_cat2000_ig_bits": b["datasets"]["cat2000"]["ig"],
            "entropy_cat2000_ig_bits": e["datasets"]["cat2000"]["ig"],
            "baseline_bias_entropy_nats": b["bias_map"]["entropy_nats"],
            "entropy_bias_entropy_nats": e["bias_map"]["entropy_nats"],
            "entropy_dose": (e.get("entropy_dose") or {}).get("dose"),
            "predicted_images": len(predictions),
            "export_max_abs_diff": max(c["max_abs_diff"] for c in exported["check"]["checks"]),
        },
        "verdict": report["verdict"],
        "criteria": {c["name"]: c["decision"] for c in report["criteria"]},
        "backbone_pretrained": False,
    }
    write_json(out / "summary.json", summary)
    m = summary["metrics"]
    print(
        f"saliency-entropy demo: {seconds:.0f} s wall time; {TOY}. "
        f"MIT val IG {m['baseline_mit_val_ig_bits']:.3f} -> {m['entropy_mit_val_ig_bits']:.3f} bits/fix "
        f"(ground truth {m['mit_val_gt_ig_bits']:.3f}); CAT2000 IG {m['baseline_cat2000_ig_bits']:.3f} -> "
        f"{m['entropy_cat2000_ig_bits']:.3f}; bias entropy {m['baseline_bias_entropy_nats']:.4f} -> "
        f"{m['entropy_bias_entropy_nats']:.4f} nats; verdict on the toy run {report['verdict']}; "
        f"report {summary['outputs']['report_md']}"
    )
    return summary
