"""Train and evaluate SimVP with several losses over several seeds, same data and budget; mean +- sd tables.

``compare`` trains every loss of ``compare.losses`` (each with its settings from ``compare.loss_kwargs``)
once per seed (``seed``, ``seed + 1``, ... ``compare.seeds`` of them), evaluates each best checkpoint on
the test split with the threshold chosen on val, and aggregates over seeds: mean and sample standard
deviation (``ddof=1``; undefined with one seed) of every metric, overall and per horizon.

Localization (error, hit@1px, hit@2px) leads every table and figure: F1 at a fixed threshold is unstable
for sparsity-penalized losses (see ``metrics``), so it follows, with F1 at the val-chosen threshold first.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perception_shared.checkpoint import CheckpointManager
from perception_shared.distributed import DistContext, barrier
from perception_shared.errors import ConfigError
from perception_shared.figures import run_status, subtitle
from perception_shared.jsonio import json_ready, write_json
from perception_shared.logging import get_logger, setup_logging
from perception_shared.manifest import check_same_data, load_manifest
from perception_shared.plotting import write_history_csv as write_rows_csv
from perception_shared.preemption import MARKER, Preempted
from perception_shared.runs import check_writable_dir, prepare_run_dir

from .config import LossConfig, TrainConfig
from .evaluate import evaluate_run, load_trained_model
from .losses import LOSSES
from .metrics import HEADLINE_KEYS, REPORT_KEYS
from .report import comparison_rows, plot_per_horizon, plot_prediction_grid, write_comparison
from .train import build_loss, load_split, toy_note, train

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


def loss_config(cfg: TrainConfig, name: str) -> LossConfig:
    """The loss ``name`` with its settings from ``compare.loss_kwargs`` (defaults for the others)."""
    return LossConfig(name=name, kwargs=dict(cfg.compare.loss_kwargs.get(name, {})))


def run_dir_for(out_dir: str | Path, loss: str, seed: int) -> Path:
    """Where ``compare`` keeps the run of one loss and seed."""
    return Path(out_dir) / "runs" / loss / f"seed_{seed}"


def seed_list(cfg: TrainConfig, seeds: int | None = None) -> list[int]:
    """``seeds`` (or ``compare.seeds``) consecutive seeds starting at the config's seed."""
    k = cfg.compare.seeds if seeds is None else seeds
    if k < 1:
        raise ConfigError(f"--seeds must be at least 1, got {k}")
    return [cfg.seed + i for i in range(k)]


def mean_sd(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1) of the finite values; None where undefined."""
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return None, None
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else None


def aggregate(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Mean and sd over seeds of the overall and per-horizon metrics of one loss."""
    runs = list(per_seed.values())
    overall = {}
    for key in (*REPORT_KEYS, "threshold_best"):
        values = [r.get(key) if key == "threshold_best" else r["overall"].get(key) for r in runs]
        overall[key], overall[f"{key}_sd"] = mean_sd(values)
    horizons = []
    for h, first in enumerate(runs[0]["per_horizon"]):
        row: dict[str, Any] = {"horizon": first["horizon"], "n_frames": first["n_frames"]}
        for key in REPORT_KEYS:
            row[key], row[f"{key}_sd"] = mean_sd([r["per_horizon"][h].get(key) for r in runs])
        horizons.append(row)
    return {"n_seeds": len(runs), "seeds": list(per_seed), "overall": overall, "per_horizon": horizons}


def compare(
    cfg: TrainConfig,
    losses: Sequence[str] | None,
    out_dir: str | Path,
    ctx: DistContext,
    *,
    seeds: int | None = None,
    skip_bad: bool = False,
    allow_data_mismatch: bool = False,
    n_examples: int = 2,
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Train ``cfg`` once per loss and seed (everything else identical), evaluate each best checkpoint on
    the test split, and write the comparison to ``out_dir``.

    ``losses`` defaults to ``compare.losses``, ``seeds`` to ``compare.seeds``. Each run lives in
    ``out_dir/runs/<loss>/seed_<seed>/`` (checkpoints, logs, manifest, ``eval/``); a run directory that
    already holds a checkpoint is resumed, so an interrupted comparison continues where it stopped, and
    a finished run (``final_model.pth``) is not trained again (and its ``eval/metrics.json`` is reused). The runs' manifests must record the same data (else an error
    naming the difference, unless ``allow_data_mismatch``). Writes ``comparison.md``, ``comparison.csv``
    (overall mean and sd per loss, then the baselines), ``per_horizon.csv`` (mean and sd per loss and
    horizon), ``per_seed.csv``, ``comparison.json``, ``per_horizon.png`` (mean +- sd) and
    ``prediction_grid.png`` (first seed). Returns ``{"results", "aggregate", "outputs"}``.
    """
    names = parse_losses(losses if losses is not None else cfg.compare.losses)
    unknown = sorted(set(cfg.compare.loss_kwargs) - set(LOSSES))
    if unknown:
        raise ConfigError(f"compare.loss_kwargs names unknown loss(es) {', '.join(unknown)}; valid: {', '.join(LOSSES)}")
    for name in names:  # a bad keyword fails now, not after hours of training the losses before it
        build_loss(loss_config(cfg, name))
    seed_values = seed_list(cfg, seeds)
    out = Path(out_dir)
    if ctx.is_main:
        check_writable_dir(out)
        (out / MARKER).unlink(missing_ok=True)
    barrier()
    results: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in names}
    total, done = len(names) * len(seed_values), 0
    for name in names:
        for seed in seed_values:
            run_dir = prepare_run_dir(run_dir=run_dir_for(out, name, seed))
            setup_logging(run_dir)
            run_cfg = dataclasses.replace(cfg, seed=seed, loss=loss_config(cfg, name))
            finished = (run_dir / "final_model.pth").is_file()
            resume = bool(CheckpointManager(run_dir, enabled=False).candidates())
            done += 1
            state = "finished, not trained again" if finished else "resuming" if resume else "training"
            log.info("compare: loss %s, seed %d (%d of %d): %s", name, seed, done, total, state)
            start = time.time()
            try:
                # A finished run keeps its manifest as it was trained (resuming would record today's files).
                if not finished:
                    train(run_cfg, run_dir=run_dir, ctx=ctx, resume=resume, skip_bad=skip_bad, argv=argv)
            except Preempted:
                # The SLURM wrapper looks for the marker in the directory it passed (--out), not in runs/.
                if ctx.is_main:
                    (out / MARKER).write_text(f"stopped while training loss {name}, seed {seed}; run compare again with the same --out\n")
                raise
            seconds = time.time() - start
            saved = run_dir / "eval" / "metrics.json"
            previous = json.loads(saved.read_text()) if finished and saved.is_file() else None
            if (previous is not None and saved.stat().st_mtime >= (run_dir / "best_model.pth").stat().st_mtime
                    and previous.get("data") == str(run_cfg.data.root) and not previous.get("data_mismatch_allowed")):
                metrics = previous  # evaluated on this data after its last training: reused as it is
            else:
                metrics = evaluate_run(run_dir / "best_model.pth", run_dir / "eval", ctx, skip_bad=skip_bad,
                                       allow_data_mismatch=allow_data_mismatch, figures=False)
                metrics["train_seconds"] = seconds
                if ctx.is_main:
                    write_json(saved, metrics)
            results[name][seed] = metrics
    setup_logging(out, filename="compare.log")
    manifests = {str(run_dir_for(out, n, s)): load_manifest(run_dir_for(out, n, s), missing_ok=True) for n in names for s in seed_values}
    mismatch = check_same_data(manifests, allow=allow_data_mismatch)
    for problem in mismatch:
        log.warning("data mismatch allowed by --allow-data-mismatch: %s", problem)
    summary = {name: aggregate(per_seed) for name, per_seed in results.items()}
    first = results[names[0]][seed_values[0]]
    outputs: dict[str, str] = {}
    if ctx.is_main:
        outputs = _write_outputs(cfg, names, seed_values, results, summary, first, out, ctx.device, n_examples, mismatch)
        log.info("comparison written to %s:\n%s", out, (out / "comparison.md").read_text())
    barrier()
    return {"results": results, "aggregate": summary, "outputs": outputs}


def _write_outputs(
    cfg: TrainConfig,
    names: list[str],
    seed_values: list[int],
    results: dict[str, dict[int, dict[str, Any]]],
    summary: dict[str, dict[str, Any]],
    first: dict[str, Any],
    out: Path,
    device: torch.device,
    n_examples: int,
    mismatch: list[str],
) -> dict[str, str]:
    budget = (
        f"{cfg.loop.epochs} epochs, batch {cfg.data.batch_size}, Adam lr {cfg.optim.lr:g}, SimVP-{cfg.model.model_type} "
        f"hid_S {cfg.model.hid_S} hid_T {cfg.model.hid_T} N_S {cfg.model.N_S} N_T {cfg.model.N_T}, "
        f"{len(seed_values)} seed(s) {', '.join(map(str, seed_values))}"
    )
    weights = first.get("weights", {})
    notes = [
        f"Weights: {weights.get('identifier')} "
        + ("RANDOM INIT (SimVP is trained from scratch in the study)" if first.get("random_init") else f"from {weights.get('kind')} {weights.get('path')} (sha256 {weights.get('sha256')})"),
        f"Data: {first['data']} ({first['data_format']} format), {first['n_samples']} test sequences, {first['n_frames']} frames with a point.",
        "Headline: localization error and hit rate within 1 and 2 pixels (argmax of the predicted map). F1 at a fixed "
        "threshold is unstable for sparsity-penalized losses (recall at 0.5 can fall from 0.21 to 0.02 in one epoch "
        "while localization improves), so F1 at the threshold chosen on val comes first among the F1 columns.",
        "Cells: mean +- sample sd over seeds (sd blank with one seed); baselines are deterministic.",
    ]
    if cfg.toy:
        notes.insert(0, toy_note(cfg))
    if mismatch:
        notes.append("DATA MISMATCH ALLOWED (--allow-data-mismatch): " + "; ".join(mismatch))
    rows = comparison_rows(summary, first["baselines"])
    md, csv_path = write_comparison(rows, out / "comparison.md", out / "comparison.csv", title=f"Loss comparison ({budget})", notes=notes)
    horizon_rows = [{"predictor": n, "n_seeds": summary[n]["n_seeds"], **r} for n in names for r in summary[n]["per_horizon"]]
    for b, m in first["baselines"].items():
        horizon_rows += [{"predictor": b, "n_seeds": None, **r} for r in m["per_horizon"]]
    write_rows_csv(horizon_rows, out / "per_horizon.csv")
    seed_rows = [{"loss": n, "seed": s, **{k: results[n][s]["overall"].get(k) for k in REPORT_KEYS},
                  "threshold_best": results[n][s]["threshold_best"], "train_seconds": results[n][s]["train_seconds"]}
                 for n in names for s in seed_values]
    write_rows_csv(seed_rows, out / "per_seed.csv")
    write_json(out / "comparison.json", json_ready({
        "config": dataclasses.asdict(cfg),
        "toy": cfg.toy,
        "seeds": seed_values,
        "weights": weights,
        "random_init": first.get("random_init"),
        "headline": list(HEADLINE_KEYS),
        "aggregate": summary,
        "baselines": first["baselines"],
        "runs": {n: {str(s): results[n][s] for s in seed_values} for n in names},
        "data_mismatch_allowed": mismatch,
    }))
    status = run_status(toy=cfg.toy, random_init=bool(first.get("random_init")))
    sub = subtitle(out.name, status, f"test split (n={first['n_samples']} sequences); mean \u00b1 sd over {len(seed_values)} seed(s)")
    horizon_png = plot_per_horizon(
        {n: summary[n] for n in names}, out / "per_horizon.png", baselines=first["baselines"],
        title="Test metrics of each loss against the prediction horizon", sub=sub,
    )
    grid_sub = subtitle(out.name, status, f"test split, first sequences; the best checkpoint of seed {seed_values[0]} per loss")
    grid_png = _prediction_grid(cfg, names, seed_values[0], out, device, n_examples, grid_sub)
    return {"table_md": str(md), "table_csv": str(csv_path), "per_horizon_csv": str(out / "per_horizon.csv"),
            "per_seed_csv": str(out / "per_seed.csv"), "json": str(out / "comparison.json"),
            "per_horizon_png": str(horizon_png), "prediction_grid_png": str(grid_png)}


@torch.no_grad()
def _prediction_grid(
    cfg: TrainConfig, losses: Sequence[str], seed: int, out: Path, device: torch.device, n_examples: int, sub: str
) -> Path:
    """The first ``n_examples`` test sequences: true future frames, then each loss's predicted probabilities."""
    test = load_split(cfg, "test")
    n = min(n_examples, len(test))
    samples = [test[i] for i in range(n)]
    inputs = torch.stack([s["inputs"] for s in samples])
    panels = {"true": torch.stack([s["targets"][:, 0] for s in samples]).numpy()}
    for name in losses:
        model, _, _ = load_trained_model(run_dir_for(out, name, seed) / "best_model.pth", device)
        panels[name] = torch.sigmoid(model(inputs.to(device))[:, :, 0]).cpu().numpy()
    last_inputs = np.stack([s["inputs"][-1, 0].numpy() for s in samples])
    return plot_prediction_grid(panels, out / "prediction_grid.png", inputs=last_inputs, sub=sub)
