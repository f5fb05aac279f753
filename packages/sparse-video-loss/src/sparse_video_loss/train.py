"""Training SimVP on sparse frames with one of the losses: model, data, step and validation for ``Trainer``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from perception_shared.badinput import BadInputPolicy
from perception_shared.distributed import DistContext, all_reduce_sum
from perception_shared.errors import ConfigError, DataError
from perception_shared.figures import Quantity, run_status
from perception_shared.logging import get_logger
from perception_shared.pretrained import (
    WeightsSource,
    check_against_manifest,
    load_weights_manifest,
    random_init,
    sha256_file,
)
from perception_shared.samplers import make_eval_loader, make_train_loader
from perception_shared.seed import seed_everything
from perception_shared.training import FitResult, StepInfo, StepOutput, Trainer
from perception_shared.weights import load_pretrained

from . import __version__
from .config import LossConfig, ModelConfig, PerfConfig, TrainConfig
from .data import SparseVideoDataset, load_split_data
from .losses import SparseLoss, get_loss_function
from .models import SimVP, count_parameters
from .sequences import split_path

log = get_logger("sparse_video_loss.train")


def build_model(cfg: ModelConfig, in_shape: tuple[int, int, int, int]) -> SimVP:
    """SimVP from the ``model`` section and the data's ``(T, C, H, W)``; bad settings are a ConfigError."""
    try:
        return SimVP(
            in_shape,
            cfg.hid_S,
            cfg.hid_T,
            cfg.N_S,
            cfg.N_T,
            cfg.model_type,
            mlp_ratio=cfg.mlp_ratio,
            drop_path=cfg.drop_path,
            prior_prob=cfg.prior_prob,
        )
    except ValueError as e:
        raise ConfigError(f"model section: {e}") from None


def model_identifier(cfg: ModelConfig) -> str:
    """The name runs, manifests and ``weights list`` give the model: ``simvp-incepu`` or ``simvp-gsta``."""
    return f"simvp-{cfg.model_type}"


def weights_manifest_path() -> Path:
    """The package's manifest of published weights: SimVP has none (see the file's note)."""
    return Path(__file__).with_name("weights_manifest.json")


def init_weights(model: SimVP, cfg: ModelConfig) -> WeightsSource:
    """Random initialization (the study trains SimVP from scratch), or a user's own SimVP state dict.

    ``model.weights`` (``train --weights PATH``) is read by the shared loader (``weights_only=True``,
    keys and shapes checked) and its sha256 recorded; otherwise the record says RANDOM initialization.
    """
    identifier = model_identifier(cfg)
    if cfg.weights is None:
        return random_init(identifier)
    load_pretrained(model, cfg.weights)
    source = WeightsSource(identifier, "file", Path(cfg.weights), sha256_file(cfg.weights))
    warning = check_against_manifest(source, load_weights_manifest(weights_manifest_path()))
    if warning:
        log.warning("%s", warning)
    return source


def apply_perf(model: nn.Module, perf: PerfConfig) -> nn.Module:
    """The opt-in speed-ups of the ``perf`` section that act on the model (each changes float results slightly)."""
    if perf.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if perf.compile:
        model.compile()  # in place: the state dict keeps its keys, checkpoints stay loadable without compile
    return model


def forward_autocast(perf: PerfConfig, device: torch.device) -> AbstractContextManager:
    """bf16 autocast of the forward pass on CPU when ``perf.cpu_bf16`` (on CUDA, ``loop.precision: bf16`` does it)."""
    if perf.cpu_bf16 and device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def build_loss(cfg: LossConfig) -> SparseLoss:
    """The loss named in the ``loss`` section; an unknown name or keyword is a ConfigError listing valid ones."""
    try:
        return get_loss_function(cfg.name, **cfg.kwargs)
    except ValueError as e:
        raise ConfigError(f"loss section (loss.name / loss.kwargs): {e}") from None


def load_split(cfg: TrainConfig, split: str, policy: BadInputPolicy | None = None, root: str | Path | None = None) -> SparseVideoDataset:
    """One split as a dataset, in the format ``cfg.data.format`` names (the study's files keep their first
    ``n_input + n_output`` frames, as the study's script does)."""
    path, data = load_split_data(cfg.data, split, policy, root)
    return SparseVideoDataset(path, cfg.data.n_input, cfg.data.n_output, data=data, first_frames=cfg.data.format == "original")


def check_same_size(datasets: list[SparseVideoDataset]) -> int:
    sizes = {d.size for d in datasets}
    if len(sizes) != 1:
        listed = ", ".join(f"{d.path} has size {d.size}" for d in datasets)
        raise DataError(f"the splits must share one grid size: {listed}")
    return sizes.pop()


def step_fn(loss_fn: SparseLoss, perf: PerfConfig | None = None) -> Callable[[nn.Module, Any, StepInfo], StepOutput]:
    """The training step: forward (under ``forward_autocast``), the loss over frames with a point.

    Returns tensors only (no host read): the loop accumulates them on the device.
    """
    perf = perf or PerfConfig()

    def step(model: nn.Module, batch: dict[str, torch.Tensor], info: StepInfo) -> StepOutput:
        inputs = batch["inputs"]
        with forward_autocast(perf, inputs.device):
            logits = model(inputs)
        loss = loss_fn(logits, batch["targets"], batch["target_mask"])
        return StepOutput(loss, n=float(len(inputs)))

    return step


@torch.no_grad()
def validate(model: nn.Module, loader: DataLoader, loss_fn: SparseLoss, device: torch.device) -> dict[str, float]:
    """Validation loss and pixel precision/recall/F1 at 0.5 and localization error, exact over all ranks.

    Sums (not means) accumulate on the device and are reduced over ranks once, then read once.
    """
    sums = torch.zeros(7, dtype=torch.float64, device=device)  # loss*n, n, tp, fp, fn, sum of loc errors, frames
    for batch in loader:
        inputs, targets = batch["inputs"].to(device), batch["targets"].to(device)
        mask = batch["target_mask"].to(device)
        logits = model(inputs)
        n = len(inputs)
        pred = logits[:, :, 0] >= 0  # sigmoid(logits) >= 0.5
        true = targets[:, :, 0].bool()
        m = mask[:, :, None, None]
        B, T, _, H, W = logits.shape
        flat = logits[:, :, 0].reshape(B, T, H * W).argmax(-1)
        am = torch.stack([flat // W, flat % W], dim=-1)
        err = ((am - batch["target_pixels"].to(device)).double() ** 2).sum(-1).sqrt()
        sums += torch.stack([
            loss_fn(logits, targets, mask).double() * n,
            torch.tensor(float(n), dtype=torch.float64, device=device),
            (pred & true & m).sum().double(),
            (pred & ~true & m).sum().double(),
            (~pred & true & m).sum().double(),
            (err * mask).sum(),
            mask.sum().double(),
        ])
    s = all_reduce_sum(sums).tolist()
    tp, fp, fn = s[2], s[3], s[4]
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "loss": s[0] / s[1] if s[1] else float("nan"),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "loc_error_px": s[5] / s[6] if s[6] else float("nan"),
    }


def toy_note(cfg: TrainConfig) -> str:
    """What logs and reports say about a demo/test config (empty for research settings)."""
    return "TOY SETTINGS (demo/test config: tiny model and budget; numbers check the pipeline, not the research question)" if cfg.toy else ""


def train(
    cfg: TrainConfig,
    *,
    run_dir: str | Path,
    ctx: DistContext,
    resume: bool = False,
    resume_from: str | Path | None = None,
    skip_bad: bool = False,
    argv: Sequence[str] | None = None,
) -> FitResult:
    """Train SimVP with ``cfg`` into ``run_dir`` (checkpoints, logs, history, manifest); returns the Trainer's result."""
    policy = BadInputPolicy(skip=skip_bad)
    loss_fn = build_loss(cfg.loss)
    train_ds = load_split(cfg, "train", policy)
    val_ds = load_split(cfg, "val", policy)
    size = check_same_size([train_ds, val_ds])
    if policy.count:
        log.warning("data: %s", policy.summary())
    if cfg.toy:
        log.warning("%s", toy_note(cfg))
    in_shape = (cfg.data.n_input, 1, size, size)
    seed_everything(cfg.seed)
    model = build_model(cfg.model, in_shape)
    source = init_weights(model, cfg.model)
    model = apply_perf(model, cfg.perf)
    valid = float(train_ds.masks.float().mean())
    log.info(
        "SimVP %s: %d parameters; weights: %s; loss %r; %d train / %d val sequences of %dx%d frames (%s format), "
        "%.1f%% of frames with a point, %.3f%% of pixels active%s",
        cfg.model.model_type,
        count_parameters(model),
        source.describe(),
        loss_fn,
        len(train_ds),
        len(val_ds),
        size,
        size,
        cfg.data.format,
        100 * valid,
        100 * valid / size**2,
        "; opt-in speed-ups (float results differ slightly): " + ", ".join(k for k, v in vars(cfg.perf).items() if v) if any(vars(cfg.perf).values()) else "",
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=cfg.optim.plateau_factor, patience=cfg.optim.plateau_patience, min_lr=cfg.optim.min_lr
    )
    pin = ctx.device.type == "cuda"
    train_loader = make_train_loader(train_ds, cfg.data.batch_size, seed=cfg.seed, num_workers=cfg.data.num_workers, pin_memory=pin)
    val_loader = make_eval_loader(val_ds, cfg.data.eval_batch_size, num_workers=cfg.data.num_workers, pin_memory=pin)

    def eval_fn(m: nn.Module, epoch: int) -> dict[str, float]:
        return validate(m, val_loader, loss_fn, ctx.device)

    test_path = split_path(cfg.data.root, "test", cfg.data.original.files if cfg.data.format == "original" else None)
    trainer = Trainer(
        model=model,
        optimizer=optimizer,
        train_loader=train_loader,
        step_fn=step_fn(loss_fn, cfg.perf),
        eval_fn=eval_fn,
        loop=cfg.loop,
        ctx=ctx,
        run_dir=run_dir,
        config=cfg,
        scheduler=scheduler,
        scheduler_interval="plateau",
        # training_history.png every epoch: the loss by name, the best epoch and the run's status
        history_plot={
            "title": f"Training history: SimVP-{cfg.model.model_type} with the {cfg.loss.name} loss",
            "status": run_status(toy=cfg.toy, random_init=not source.pretrained),
            "labels": history_labels(cfg.loss.name),
        },
        extra_state={"in_shape": list(in_shape), "package_version": __version__, "weights": source.to_dict(), "toy": cfg.toy},
        manifest_info={
            "argv": argv,
            # test is recorded (not read) so that evaluate and compare can check they use the same files
            "data_paths": {"train": train_ds.path, "val": val_ds.path, "test": test_path},
            "weights": [source.to_dict()],
            "seeds": {"seed": cfg.seed},
            "extra": {"random_init": not source.pretrained, "toy": cfg.toy, "data_format": cfg.data.format},
        },
    )
    return trainer.fit(resume=resume, resume_from=resume_from)


def history_labels(loss: str) -> dict[str, Quantity]:
    """Axis labels of the training history: the loss by name, the pixel metrics at p = 0.5."""
    return {
        "loss": Quantity(f"{loss} loss"),
        "precision": Quantity("pixel precision at p \u2265 0.5"),
        "recall": Quantity("pixel recall at p \u2265 0.5"),
        "f1": Quantity("pixel F1 at p \u2265 0.5"),
        "loc_error_px": Quantity("localization error of the argmax", "pixels"),
    }
