"""Training: MIT1003 train split, optional bias-map entropy regularizer, validation on the val split.

Per optimizer step the loss is the negative log-likelihood per fixation (nats, over image pixels). On
steps whose number (counted after the step) is a multiple of ``entropy.compute_every``, the same
forward pass also yields the bias map, and ``entropy.weight * H`` (H in nats) is subtracted; H is logged
as ``bias_entropy`` (also for weight 0, the baseline). Every validation logs NLL, information gain over
the center prior (bits/fixation), log-likelihood over uniform (bits/fixation) and the bias entropy.

Files written in the run directory besides the Trainer's (checkpoints, metrics.csv, TensorBoard,
training_history.csv/png): ``split.json`` (the image split, reused on resume), ``center_prior.json``
(the fit and its cross-validation table). Checkpoints carry the split under ``extra``.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import Any

import torch

from perception_shared.badinput import BadInputPolicy
from perception_shared.cli import ResumeSpec
from perception_shared.config import load_config, resolve_config_path
from perception_shared.distributed import DistContext, all_reduce_sum, init_distributed, main_then_broadcast
from perception_shared.logging import get_logger, setup_logging
from perception_shared.runs import prepare_run_dir
from perception_shared.samplers import make_eval_loader, make_train_loader
from perception_shared.seed import seed_everything
from perception_shared.training import FitResult, StepInfo, StepOutput, Trainer

from .centerbias import CenterPrior, fit_center_prior
from .config import TrainConfig
from .data import (
    FixationDataset,
    ImageRecord,
    collate,
    fixation_count,
    load_split,
    make_split,
    mit1003_records,
    normalized_fixations,
    save_split,
)
from .losses import fixation_log_likelihoods
from .models import SaliencyModel, build_model

log = get_logger("saliency_entropy.train")
SPLIT_FILE = "split.json"
CENTER_PRIOR_FILE = "center_prior.json"


def load_mit_records(
    cfg: TrainConfig, policy: BadInputPolicy | None = None, names: list[str] | None = None
) -> list[ImageRecord]:
    d = cfg.data
    return mit1003_records(
        d.mit_root,
        fixations=d.fixations,
        fixations_csv=d.fixations_csv,
        fixlocs_dir=d.fixlocs_dir,
        fixlocs_key=d.fixlocs_key,
        drop_first_fixation=d.drop_first_fixation,
        policy=policy,
        names=names,
    )


def prepare_training_data(
    cfg: TrainConfig, run_dir: Path, policy: BadInputPolicy
) -> tuple[list[ImageRecord], list[ImageRecord], dict[str, Any], CenterPrior]:
    """Records of both splits, the split (from data.split_file, the run's split.json, or new), the prior."""
    records = load_mit_records(cfg, policy)
    names = [r.name for r in records]
    if cfg.data.split_file:
        split = load_split(cfg.data.split_file, names)
    elif (run_dir / SPLIT_FILE).is_file():
        split = load_split(run_dir / SPLIT_FILE, names)
    else:
        split = make_split(names, cfg.data.val_fraction, cfg.data.split_seed)
    by_name = {r.name: r for r in records}
    train = [by_name[n] for n in split["train"]]
    val = [by_name[n] for n in split["val"]]
    xy, owner = normalized_fixations(train)
    prior = fit_center_prior(xy, owner, cfg.center_prior, grid=cfg.model.center_prior_grid)
    if policy.count:
        log.warning("%s", policy.summary())
    return train, val, split, prior


def write_center_prior(prior: CenterPrior, path: Path) -> None:
    path.write_text(json.dumps(prior.summary(), indent=1))


def make_step_fn(cfg: TrainConfig, module: SaliencyModel):
    """The per-batch forward and loss (see the module docstring); ``model`` may be DDP-wrapped."""
    factor = cfg.model.saliency_map_factor
    size = (cfg.data.image_size[0], cfg.data.image_size[1])
    baseline: dict[str, torch.Tensor] = {}

    def step_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor], info: StepInfo) -> StepOutput:
        with_bias = (info.step + 1) % cfg.entropy.compute_every == 0
        logp, bias = model(batch["image"], with_bias=with_bias)
        mask = batch["mask"]
        n = mask.sum()
        ll = fixation_log_likelihoods(logp, batch["fixations"], factor)
        nll = -(ll * mask).sum() / n.clamp_min(1)
        if "full" not in baseline:
            baseline["full"] = module.center_log_density(size).to(logp.device, torch.float64)
        base = _pixel_values(baseline["full"], batch["fixations"])
        ig = ((ll.double() - base) * mask).sum() / n.clamp_min(1) / math.log(2)
        loss = nll
        metrics: dict[str, Any] = {"nll": nll.detach(), "ig": ig.detach()}
        if bias is not None:
            entropy = module.entropy_full_resolution(bias)
            if cfg.entropy.weight > 0:
                loss = loss - cfg.entropy.weight * entropy
            metrics["bias_entropy"] = entropy.detach()
        return StepOutput(loss=loss, metrics=metrics, n=float(n))

    return step_fn


def _pixel_values(full: torch.Tensor, fixations: torch.Tensor) -> torch.Tensor:
    """(B, N) values of an (H, W) map at fixations (x, y) (padding entries read pixel (0, 0))."""
    h, w = full.shape
    rows = fixations[..., 1].floor().long().clamp(0, h - 1)
    cols = fixations[..., 0].floor().long().clamp(0, w - 1)
    return full[rows, cols]


def make_eval_fn(cfg: TrainConfig, loader: torch.utils.data.DataLoader, ctx: DistContext):
    """Validation metrics over the whole val split, exact over ranks (sums and counts)."""
    factor = cfg.model.saliency_map_factor
    size = (cfg.data.image_size[0], cfg.data.image_size[1])

    def eval_fn(module: SaliencyModel, epoch: int) -> dict[str, float]:
        base_full = module.center_log_density(size).to(ctx.device, torch.float64)
        sums = torch.zeros(3, dtype=torch.float64, device=ctx.device)  # log-lik model, log-lik baseline, fixations
        for batch in loader:
            images = batch["image"].to(ctx.device)
            fix, mask = batch["fixations"].to(ctx.device), batch["mask"].to(ctx.device)
            logp, _ = module(images)
            ll = fixation_log_likelihoods(logp, fix, factor).double()
            sums[0] += (ll * mask).sum()
            sums[1] += (_pixel_values(base_full, fix) * mask).sum()
            sums[2] += mask.sum()
        sums = all_reduce_sum(sums)
        ll_mean, base_mean, n = float(sums[0] / sums[2]), float(sums[1] / sums[2]), float(sums[2])
        entropy = float(module.entropy_full_resolution(module.bias_log_density(size)))
        pixels = size[0] * size[1]
        return {
            "nll": -ll_mean,
            "ig": (ll_mean - base_mean) / math.log(2),
            "ll": (ll_mean + math.log(pixels)) / math.log(2),
            "bias_entropy": entropy,
            "bias_entropy_bits": entropy / math.log(2),
            "bias_entropy_fraction": entropy / math.log(pixels),
            "fixations": n,
        }

    return eval_fn


def _ddp_kwargs() -> dict[str, Any]:
    """No buffer broadcast before each forward: every rank holds identical buffers (frozen backbone
    statistics, the fitted center prior). torch >= 2.14 spells it ``forward_sync_buffers``."""
    params = inspect.signature(torch.nn.parallel.DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> tuple[torch.optim.Optimizer, Any]:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(cfg.optim.milestones), gamma=cfg.optim.gamma
    )
    return optimizer, scheduler


def train(
    cfg: TrainConfig,
    ctx: DistContext,
    run_dir: Path,
    *,
    resume: bool = False,
    resume_from: Path | None = None,
    skip_bad: bool = False,
) -> FitResult:
    """Train one run in ``run_dir`` (already prepared, logging set up, seeds set by the caller)."""
    policy = BadInputPolicy(skip=skip_bad)
    train_records, val_records, split, prior = main_then_broadcast(lambda: prepare_training_data(cfg, run_dir, policy))
    model = build_model(cfg.model, cfg.entropy)
    model.set_center_prior(prior.density)
    if ctx.is_main:
        save_split(split, run_dir / SPLIT_FILE)
        write_center_prior(prior, run_dir / CENTER_PRIOR_FILE)
    log.info(
        "MIT1003: %d train / %d val images, %d / %d fixations; center prior bandwidth %.4g, uniform weight %.3g "
        "(cross-validated %.3f bits/fixation over uniform); backbone %s (%s)",
        len(train_records),
        len(val_records),
        fixation_count(train_records),
        fixation_count(val_records),
        prior.bandwidth,
        prior.uniform_weight,
        prior.cv_log_likelihood / math.log(2),
        cfg.model.backbone,
        "pretrained weights " + str(cfg.model.weights) if cfg.model.weights else "RANDOM initialization",
    )
    size = cfg.data.image_size
    train_loader = make_train_loader(
        FixationDataset(train_records, size),
        cfg.data.batch_size,
        seed=cfg.seed,
        num_workers=cfg.data.num_workers,
        collate_fn=collate,
    )
    val_loader = make_eval_loader(
        FixationDataset(val_records, size),
        cfg.data.eval_batch_size,
        num_workers=cfg.data.num_workers,
        collate_fn=collate,
    )
    optimizer, scheduler = build_optimizer(cfg, model)
    trainer = Trainer(
        model=model,
        optimizer=optimizer,
        train_loader=train_loader,
        step_fn=make_step_fn(cfg, model),
        loop=cfg.loop,
        ctx=ctx,
        run_dir=run_dir,
        config=cfg,
        eval_fn=make_eval_fn(cfg, val_loader, ctx),
        scheduler=scheduler,
        scheduler_interval="epoch",
        extra_state={"split": split, "backbone_pretrained": cfg.model.weights is not None},
        ddp_kwargs=_ddp_kwargs(),
    )
    return trainer.fit(resume=resume, resume_from=resume_from)


def run_training(
    config: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    output_dir: str | Path = "outputs",
    resume_spec: ResumeSpec | None = None,
    device: str = "auto",
    skip_bad: bool = False,
    data: str | None = None,
    cat2000: str | None = None,
) -> FitResult:
    """The ``train`` command: config by name or path, process group, run directory, logging, seeds."""
    spec = resume_spec or ResumeSpec(None, False, None)
    ctx = init_distributed(device)
    cfg = load_config(TrainConfig, resolve_config_path("saliency_entropy", config), list(overrides))
    if data:
        cfg.data.mit_root = data
    if cat2000:
        cfg.data.cat2000_root = cat2000
    run_dir = prepare_run_dir(output_dir, spec.run_dir)
    setup_logging(run_dir)
    seed_everything(cfg.seed)
    log.info("run directory %s (rank %d of %d, device %s)", run_dir, ctx.rank, ctx.world_size, ctx.device)
    return train(cfg, ctx, run_dir, resume=spec.resume, resume_from=spec.checkpoint, skip_bad=skip_bad)
