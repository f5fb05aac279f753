"""``study``: baseline and entropy-regularized runs over several seeds, all evaluated, one report.

For each seed s the study trains ``OUT/seed_<s>/baseline`` (config ``baseline``) and
``OUT/seed_<s>/entropy_reg`` (config ``entropy_reg``) with ``seed: s``, evaluates both, and finally
writes ``OUT/report/`` from all pairs: the criteria with paired bootstrap intervals over images (every
seed's pair on the same resampled images), the spread over seeds of the bias-entropy and stability
criteria, mean +- sd over seeds and a per-seed table (``report.make_report``).

The seed changes the initialization of the readout and the order of the training batches; the image
split (``data.split_seed``), the center prior and everything else stay the same, so that the pairs
differ only in the regularizer and the seeds only in the seed (the report refuses anything else).

A run that already finished (``final_model.pth``) is not trained again and one already evaluated is
not evaluated again, so an interrupted study continues where it stopped; ``report_only`` only
aggregates runs made elsewhere (the SLURM array template ``slurm/study.sbatch`` trains one run per
array task and ends with ``saliency-entropy study --report-only``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perception_shared.distributed import DistContext, barrier
from perception_shared.errors import UserError
from perception_shared.logging import get_logger, setup_logging
from perception_shared.runs import prepare_run_dir
from perception_shared.seed import seed_everything

from .config import TrainConfig
from .evaluate import evaluate_run
from .report import make_report
from .train import load_train_config, train

log = get_logger("saliency_entropy.study")
ARMS = ("baseline", "entropy_reg")


def run_dir_of(out: str | Path, seed: int, arm: str) -> Path:
    """Where the study keeps the ``arm`` run of ``seed``."""
    return Path(out) / f"seed_{seed}" / arm


def study_config(
    config: str | Path,
    seed: int,
    overrides: Sequence[str] = (),
    *,
    data: str | None = None,
    cat2000: str | None = None,
    weights: str | None = None,
) -> TrainConfig:
    """One arm's config with the study's seed and the common overrides applied."""
    return load_train_config(config, overrides, data=data, cat2000=cat2000, weights=weights, seed=seed)


def run_study(
    out: str | Path,
    seeds: Sequence[int],
    ctx: DistContext,
    *,
    configs: dict[str, str | Path] | None = None,
    arm_overrides: dict[str, Sequence[str]] | None = None,
    overrides: Sequence[str] = (),
    data: str | None = None,
    cat2000: str | None = None,
    weights: str | None = None,
    skip_bad: bool = False,
    report_only: bool = False,
    allow_data_mismatch: bool = False,
) -> dict[str, Any]:
    """Train and evaluate every (seed, arm) run that is not done yet, then write ``OUT/report`` (rank 0;
    the other ranks return an empty dict).

    ``configs`` maps each arm to its config (default ``baseline`` and ``entropy_reg``); ``arm_overrides``
    adds ``--set`` overrides to one arm only (the demo uses one config and sets the weight).
    """
    if not seeds:
        raise UserError("study needs at least one seed")
    configs = {**{arm: arm for arm in ARMS}, **(configs or {})}
    arm_overrides = arm_overrides or {}
    for seed in seeds:
        for arm in ARMS:
            run = run_dir_of(out, seed, arm)
            if report_only:
                if not (run / "evaluation" / "metrics.json").is_file():
                    raise UserError(f"study --report-only: {run} has not been trained and evaluated yet")
                continue
            if not (run / "final_model.pth").is_file():
                cfg = study_config(
                    configs[arm], seed, [*overrides, *arm_overrides.get(arm, ())], data=data, cat2000=cat2000, weights=weights
                )
                resume = run.is_dir() and any(run.glob("*.pth"))
                run = prepare_run_dir(Path(out), run)
                setup_logging(run)
                seed_everything(cfg.seed)
                log.info("study: seed %d, %s -> %s%s", seed, arm, run, " (resuming)" if resume else "")
                train(cfg, ctx, run, resume=resume, skip_bad=skip_bad)
            if not (run / "evaluation" / "metrics.json").is_file():
                evaluate_run(run, ctx, skip_bad=skip_bad, allow_data_mismatch=allow_data_mismatch)
    report: dict[str, Any] = {}
    if ctx.is_main:
        report = make_report(
            [run_dir_of(out, s, "baseline") for s in seeds],
            [run_dir_of(out, s, "entropy_reg") for s in seeds],
            out_dir=Path(out) / "report",
            allow_data_mismatch=allow_data_mismatch,
        )
    barrier()
    return report
