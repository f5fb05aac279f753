"""Train and evaluate SimVP with several losses under the same data, seed and budget, and tabulate them."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perception_shared.checkpoint import CheckpointManager
from perception_shared.distributed import DistContext, barrier
from perception_shared.errors import ConfigError
from perception_shared.jsonio import write_json
from perception_shared.logging import get_logger, setup_logging
from perception_shared.preemption import MARKER, Preempted
from perception_shared.runs import check_writable_dir, prepare_run_dir

from .config import LossConfig, TrainConfig
from .evaluate import evaluate_run, load_trained_model
from .losses import LOSSES
from .report import comparison_rows, plot_per_horizon, plot_prediction_grid, write_comparison
from .train import load_split, train

log = get_logger("sparse_video_loss.compare")


def parse_losses(spec: str | Sequence[str]) -> list[str]:
    """``"all"`` or a comma-separated list of loss names -> names in the given order, each checked."""
    names = list(LOSSES) if spec == "all" else [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in LOSSES]
    if unknown or not names:
        raise ConfigError(f"--losses: unknown loss(es) {', '.join(unknown) or '(none given)'}; valid: all, or a comma list of {', '.join(LOSSES)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"--losses: a loss is listed twice in {','.join(names)}")
    return names


def compare(
    cfg: TrainConfig,
    losses: Sequence[str],
    out_dir: str | Path,
    ctx: DistContext,
    *,
    skip_bad: bool = False,
    n_examples: int = 2,
) -> dict[str, Any]:
    """Train ``cfg`` once per loss (the loss's default settings; everything else identical), evaluate each
    best checkpoint on the test split, and write the comparison to ``out_dir``.

    Each loss runs in ``out_dir/runs/<loss>/`` (checkpoints, logs, ``eval/``). A run directory that already
    holds a checkpoint is resumed, so an interrupted comparison continues where it stopped and a finished
    loss is not trained again. Writes ``comparison.md``, ``comparison.csv``, ``comparison.json``,
    ``per_horizon.png`` and ``prediction_grid.png``. Returns ``{"results": {loss: metrics}, "outputs": {...}}``.
    """
    out = Path(out_dir)
    if ctx.is_main:
        check_writable_dir(out)
        (out / MARKER).unlink(missing_ok=True)
    barrier()
    results: dict[str, dict[str, Any]] = {}
    for name in losses:
        run_dir = prepare_run_dir(run_dir=out / "runs" / name)
        setup_logging(run_dir)
        run_cfg = dataclasses.replace(cfg, loss=LossConfig(name=name))
        resume = bool(CheckpointManager(run_dir, enabled=False).candidates())
        log.info("compare: loss %s (%d of %d)%s", name, len(results) + 1, len(losses), ", resuming" if resume else "")
        start = time.time()
        try:
            train(run_cfg, run_dir=run_dir, ctx=ctx, resume=resume, skip_bad=skip_bad)
        except Preempted:
            # The SLURM wrapper looks for the marker in the directory it passed (--out), not in runs/<loss>/.
            if ctx.is_main:
                (out / MARKER).write_text(f"stopped while training loss {name}; run compare again with the same --out\n")
            raise
        seconds = time.time() - start
        results[name] = evaluate_run(run_dir / "best_model.pth", run_dir / "eval", ctx, skip_bad=skip_bad)
        results[name]["train_seconds"] = seconds
    setup_logging(out, filename="compare.log")
    outputs: dict[str, str] = {}
    if ctx.is_main:
        rows = comparison_rows(results)
        budget = f"{cfg.loop.epochs} epochs, batch {cfg.data.batch_size}, seed {cfg.seed}, SimVP-{cfg.model.model_type}"
        md, csv_path = write_comparison(rows, out / "comparison.md", out / "comparison.csv", title=f"Loss comparison ({budget})")
        write_json(out / "comparison.json", {"config": dataclasses.asdict(cfg), "results": results})
        first = next(iter(results.values()))
        horizon_png = plot_per_horizon(results, out / "per_horizon.png", baselines=first["baselines"])
        grid_png = _prediction_grid(cfg, losses, out, ctx.device, n_examples)
        outputs = {"table_md": str(md), "table_csv": str(csv_path), "json": str(out / "comparison.json"),
                   "per_horizon_png": str(horizon_png), "prediction_grid_png": str(grid_png)}
        log.info("comparison written to %s:\n%s", out, (out / "comparison.md").read_text())
    barrier()
    return {"results": results, "outputs": outputs}


@torch.no_grad()
def _prediction_grid(cfg: TrainConfig, losses: Sequence[str], out: Path, device: torch.device, n_examples: int) -> Path:
    """The first ``n_examples`` test sequences: true future frames, then each loss's predicted probabilities."""
    test = load_split(cfg, "test")
    n = min(n_examples, len(test))
    samples = [test[i] for i in range(n)]
    inputs = torch.stack([s["inputs"] for s in samples])
    panels = {"true": torch.stack([s["targets"][:, 0] for s in samples]).numpy()}
    for name in losses:
        model, _, _ = load_trained_model(out / "runs" / name / "best_model.pth", device)
        panels[name] = torch.sigmoid(model(inputs.to(device))[:, :, 0]).cpu().numpy()
    last_inputs = np.stack([s["inputs"][-1, 0].numpy() for s in samples])
    return plot_prediction_grid(panels, out / "prediction_grid.png", inputs=last_inputs)
