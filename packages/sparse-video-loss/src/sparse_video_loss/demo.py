"""The whole pipeline at toy size: synthetic data -> train -> evaluate -> loss comparison, with a summary."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perception_shared.config import load_config, resolve_config_path
from perception_shared.distributed import barrier, init_distributed
from perception_shared.jsonio import write_json
from perception_shared.logging import setup_logging
from perception_shared.runs import check_writable_dir, prepare_run_dir

from . import __version__
from .compare import compare
from .config import PACKAGE, TrainConfig
from .evaluate import evaluate_run
from .synthetic import make_synthetic
from .train import train

DEMO_LOSSES = ("mse", "bce", "focal", "dice", "weighted_mse", "composite")
DEMO_SIZES = {"n_train": 192, "n_val": 48, "n_test": 48}


def run_demo(
    out: str | Path, device: str = "cpu", losses: Sequence[str] = DEMO_LOSSES, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """Run the demo into ``out`` and return (and write as ``out/summary.json``) its summary.

    ``overrides`` are ``key=value`` changes to ``configs/demo.yaml`` (as ``--set``).
    """
    start = time.time()
    out = Path(out)
    ctx = init_distributed(device)
    if ctx.is_main:  # under torchrun, one process writes the data and the others wait for it
        check_writable_dir(out)
        make_synthetic(out / "data", seed=0, **DEMO_SIZES)
    barrier()
    cfg = load_config(TrainConfig, resolve_config_path(PACKAGE, "demo"), [f"data.root={out / 'data'}", *overrides])
    # The trained run sits where compare looks for this loss, so compare reuses it instead of training it again.
    run_dir = prepare_run_dir(run_dir=out / "compare" / "runs" / cfg.loss.name)
    setup_logging(run_dir)
    train(cfg, run_dir=run_dir, ctx=ctx)
    metrics = evaluate_run(run_dir / "best_model.pth", out / "eval", ctx)
    comparison = compare(cfg, list(losses), out / "compare", ctx)
    results = comparison["results"]
    summary = {
        "package": "sparse-video-loss",
        "version": __version__,
        "seconds": round(time.time() - start, 1),
        "outputs": {
            "data": str(out / "data"),
            "run_dir": str(run_dir),
            "metrics_json": str(out / "eval" / "metrics.json"),
            "per_horizon_png": str(out / "eval" / "per_horizon.png"),
            "predictions_png": str(out / "eval" / "predictions.png"),
            **comparison["outputs"],
        },
        "metrics": {
            "n_samples": metrics["n_samples"],
            f"{cfg.loss.name}_f1@0.5": metrics["overall"]["f1@0.5"],
            f"{cfg.loss.name}_f1@best": metrics["overall"]["f1@best"],
            f"{cfg.loss.name}_ap": metrics["overall"]["ap"],
            f"{cfg.loss.name}_loc_error_px": metrics["overall"]["loc_error_px"],
            "last_position_f1": metrics["baselines"]["last_position"]["overall"]["f1@0.5"],
            "last_position_loc_error_px": metrics["baselines"]["last_position"]["overall"]["loc_error_px"],
            **{f"compare_{name}_f1@best": r["overall"]["f1@best"] for name, r in results.items()},
        },
    }
    if ctx.is_main:
        write_json(out / "summary.json", summary)
        print(_human_summary(summary, results))
    return summary


def _human_summary(summary: dict[str, Any], results: dict[str, Any]) -> str:
    lines = [f"sparse-video-loss {summary['version']} demo finished in {summary['seconds']:.0f} s (tiny SimVP, toy budget)"]
    lines.append(f"{'loss':<14}{'F1@0.5':>8}{'F1@best':>9}{'AP':>8}{'loc err px':>12}")
    for name, r in results.items():
        o = r["overall"]
        lines.append(f"{name:<14}{_f(o['f1@0.5']):>8}{_f(o['f1@best']):>9}{_f(o['ap']):>8}{_f(o['loc_error_px'], 2):>12}")
    first = next(iter(results.values()))
    last = first["baselines"]["last_position"]["overall"]
    lines.append(f"{'last position':<14}{_f(last['f1@0.5']):>8}{'':>9}{_f(last['ap']):>8}{_f(last['loc_error_px'], 2):>12}")
    lines.append(f"table: {summary['outputs']['table_md']}")
    return "\n".join(lines)


def _f(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"
