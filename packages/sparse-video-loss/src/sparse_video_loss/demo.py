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
from .compare import compare, run_dir_for
from .config import PACKAGE, TrainConfig
from .evaluate import evaluate_run
from .synthetic import make_synthetic
from .train import toy_note, train

DEMO_LOSSES = ("mse", "bce", "focal", "dice", "weighted_mse", "composite")
DEMO_SIZES = {"n_train": 192, "n_val": 48, "n_test": 48}


def run_demo(
    out: str | Path,
    device: str = "cpu",
    losses: Sequence[str] = DEMO_LOSSES,
    overrides: Sequence[str] = (),
    config: str | Path = "demo",
) -> dict[str, Any]:
    """Run the demo into ``out`` and return (and write as ``out/summary.json``) its summary.

    ``config`` is a config name or path (``demo`` by default) and ``overrides`` its ``key=value``
    changes (as ``--set``). Prints its own wall time.
    """
    start = time.time()
    out = Path(out)
    ctx = init_distributed(device)
    if ctx.is_main:  # under torchrun, one process writes the data and the others wait for it
        check_writable_dir(out)
        make_synthetic(out / "data", seed=0, **DEMO_SIZES)
    barrier()
    cfg = load_config(TrainConfig, resolve_config_path(PACKAGE, config), [f"data.root={out / 'data'}", "data.format=native", *overrides])
    # The trained run sits where compare looks for this loss and seed, so compare reuses it instead of training it again.
    run_dir = prepare_run_dir(run_dir=run_dir_for(out / "compare", cfg.loss.name, cfg.seed))
    setup_logging(run_dir)
    train(cfg, run_dir=run_dir, ctx=ctx)
    metrics = evaluate_run(run_dir / "best_model.pth", out / "eval", ctx)
    comparison = compare(cfg, list(losses), out / "compare", ctx, seeds=1)
    results = {name: per_seed[cfg.seed] for name, per_seed in comparison["results"].items()}
    o = metrics["overall"]
    name = cfg.loss.name
    summary = {
        "package": "sparse-video-loss",
        "version": __version__,
        "seconds": round(time.time() - start, 1),
        "toy": cfg.toy,
        "note": toy_note(cfg) or "research settings",
        "weights": metrics["weights"],
        "random_init": metrics["random_init"],
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
            f"{name}_loc_error_px": o["loc_error_px"],
            f"{name}_hit@1px": o["hit@1px"],
            f"{name}_hit@2px": o["hit@2px"],
            f"{name}_f1@0.5": o["f1@0.5"],
            f"{name}_f1@best": o["f1@best"],
            f"{name}_ap": o["ap"],
            f"{name}_collapsed_fraction": o["collapsed_fraction"],
            "last_position_f1": metrics["baselines"]["last_position"]["overall"]["f1@0.5"],
            "last_position_loc_error_px": metrics["baselines"]["last_position"]["overall"]["loc_error_px"],
            **{f"compare_{n}_f1@best": r["overall"]["f1@best"] for n, r in results.items()},
            **{f"compare_{n}_loc_error_px": r["overall"]["loc_error_px"] for n, r in results.items()},
        },
    }
    if ctx.is_main:
        write_json(out / "summary.json", summary)
        print(_human_summary(summary, results))
    return summary


def _human_summary(summary: dict[str, Any], results: dict[str, Any]) -> str:
    weights = "RANDOM INIT" if summary["random_init"] else summary["weights"].get("identifier")
    lines = [
        f"sparse-video-loss {summary['version']} demo: wall time {summary['seconds']:.0f} s",
        f"{summary['note']}; SimVP weights: {weights}",
        f"{'loss':<14}{'loc err px':>11}{'hit@1px':>9}{'hit@2px':>9}{'F1@best':>9}{'F1@0.5':>8}{'AP':>7}{'collapsed':>10}",
    ]
    for name, r in results.items():
        o = r["overall"]
        lines.append(
            f"{name:<14}{_f(o['loc_error_px'], 2):>11}{_f(o['hit@1px']):>9}{_f(o['hit@2px']):>9}{_f(o['f1@best']):>9}"
            f"{_f(o['f1@0.5']):>8}{_f(o['ap']):>7}{_f(o['collapsed_fraction'], 2):>10}"
        )
    first = next(iter(results.values()))
    last = first["baselines"]["last_position"]["overall"]
    lines.append(f"{'last position':<14}{_f(last['loc_error_px'], 2):>11}{_f(last['hit@1px']):>9}{_f(last['hit@2px']):>9}"
                 f"{'':>9}{_f(last['f1@0.5']):>8}{_f(last['ap']):>7}")
    lines.append(f"table: {summary['outputs']['table_md']}")
    return "\n".join(lines)


def _f(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"
