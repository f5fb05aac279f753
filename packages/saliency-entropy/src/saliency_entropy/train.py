"""Training: MIT1003 train split, optional bias-map entropy regularizer, validation on the val split.

Per optimizer step the loss is the negative log-likelihood per fixation (nats, over image pixels). With
``entropy.weight`` > 0, on the optimizer steps whose global number (1-based) is a multiple of
``entropy.compute_every`` (every step in the research configs) the same forward pass also yields the
bias map, and ``entropy.weight * H`` (H in nats) is subtracted; H is logged as ``bias_entropy``. The
run counts the steps it regularized (kept in its checkpoints, so a resumed run, on any number of GPUs,
continues the count) and logs and reports the dose ``weight x regularized steps / steps``
(``config.EntropyConfig`` says why this is independent of the world size). Every validation logs NLL,
information gain over the center prior (bits/fixation), log-likelihood over uniform (bits/fixation) and
the bias entropy, for the baseline (weight 0) too.

Scanpath models (``model.architecture: deepgaze3`` with ``model.scanpath: true``) train on MIT1003's
scanpaths (``data.ScanpathDataset``): every fixation after a scanpath's initial central one is a target,
given the up to ``model.history`` fixations before it (the initial one included, NaN-padded); the loss is
the negative log-likelihood of each target under the model's density conditional on its history, and
the logged NLL, IG and LL are conditional too. ``optim.frozen`` keeps parameters fixed by name prefix
(DeepGaze III's first scanpath stage: the first two saliency-network stages). ``--init-from`` a spatial
DeepGaze III run with a scanpath config copies every weight the two models share (backbone, saliency
network, fixation selection network's saliency part, finalizer); the scanpath network and the fixation
selection network's scanpath part start from their initialization.

The step reads nothing back to the host: every logged value stays a tensor until the Trainer's log
interval.

Files written in the run directory besides the Trainer's (checkpoints, metrics.csv, TensorBoard,
training_history.csv/png, manifest.json): ``split.json`` (the image split, reused on resume),
``center_prior.json`` (the fit and its cross-validation table). Checkpoints carry the split, the
weights record and the dose counts under ``extra``.
"""

from __future__ import annotations

import inspect
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from perception_shared.badinput import BadInputPolicy
from perception_shared.checkpoint import load_checkpoint, restore_model, uses_pretrained
from perception_shared.cli import ResumeSpec, resolve_run
from perception_shared.config import config_from_dict, load_config, resolve_config_path
from perception_shared.distributed import DistContext, all_reduce_sum, init_distributed, main_then_broadcast
from perception_shared.errors import CheckpointError, ConfigError
from perception_shared.logging import get_logger, setup_logging
from perception_shared.pretrained import check_against_manifest, load_weights_manifest
from perception_shared.runs import prepare_run_dir
from perception_shared.samplers import make_eval_loader, make_train_loader
from perception_shared.seed import seed_everything
from perception_shared.training import FitResult, StepInfo, StepOutput, Trainer

from .allocator import retain_freed_host_memory
from .centerbias import CenterPrior, fit_center_prior
from .config import TrainConfig
from .data import (
    FixationDataset,
    ImageRecord,
    ScanpathDataset,
    collate,
    fixation_count,
    load_split,
    make_split,
    mit1003_records,
    normalized_fixations,
    save_split,
    training_data_paths,
)
from .deepgaze3 import scanpath_only_key
from .figures import LABELS, status_of
from .losses import fixation_log_likelihoods
from .models import DensityModel
from .registry import build_model

log = get_logger("saliency_entropy.train")
SPLIT_FILE = "split.json"
CENTER_PRIOR_FILE = "center_prior.json"


def load_mit_records(
    cfg: TrainConfig, policy: BadInputPolicy | None = None, names: list[str] | None = None, root: str | Path | None = None
) -> list[ImageRecord]:
    """MIT1003's records as ``cfg.data`` says, from ``root`` (default ``data.mit_root``)."""
    d = cfg.data
    return mit1003_records(
        d.mit_root if root is None else root,
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


def regularized_step(step: int, every: int) -> bool:
    """Whether optimizer step ``step`` (0-based global count of steps done before it) is regularized:
    its 1-based number is a multiple of ``every``. A function of the global step only, so every rank
    and every world size agree, and a resumed run continues the schedule."""
    return (step + 1) % every == 0


def new_dose_counts() -> dict[str, int]:
    """The dose counters a run keeps in its checkpoints' ``extra`` (``dose_summary`` reads them)."""
    return {"steps": 0, "regularized_steps": 0}


def dose_summary(weight: float, counts: dict[str, int] | None, compute_every: int) -> dict[str, Any]:
    """``weight x fraction of regularized steps``: planned (1 / compute_every) and measured (the counts)."""
    planned = weight / compute_every if weight > 0 else 0.0
    out: dict[str, Any] = {"weight": weight, "compute_every": compute_every, "planned_dose": planned}
    if counts and counts.get("steps"):
        fraction = counts["regularized_steps"] / counts["steps"]
        out.update(
            steps=counts["steps"],
            regularized_steps=counts["regularized_steps"],
            regularized_fraction=fraction,
            dose=weight * fraction,
        )
    return out


def log_likelihoods(
    log_density: torch.Tensor | list[torch.Tensor], fixations: torch.Tensor, factor: int
) -> torch.Tensor:
    """(B, N) log-density (nats, over image pixels) at each fixation, for a batch of saliency-grid
    log-densities (B, Hs, Ws) or a list of (Hs_i, Ws_i) maps of images of different sizes."""
    if isinstance(log_density, torch.Tensor):
        return fixation_log_likelihoods(log_density, fixations, factor)
    return torch.cat(
        [fixation_log_likelihoods(lp[None], fixations[i : i + 1], factor) for i, lp in enumerate(log_density)]
    )


def conditional_log_likelihoods(
    log_density: torch.Tensor | list[torch.Tensor], fixations: torch.Tensor, factor: int
) -> torch.Tensor:
    """(B, N) log-density (nats, over image pixels) of each fixation under its own conditional density:
    ``log_density`` (B, N, Hs, Ws) or a list of (N, Hs, Ws), one map per fixation (``history`` forward)."""
    if isinstance(log_density, torch.Tensor):
        b, n = log_density.shape[:2]
        return fixation_log_likelihoods(log_density.flatten(0, 1), fixations.flatten(0, 1)[:, None], factor).view(b, n)
    return torch.cat(
        [conditional_log_likelihoods(lp[None], fixations[i : i + 1], factor) for i, lp in enumerate(log_density)]
    )


def is_scanpath(cfg: TrainConfig) -> bool:
    """Whether the run trains and validates on scanpaths (DeepGaze III with scanpath networks)."""
    return cfg.model.architecture == "deepgaze3" and cfg.model.scanpath


def model_log_likelihoods(model: torch.nn.Module, images: Any, batch: dict[str, Any], factor: int, **kwargs: Any):
    """The model's forward on a batch and the (B, N) log-likelihoods of its fixations: conditional on each
    fixation's history when the batch has ``history`` (scanpath runs), else under the image's density."""
    if "history" in batch:
        logp, bias = model(images, history=batch["history"].to(batch["fixations"].device), **kwargs)
        return conditional_log_likelihoods(logp, batch["fixations"], factor), bias
    logp, bias = model(images, **kwargs)
    return log_likelihoods(logp, batch["fixations"], factor), bias


def make_step_fn(cfg: TrainConfig, module: DensityModel, state: dict[str, Any] | None = None):
    """The per-batch forward and loss (see the module docstring); ``model`` may be DDP-wrapped.

    ``state``: the Trainer's ``extra_state``; the step updates the dose counters under its ``"dose"``
    key (``new_dose_counts``), looked up on every step since a resume replaces that entry.
    """
    factor = cfg.model.saliency_map_factor
    bias_size = (cfg.data.image_size[0], cfg.data.image_size[1])
    baselines: dict[tuple[int, int, str], torch.Tensor] = {}
    regularize = cfg.entropy.weight > 0

    def center(size: tuple[int, int], device: torch.device) -> torch.Tensor:
        key = (size[0], size[1], str(device))
        if key not in baselines:
            baselines[key] = module.center_log_density(size).to(device, torch.float64)
        return baselines[key]

    def step_fn(model: torch.nn.Module, batch: dict[str, Any], info: StepInfo) -> StepOutput:
        with_bias = regularize and regularized_step(info.step, cfg.entropy.compute_every)
        images = batch["image"]
        ll, bias = model_log_likelihoods(model, images, batch, factor, with_bias=with_bias, bias_size=bias_size)
        mask = batch["mask"]
        n = mask.sum()
        fix = batch["fixations"]
        nll = -(ll * mask).sum() / n.clamp_min(1)
        if isinstance(images, torch.Tensor):
            base = _pixel_values(center(tuple(images.shape[-2:]), fix.device), fix)
        else:
            base = torch.cat(
                [_pixel_values(center(tuple(img.shape[-2:]), fix.device), fix[i : i + 1]) for i, img in enumerate(images)]
            )
        ig = ((ll.double() - base) * mask).sum() / n.clamp_min(1) / math.log(2)
        loss = nll
        metrics: dict[str, Any] = {"nll": nll.detach(), "ig": ig.detach()}
        if bias is not None:
            entropy = module.entropy_full_resolution(bias)
            loss = loss - cfg.entropy.weight * entropy
            metrics["bias_entropy"] = entropy.detach()
        if state is not None:
            state["dose"]["steps"] += 1
            state["dose"]["regularized_steps"] += int(with_bias)
        return StepOutput(loss=loss, metrics=metrics, n=n)

    return step_fn


def _pixel_values(full: torch.Tensor, fixations: torch.Tensor) -> torch.Tensor:
    """(B, N) values of an (H, W) map at fixations (x, y) (padding entries read pixel (0, 0))."""
    h, w = full.shape
    rows = fixations[..., 1].floor().long().clamp(0, h - 1)
    cols = fixations[..., 0].floor().long().clamp(0, w - 1)
    return full[rows, cols]


def make_eval_fn(
    cfg: TrainConfig, loader: torch.utils.data.DataLoader, ctx: DistContext, state: dict[str, Any] | None = None
):
    """Validation metrics over the whole val split, exact over ranks (sums and counts); logs the dose so far."""
    factor = cfg.model.saliency_map_factor
    size = (cfg.data.image_size[0], cfg.data.image_size[1])

    def eval_fn(module: DensityModel, epoch: int) -> dict[str, float]:
        # log-lik model, log-lik baseline, log(pixels) (LL over uniform), fixations
        sums = torch.zeros(4, dtype=torch.float64, device=ctx.device)
        baselines: dict[tuple[int, int], torch.Tensor] = {}
        for batch in loader:
            images = batch["image"]
            images = images.to(ctx.device) if isinstance(images, torch.Tensor) else [x.to(ctx.device) for x in images]
            batch = {**batch, "fixations": batch["fixations"].to(ctx.device)}
            fix, mask = batch["fixations"], batch["mask"].to(ctx.device)
            ll, _ = model_log_likelihoods(module, images, batch, factor)
            ll = ll.double()
            sizes = [tuple(x.shape[-2:]) for x in (images if isinstance(images, list) else [images[0]] * len(images))]
            for i, hw in enumerate(sizes):
                if hw not in baselines:
                    baselines[hw] = module.center_log_density(hw).to(ctx.device, torch.float64)
                m = mask[i]
                sums[0] += (ll[i] * m).sum()
                sums[1] += (_pixel_values(baselines[hw], fix[i]) * m).sum()
                sums[2] += m.sum() * math.log(hw[0] * hw[1])
                sums[3] += m.sum()
        total = all_reduce_sum(sums).tolist()
        ll_mean, base_mean, log_pixels, n = total[0] / total[3], total[1] / total[3], total[2] / total[3], total[3]
        entropy = float(module.entropy_full_resolution(module.bias_log_density(size)))
        if state is not None and cfg.entropy.weight > 0:
            d = dose_summary(cfg.entropy.weight, state["dose"], cfg.entropy.compute_every)
            log.info(
                "entropy dose after epoch %d: lambda %g x %d/%d regularized steps = %.4g",
                epoch,
                cfg.entropy.weight,
                d.get("regularized_steps", 0),
                d.get("steps", 0),
                d.get("dose", 0.0),
            )
        pixels = size[0] * size[1]
        return {
            "nll": -ll_mean,
            "ig": (ll_mean - base_mean) / math.log(2),
            "ll": (ll_mean + log_pixels) / math.log(2),
            "bias_entropy": entropy,
            "bias_entropy_bits": entropy / math.log(2),
            "bias_entropy_fraction": entropy / math.log(pixels),
            "fixations": n,
        }

    return eval_fn


def history_plot(cfg: TrainConfig, weights: dict[str, Any]) -> dict[str, Any]:
    """How ``training_history.png`` shows this run's columns: the bias-map entropy once, in bits (its nats
    and fraction-of-maximum columns left out, as is the constant count of validation fixations), and the
    run's TOY / RANDOM INIT status."""
    return {
        "status": status_of(cfg.toy, weights),
        "labels": LABELS,
        "hide": ["train/bias_entropy", "val/bias_entropy", "val/bias_entropy_fraction", "val/fixations"],
    }


def _ddp_kwargs() -> dict[str, Any]:
    """No buffer broadcast before each forward: every rank holds identical buffers (frozen backbone
    statistics, the fitted center prior). torch >= 2.14 spells it ``forward_sync_buffers``."""
    params = inspect.signature(torch.nn.parallel.DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}


def freeze(model: torch.nn.Module, prefixes: list[str]) -> list[str]:
    """Keep the parameters whose names start with one of ``prefixes`` fixed; returns their names. A
    prefix that names no parameter is a ConfigError (a typo would silently train everything)."""
    parameters = dict(model.named_parameters())
    unknown = [p for p in prefixes if not any(n.startswith(p) for n in parameters)]
    if unknown:
        raise ConfigError(f"optim.frozen: {unknown} name no parameter of the model (e.g. {list(parameters)[-1]!r})")
    frozen = [n for n in parameters if n.startswith(tuple(prefixes))]
    for name in frozen:
        parameters[name].requires_grad_(False)
    return frozen


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> tuple[torch.optim.Optimizer, Any]:
    if cfg.optim.frozen:
        log.info("parameters kept fixed (optim.frozen): %s", ", ".join(freeze(model, list(cfg.optim.frozen))))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(cfg.optim.milestones), gamma=cfg.optim.gamma
    )
    return optimizer, scheduler


def weights_manifest_path() -> Path:
    """The package's record of the published hashes of the weights its configs use."""
    return Path(__file__).with_name("weights_manifest.json")


def check_weights(model: DensityModel) -> None:
    """Warn when the loaded weights file's sha256 differs from the one recorded for its identifier."""
    warning = check_against_manifest(model.weights_source, load_weights_manifest(weights_manifest_path()))
    if warning:
        log.warning("%s", warning)


def train(
    cfg: TrainConfig,
    ctx: DistContext,
    run_dir: Path,
    *,
    resume: bool = False,
    resume_from: Path | None = None,
    skip_bad: bool = False,
    argv: Sequence[str] | None = None,
    init_from: str | Path | None = None,
) -> FitResult:
    """Train one run in ``run_dir`` (already prepared, logging set up, seeds set by the caller).

    ``init_from``: a run directory or checkpoint (a trained or an imported run) whose model section and
    weights the run starts from (``cfg.model`` is replaced by the run's; the center prior is refitted).
    """
    if cfg.runtime.retain_host_memory:
        retain_freed_host_memory()
    if cfg.toy:
        log.warning("TOY settings (toy: true in the config): this run checks the pipeline, not the research question")
    if init_from is not None:
        model, weights = initial_model(cfg, init_from)
    else:
        model = build_model(cfg.model, cfg.entropy)  # first: missing weights fail before the data is read
        check_weights(model)
        weights = model.weights_source.to_dict()
    policy = BadInputPolicy(skip=skip_bad)
    train_records, val_records, split, prior = main_then_broadcast(lambda: prepare_training_data(cfg, run_dir, policy))
    model.set_center_prior(prior.density)
    if ctx.is_main:
        save_split(split, run_dir / SPLIT_FILE)
        write_center_prior(prior, run_dir / CENTER_PRIOR_FILE)
    log.info(
        "MIT1003: %d train / %d val images, %d / %d fixations; center prior bandwidth %.4g, uniform weight %.3g "
        "(cross-validated %.3f bits/fixation over uniform); backbone weights %s; images %s",
        len(train_records),
        len(val_records),
        fixation_count(train_records),
        fixation_count(val_records),
        prior.bandwidth,
        prior.uniform_weight,
        prior.cv_log_likelihood / math.log(2),
        weights.get("identifier"),
        aspect_description(cfg),
    )
    if cfg.entropy.weight > 0:
        log.info(
            "entropy regularizer: lambda %g on every %s optimizer step (fraction %.4g): dose lambda x fraction = %.4g, "
            "the same on any number of GPUs",
            cfg.entropy.weight,
            "" if cfg.entropy.compute_every == 1 else f"{cfg.entropy.compute_every}th",
            1 / cfg.entropy.compute_every,
            cfg.entropy.weight / cfg.entropy.compute_every,
        )
    else:
        log.info("no entropy regularizer (weight 0): the bias-map entropy is measured at every validation only")
    size = cfg.data.image_size
    multiple = cfg.model.saliency_map_factor

    def dataset(records: list[ImageRecord]) -> FixationDataset:
        if is_scanpath(cfg):
            return ScanpathDataset(records, size, cfg.model.history, cfg.data.aspect, multiple)
        return FixationDataset(records, size, cfg.data.aspect, multiple)

    if is_scanpath(cfg):
        log.info(
            "scanpath training: each fixation after a scanpath's initial central one is a target, given the up to "
            "%d fixations before it; loss and validation are conditional on that history",
            cfg.model.history,
        )
    train_loader = make_train_loader(
        dataset(train_records),
        cfg.data.batch_size,
        seed=cfg.seed,
        num_workers=cfg.data.num_workers,
        collate_fn=collate,
    )
    val_loader = make_eval_loader(
        dataset(val_records),
        cfg.data.eval_batch_size,
        num_workers=cfg.data.num_workers,
        collate_fn=collate,
    )
    optimizer, scheduler = build_optimizer(cfg, model)
    extra = {"split": split, "weights": weights, "dose": new_dose_counts()}
    trainer = Trainer(
        model=model,
        optimizer=optimizer,
        train_loader=train_loader,
        step_fn=make_step_fn(cfg, model, extra),
        loop=cfg.loop,
        ctx=ctx,
        run_dir=run_dir,
        config=cfg,
        eval_fn=make_eval_fn(cfg, val_loader, ctx, extra),
        scheduler=scheduler,
        scheduler_interval="epoch",
        extra_state=extra,
        ddp_kwargs=_ddp_kwargs(),
        history_plot=history_plot(cfg, weights),
        manifest_info={
            "argv": list(argv) if argv is not None else list(sys.argv),
            "data_paths": training_data_paths(cfg),
            "weights": [weights],
            "seeds": {"seed": cfg.seed, "split_seed": cfg.data.split_seed, "entropy_seed": cfg.entropy.seed},
            "extra": {"aspect": cfg.data.aspect, "entropy_planned_dose": dose_summary(cfg.entropy.weight, None, cfg.entropy.compute_every)},
        },
    )
    if cfg.entropy.weight > 0:  # the bias images' frozen features, once, before the first step
        with trainer.precision.autocast():
            model.bias_features((size[0], size[1]), ctx.device)
    return trainer.fit(resume=resume, resume_from=resume_from)


def initial_model(cfg: TrainConfig, init_from: str | Path) -> tuple[DensityModel, dict[str, Any]]:
    """The model of the run ``init_from`` with its weights, and its weights record; ``cfg.model`` becomes
    that run's model section (the architecture and everything the weights depend on). A config asking for
    a scanpath model (``model.scanpath``) started from a spatial DeepGaze III run gets the scanpath networks
    (``model.history`` from the config) on top: the weights both share are copied, the new ones initialized
    (DeepGaze III's scanpath stage starts from its spatial stage so)."""
    ref = resolve_run(init_from)
    state = load_checkpoint(ref.checkpoint)
    if "config" not in state or "model" not in state:
        raise CheckpointError(f"--init-from {ref.checkpoint}: no 'config' or 'model' entry")
    wanted = cfg.model
    cfg.model = config_from_dict(TrainConfig, state["config"], source=f"the config in {ref.checkpoint}").model
    add_scanpath = wanted.scanpath and not cfg.model.scanpath
    if add_scanpath:
        if cfg.model.architecture != "deepgaze3":
            raise ConfigError(
                f"--init-from {ref.checkpoint}: a scanpath model starts from a DeepGaze III run "
                f"(model.architecture deepgaze3), this one is {cfg.model.architecture!r}"
            )
        cfg.model.scanpath, cfg.model.history = True, wanted.history
    # a frozen pretrained backbone is not in the checkpoint: it is built from the weights cache, sha256 checked
    model = build_model(cfg.model, cfg.entropy, pretrained=uses_pretrained(state))
    added = restore_model(model, state, f"--init-from {ref.checkpoint}", new_keys=scanpath_only_key if add_scanpath else None)
    if add_scanpath:
        log.info("scanpath networks added to the spatial run (initialized): %d tensors", len(added))
    weights = dict((state.get("extra") or {}).get("weights") or {"identifier": cfg.model.backbone, "pretrained": cfg.model.pretrained})
    weights["initialized_from"] = str(ref.checkpoint)
    log.info("initialized from %s (model.architecture %s)", ref.checkpoint, cfg.model.architecture)
    return model, weights


def aspect_description(cfg: TrainConfig) -> str:
    """How images are sized, for logs and reports."""
    h, w = cfg.data.image_size
    if cfg.data.aspect == "keep":
        return f"aspect ratio kept (longer side {max(h, w)} px, sides multiples of {cfg.model.saliency_map_factor})"
    return f"squashed to {h}x{w} (H x W) whatever their aspect ratio"


def load_train_config(
    config: str | Path,
    overrides: Sequence[str] = (),
    *,
    data: str | None = None,
    cat2000: str | None = None,
    weights: str | None = None,
    seed: int | None = None,
) -> TrainConfig:
    """A config by name or path with ``--set`` overrides, then the command line's ``data``/``cat2000``/
    ``weights``/``seed`` in place of ``data.mit_root``/``data.cat2000_root``/``model.weights_file``/``seed``."""
    cfg = load_config(TrainConfig, resolve_config_path("saliency_entropy", config), list(overrides))
    if data:
        cfg.data.mit_root = data
    if cat2000:
        cfg.data.cat2000_root = cat2000
    if weights:
        cfg.model.weights_file = weights
    if seed is not None:
        cfg.seed = seed
    return cfg


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
    weights: str | None = None,
    seed: int | None = None,
    argv: Sequence[str] | None = None,
    init_from: str | Path | None = None,
) -> FitResult:
    """The ``train`` command: config by name or path, process group, run directory, logging, seeds.

    ``data``/``cat2000``/``weights``/``seed`` override ``data.mit_root``/``data.cat2000_root``/
    ``model.weights_file``/``seed``.
    """
    spec = resume_spec or ResumeSpec(None, False, None)
    ctx = init_distributed(device)
    cfg = load_train_config(config, overrides, data=data, cat2000=cat2000, weights=weights, seed=seed)
    run_dir = prepare_run_dir(output_dir, spec.run_dir)
    setup_logging(run_dir)
    seed_everything(cfg.seed)
    log.info("run directory %s (rank %d of %d, device %s)", run_dir, ctx.rank, ctx.world_size, ctx.device)
    return train(
        cfg, ctx, run_dir, resume=spec.resume, resume_from=spec.checkpoint, skip_bad=skip_bad, argv=argv, init_from=init_from
    )
