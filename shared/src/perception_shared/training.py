"""The generic epoch loop: no framework, every step visible.

A package gives the ``Trainer`` a model, an optimizer, a training loader from ``make_train_loader``,
and two functions:

* ``step_fn(model, batch, info) -> StepOutput``: the forward pass and loss for one batch (called under
  autocast; ``model`` is the DDP-wrapped model in a multi-process job, ``batch`` is already on the
  device). The loop does backward, gradient clipping, the optimizer and per-step scheduler steps.
* ``eval_fn(model, epoch) -> {name: value}``: validation metrics over the whole validation set, already
  combined over ranks (``MeanDict.reduce`` or ``gather_by_index``). Called on every rank with the
  unwrapped model in eval mode under ``torch.no_grad()``.

The loop owns what must be the same everywhere: epochs and mid-epoch resumption, checkpoint cadence,
best/last/final checkpoints, early stopping, preemption, TensorBoard/CSV logging (and Weights & Biases when
the config's ``tracking.wandb.mode`` is not ``disabled``, see ``wandb_run.py``), the history plot and the
run's ``manifest.json`` (see ``manifest.py``; the package passes ``manifest_info``).
Every scalar is logged against the global optimizer step; the per-epoch history also has ``epoch``.

No host synchronization inside a step: ``step_fn`` returns tensors, the epoch means accumulate on the
device, and the host reads values once per ``loop.log_every`` steps (one ``tolist`` of the logged values,
the non-finite-loss count and, in a multi-process job, the preemption flag combined over ranks). So a
non-finite loss is detected at the next log interval (and always before a checkpoint is written); a
single-process run checks the signal flag, a host variable, after every step; a multi-process run at log
intervals. ``loop.stop_on_nonfinite: false`` (skip bad batches) must look at each loss before the
optimizer step, which costs one read per step.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import __version__
from .checkpoint import CheckpointManager, load_checkpoint, require_resumable, restore_model
from .config import config_to_dict, save_config
from .distributed import DistContext, all_gather_object, all_reduce_max, barrier
from .errors import CheckpointError
from .jsonio import write_json
from .logging import get_logger, progress
from .manifest import Manifest, start_manifest
from .metrics import MeanDict
from .plotting import plot_history, write_history_csv
from .precision import Precision
from .preemption import MARKER, PREEMPTED_EXIT_CODE, Preempted, PreemptionHandler
from .samplers import SeededDataset, ShardedSampler
from .seed import capture_rng_state, restore_rng_state
from .tracking import Tracker, WandbConfig, log_images
from .wandb_run import require_wandb

HISTORY_CSV = "training_history.csv"
HISTORY_PNG = "training_history.png"
# The last step the run reached, written at each log interval and with each checkpoint, so that a run
# killed without warning (scontrol requeue, a node failure) can say on resume how many steps it has to
# recompute, and a run that stopped at its checkpoint says "no steps lost" with the checkpoint's step.
PROGRESS_JSON = "progress.json"


@dataclass
class LoopConfig:
    """The loop's settings; packages nest it in their config as ``loop``."""

    epochs: int = 10
    grad_clip: float | None = None
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    checkpoint_every: int = 1
    keep_last: int = 3
    monitor: str = "val/loss"
    mode: Literal["min", "max"] = "min"
    early_stopping_patience: int | None = None
    eval_every: int = 1
    log_every: int = 10
    max_steps_per_epoch: int | None = None
    stop_on_nonfinite: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"loop.epochs must be at least 1, got {self.epochs}")
        if self.checkpoint_every < 1 or self.keep_last < 1 or self.eval_every < 1 or self.log_every < 1:
            raise ValueError("loop.checkpoint_every, keep_last, eval_every and log_every must be at least 1")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"loop.grad_clip must be positive or null, got {self.grad_clip}")


@dataclass
class StepOutput:
    """What ``step_fn`` returns: the loss to minimize, extra scalars to log, and the batch's weight.

    ``n`` weights this batch in the epoch means (for example the number of samples or fixations).
    """

    loss: torch.Tensor
    metrics: dict[str, float | torch.Tensor] = field(default_factory=dict)
    n: float = 1.0


@dataclass(frozen=True)
class StepInfo:
    epoch: int  # 0-based epoch being trained
    step: int  # global optimizer steps done before this one
    batch_index: int  # index of this batch within the epoch


@dataclass
class FitResult:
    run_dir: Path
    epochs_completed: int
    global_step: int
    best_metric: float | None
    best_epoch: int | None
    stopped_early: bool
    history: list[dict[str, Any]]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) dict/list/tuple to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


def _is_better(value: float, best: float | None, mode: str) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best if mode == "min" else value > best


class Trainer:
    """Runs ``LoopConfig.epochs`` epochs of ``step_fn`` with validation, checkpoints and resumption."""

    def __init__(
        self,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_loader: torch.utils.data.DataLoader,
        step_fn: Callable[[nn.Module, Any, StepInfo], StepOutput],
        loop: LoopConfig,
        ctx: DistContext,
        run_dir: str | Path,
        config: Any,
        eval_fn: Callable[[nn.Module, int], dict[str, float]] | None = None,
        scheduler: Any = None,
        scheduler_interval: Literal["epoch", "step", "plateau"] = "epoch",
        extra_state: dict[str, Any] | None = None,
        ddp_kwargs: dict[str, Any] | None = None,
        manifest_info: dict[str, Any] | None = None,
        history_plot: dict[str, Any] | None = None,
    ) -> None:
        """``manifest_info``: keyword arguments for ``manifest.start_manifest`` (``data_paths``, ``weights``,
        ``seeds``, ``argv``, ``extra``); the loop adds config, device, world size, times and exit status.
        ``history_plot``: keyword arguments for ``plotting.plot_history`` (``status``, ``labels``,
        ``series``, ``constants``, ``hide``, ``title``, ``run_name``) each time ``training_history.png`` is
        drawn; the loop adds ``best_epoch``, the epoch of the best ``loop.monitor``."""
        if scheduler_interval not in ("epoch", "step", "plateau"):
            raise ValueError(f"scheduler_interval must be epoch, step or plateau; got {scheduler_interval!r}")
        if not isinstance(train_loader.sampler, ShardedSampler):
            raise TypeError("Trainer needs a loader from perception_shared.samplers.make_train_loader")
        self.ctx = ctx
        self.loop = loop
        self.run_dir = Path(run_dir)
        self.config = config
        self.module = model.to(ctx.device)
        self.model: nn.Module = self.module
        if ctx.is_distributed and any(p.requires_grad for p in self.module.parameters()):
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.module, device_ids=ids, **(ddp_kwargs or {}))
        self.optimizer = optimizer
        self.loader = train_loader
        self.step_fn = step_fn
        self.eval_fn = eval_fn
        self.scheduler = scheduler
        self.scheduler_interval = scheduler_interval
        self.extra_state = extra_state if extra_state is not None else {}
        self.precision = Precision(loop.precision, ctx.device)
        self.checkpoints = CheckpointManager(self.run_dir, keep_last=loop.keep_last, every=loop.checkpoint_every)
        self.preemption = PreemptionHandler()
        self.logger = get_logger("train")
        self.tracker: Tracker | None = None
        tracking = getattr(config, "tracking", None)
        self.wandb: WandbConfig | None = getattr(tracking, "wandb", None)
        # the distribution whose [wandb] extra brings W&B: gaze_estimation.config.TrainConfig -> gaze-estimation
        self.package = type(config).__module__.split(".")[0].replace("_", "-")
        if self.wandb is not None:
            require_wandb(self.wandb.mode, self.package)  # on every rank, before any work
        # Progress, restored on resume.
        self.epoch = 0  # completed epochs
        self.global_step = 0
        self.batch_in_epoch = 0
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.history: list[dict[str, Any]] = []
        self._epoch_means = MeanDict()
        self._last_plot = 0.0
        self.manifest_info = dict(manifest_info or {})
        self.history_plot = dict(history_plot or {})
        if "best_epoch" in self.history_plot:
            raise ValueError("history_plot: best_epoch is the Trainer's (the epoch of the best loop.monitor); leave it out")
        self.manifest: Manifest | None = None
        # device-side count of non-finite losses since the last host read (see the module docstring)
        self._nonfinite = torch.zeros((), device=ctx.device, dtype=torch.int64)
        self._last_grad_norm: torch.Tensor | None = None

    # ----- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly; collective (gathers every rank's RNG state)."""
        rng = all_gather_object(capture_rng_state())
        model, frozen = self.checkpoints.model_state(self.module)
        return {
            "format": "perception-lab-checkpoint/2",
            "perception_shared_version": __version__,
            "model": model,
            "frozen": frozen,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.precision.scaler.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "batch_in_epoch": self.batch_in_epoch,
            # every rank's running sums: a mid-epoch resume must report the epoch's mean over all ranks
            "epoch_means": all_gather_object(self._epoch_means.state_dict()),
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "rng": rng,
            "world_size": self.ctx.world_size,
            "config": config_to_dict(self.config),
            "extra": self.extra_state,
        }

    def load_state_dict(self, state: dict[str, Any], source: Path) -> None:
        require_resumable(state, source)
        restore_model(self.module, state, source)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state.get("scheduler") is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            self.precision.scaler.load_state_dict(state["scaler"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"checkpoint {source} does not fit this model/optimizer: {e}") from None
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self._epoch_means = MeanDict()
        self._epoch_means.load_state_dict(_merged_means(state["epoch_means"], first_rank=self.ctx.rank == 0))
        self.best_metric = state["best_metric"]
        self.best_epoch = state["best_epoch"]
        self.bad_epochs = int(state["bad_epochs"])
        self.history = list(state["history"])
        self.extra_state.update(state.get("extra") or {})
        rng = state["rng"]
        restore_rng_state(rng[self.ctx.rank] if len(rng) == self.ctx.world_size else rng[0])
        saved = state.get("config")
        current = config_to_dict(self.config)
        if isinstance(saved, dict) and isinstance(current, dict):
            diffs = _config_diffs(saved, current)
            if diffs:
                self.logger.warning("resuming with a config that differs from the checkpoint's: %s", "; ".join(diffs[:10]))

    def _resume(self, resume_from: Path | None) -> None:
        if resume_from is not None and resume_from.is_file():
            path, state = resume_from, load_checkpoint(resume_from)
        else:
            found = self.checkpoints.load_latest(warn=self.logger.warning)
            if found is None:
                raise CheckpointError(f"--resume: no checkpoint in {self.run_dir}")
            path, state = found
        self.load_state_dict(state, path)
        self.logger.info(
            "resumed from %s: %d epoch(s) done, step %d, batch %d of the current epoch",
            path,
            self.epoch,
            self.global_step,
            self.batch_in_epoch,
        )
        reached = _read_progress(self.run_dir / PROGRESS_JSON)
        if reached is not None and reached > self.global_step:
            self.logger.warning(
                "the previous attempt reached step %d but its last checkpoint is at step %d: "
                "%d step(s) were lost and are recomputed",
                reached,
                self.global_step,
                reached - self.global_step,
            )
        elif reached is not None:
            # progress.json is written with every checkpoint, so a step it records below the checkpoint's
            # can only come from an older file; either way nothing after the checkpoint was done.
            self.logger.info(
                "no steps lost: the checkpoint is at the last step the previous attempt logged (%d)", self.global_step
            )

    # ----- tracking ----------------------------------------------------------------------------
    def _open_tracker(self, purge_step: int | None = None) -> Tracker:
        """TensorBoard, ``metrics.csv`` and the run directory's W&B run (whose config is the resolved config
        and the manifest); rank 0 only."""
        config = config_to_dict(self.config)
        run_config = dict(config) if isinstance(config, dict) else {"config": config}
        if self.manifest is not None:
            run_config["manifest"] = self.manifest.data
        toy = isinstance(config, dict) and (config.get("purpose") == "toy" or config.get("toy") is True)
        return Tracker(self.run_dir, purge_step=purge_step, wandb=self.wandb, package=self.package, run_config=run_config, toy=toy)

    def _plot_history(self) -> None:
        path = plot_history(self.history, self.run_dir / HISTORY_PNG, best_epoch=self.best_epoch, **self.history_plot)
        self.tracker.log_image("training_history", path, self.global_step)  # type: ignore[union-attr]
        self._last_plot = time.time()

    def log_images(self, images: Mapping[str, str | Path], step: int | None = None) -> None:
        """Figures a package draws from files (``{tag: png}``) to TensorBoard and W&B at ``step`` (default:
        the last step trained). During ``fit`` they go to the open tracker; after it (figures drawn from the
        best checkpoint) the run directory's tracker and W&B run are opened again, and closed."""
        step = self.global_step if step is None else step
        if self.tracker is None:
            log_images(self.run_dir, images, step, wandb=self.wandb, package=self.package)
            return
        for tag, path in images.items():
            self.tracker.log_image(tag, path, step)

    # ----- loop --------------------------------------------------------------------------------
    def fit(self, resume: bool = False, resume_from: str | Path | None = None) -> FitResult:
        """Train to ``loop.epochs``; with ``resume`` continue from the run directory's newest checkpoint."""
        if resume or resume_from is not None:
            self._resume(Path(resume_from) if resume_from is not None else None)
        if self.ctx.is_main:
            save_config(self.config, self.run_dir / "config.yaml")
            (self.run_dir / MARKER).unlink(missing_ok=True)
        self.manifest = start_manifest(
            self.run_dir, config=self.config, ctx=self.ctx, enabled=self.ctx.is_main, **self.manifest_info
        )
        stopped_early = False
        status, code, error = "failed", 1, None
        try:
            # in the try: a W&B run that cannot start leaves a manifest that says why
            self.tracker = self._open_tracker(purge_step=self.global_step + 1 if self.global_step else None)
            with self.preemption:
                while self.epoch < self.loop.epochs:
                    self._train_epoch()
                    stop = self._end_epoch()
                    if stop:
                        stopped_early = True
                        self.logger.info(
                            "early stopping after epoch %d: %s has not improved for %d evaluations",
                            self.epoch,
                            self.loop.monitor,
                            self.bad_epochs,
                        )
                        break
                # still under the handler: a signal now must not kill the final save (training is done)
                if self.ctx.is_main and stopped_early:
                    self._plot_history()
                final_state = self.state_dict()  # collective: every rank takes part
                self.checkpoints.save_final(final_state)
                barrier()
            status, code = "completed", 0
        except Preempted:
            status, code = "preempted", PREEMPTED_EXIT_CODE
            raise
        except KeyboardInterrupt:
            status, code = "interrupted", 130
            raise
        except BaseException as e:
            error = f"{type(e).__name__}: {e}"
            raise
        finally:
            self.manifest.finish(
                status,
                code,
                epochs_completed=self.epoch,
                global_step=self.global_step,
                error=error,
            )
            if self.tracker is not None:
                self.tracker.update_run_config({"manifest": self.manifest.data})
                self.tracker.close(exit_code=code, preempted=status == "preempted")
                self.tracker = None
        return FitResult(self.run_dir, self.epoch, self.global_step, self.best_metric, self.best_epoch, stopped_early, self.history)

    def _train_epoch(self) -> None:
        epoch = self.epoch
        sampler: ShardedSampler = self.loader.sampler  # type: ignore[assignment]
        sampler.set_epoch(epoch)
        if isinstance(self.loader.dataset, SeededDataset):
            self.loader.dataset.set_epoch(epoch)
        if self.batch_in_epoch:
            sampler.set_start(self.batch_in_epoch * self.loader.batch_size)  # type: ignore[operator]
        else:
            self._epoch_means = MeanDict()
        self.model.train()
        self._epoch_start = time.time()
        total = len(self.loader) + self.batch_in_epoch
        if self.loop.max_steps_per_epoch is not None:
            total = min(total, self.loop.max_steps_per_epoch)
        params = [p for p in self.module.parameters() if p.requires_grad]
        bar = progress(self.loader, total=total, initial=self.batch_in_epoch, desc=f"epoch {epoch + 1}/{self.loop.epochs}", leave=False)
        skip_nonfinite = not self.loop.stop_on_nonfinite
        for i, batch in enumerate(bar, start=self.batch_in_epoch):
            if i >= total:
                break
            batch = to_device(batch, self.ctx.device)
            with self.precision.autocast():
                out = self.step_fn(self.model, batch, StepInfo(epoch, self.global_step, i))
            loss = out.loss
            if skip_nonfinite and not bool(torch.isfinite(loss.detach()).all()):
                self.logger.warning(
                    "training loss is %s at epoch %d, step %d; skipping this batch", float(loss.detach()), epoch + 1, self.global_step
                )
                self.optimizer.zero_grad(set_to_none=True)
                continue
            self._nonfinite += (~torch.isfinite(loss.detach())).any()
            self.optimizer.zero_grad(set_to_none=True)
            self.precision.backward(loss)
            self._last_grad_norm = self.precision.step(self.optimizer, params, self.loop.grad_clip)
            if self.scheduler is not None and self.scheduler_interval == "step":
                self.scheduler.step()
            self.global_step += 1
            self.batch_in_epoch = i + 1
            values = {"loss": loss.detach()}
            values.update({k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in out.metrics.items()})
            self._epoch_means.update(values, n=out.n)
            if self.global_step % self.loop.log_every == 0:
                stop = self._log_interval(values, bar)
            else:
                stop = not self.ctx.is_distributed and self.preemption.requested
            if stop:
                self._preempt()
        if hasattr(bar, "close"):
            bar.close()
        if self.ctx.is_distributed:  # a signal since the last log interval must not wait for the evaluation
            flag = torch.tensor([float(self.preemption.requested)], device=self.ctx.device)
            if bool(all_reduce_max(flag)):
                self._preempt()

    def _log_interval(self, values: dict[str, Any], bar: Any) -> bool:
        """The one host read per log interval: logged values, non-finite count, preemption (all ranks).

        Returns True when training must stop for a signal; raises ``NonFiniteLossError`` when a loss since
        the last interval was NaN or infinite.
        """
        names = list(values)
        if self._last_grad_norm is not None:
            names.append("grad_norm")
            values = {**values, "grad_norm": self._last_grad_norm}
        flags = torch.stack([self._nonfinite.double(), torch.tensor(float(self.preemption.requested), device=self.ctx.device, dtype=torch.float64)])
        if self.ctx.is_distributed:
            flags = all_reduce_max(flags)
        row = torch.stack([torch.as_tensor(values[k], dtype=torch.float64).to(self.ctx.device).reshape(()) for k in names] + list(flags))
        numbers = row.tolist()
        nonfinite, preempt = numbers[-2], numbers[-1]
        self._nonfinite.zero_()
        if nonfinite:
            self._raise_nonfinite()
        local = dict(zip(names, numbers[:-2]))
        local["lr"] = self.optimizer.param_groups[0]["lr"]
        self.tracker.log_scalars(local, self.global_step, prefix="train_step/")  # type: ignore[union-attr]
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{local['loss']:.4g}")
        self._write_progress()
        return bool(preempt)

    def _write_progress(self) -> None:
        """``progress.json``: the optimizer steps done and the (1-based) epoch of the last one (see PROGRESS_JSON)."""
        if self.ctx.is_main:
            epoch = self.epoch + (1 if self.batch_in_epoch else 0)
            write_json(self.run_dir / PROGRESS_JSON, {"epoch": epoch, "global_step": self.global_step, "time": time.time()})

    def _raise_nonfinite(self) -> None:
        raise NonFiniteLossError(
            f"training loss became NaN or infinite in epoch {self.epoch + 1} before step {self.global_step}; "
            f"the last good checkpoint is in {self.run_dir} (set loop.stop_on_nonfinite: false to skip such batches)"
        )

    def _preempt(self) -> None:
        state = self.state_dict()
        path = None
        if self.ctx.is_main:
            path = self.checkpoints.save_last(state)
            self._write_progress()
            (self.run_dir / MARKER).write_text(
                f"stopped by {self.preemption.signal_name} at epoch {self.epoch + 1}, step {self.global_step}\n"
            )
        barrier()
        message = (
            f"received {self.preemption.signal_name}: saved {self.run_dir / 'last.pth'} at epoch {self.epoch + 1}, "
            f"step {self.global_step}; continue with --resume --run-dir {self.run_dir}"
        )
        self.logger.warning(message)
        raise Preempted(message, str(path) if path else None)

    def _end_epoch(self) -> bool:
        """Reduce, validate, step the scheduler, checkpoint and log; True if early stopping triggers."""
        epoch_done = self.epoch + 1
        nonfinite = self._nonfinite.clone()
        if self.ctx.is_distributed:
            nonfinite = all_reduce_max(nonfinite)
        if int(nonfinite):  # never checkpoint weights that a NaN step has touched
            self._raise_nonfinite()
        train = self._epoch_means.reduce(self.ctx.device)
        row: dict[str, Any] = {"epoch": epoch_done, "step": self.global_step}
        row.update({f"train/{k}": v for k, v in train.items()})
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        if self.eval_fn is not None and (epoch_done % self.loop.eval_every == 0 or epoch_done == self.loop.epochs):
            self.module.eval()
            with torch.no_grad(), self.precision.autocast():
                val = self.eval_fn(self.module, epoch_done)
            row.update({f"val/{k}": float(v) for k, v in val.items()})
        row["time_s"] = time.time() - self._epoch_start
        monitored = row.get(self.loop.monitor)
        if self.scheduler is not None:
            if self.scheduler_interval == "epoch":
                self.scheduler.step()
            elif self.scheduler_interval == "plateau" and monitored is not None:
                self.scheduler.step(monitored)
        improved = monitored is not None and _is_better(monitored, self.best_metric, self.loop.mode)
        if improved:
            self.best_metric, self.best_epoch, self.bad_epochs = float(monitored), epoch_done, 0
        elif monitored is not None:
            self.bad_epochs += 1
        self.epoch = epoch_done
        self.batch_in_epoch = 0
        self._epoch_means = MeanDict()
        self.history.append(row)
        self.tracker.log_scalars({k: v for k, v in row.items() if k != "step"}, self.global_step)  # type: ignore[union-attr]
        state = self.state_dict()
        if self.ctx.is_main:
            self.checkpoints.save_epoch(state, epoch_done, force=epoch_done == self.loop.epochs)
            if improved:
                self.checkpoints.save_best(state)
            self._write_progress()
            write_history_csv(self.history, self.run_dir / HISTORY_CSV)
            # A plot costs about a second on a CPU: redraw at most once a minute, and at the end.
            if epoch_done == self.loop.epochs or time.time() - self._last_plot > 60:
                self._plot_history()
        barrier()
        summary = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if "/" in k)
        self.logger.info("epoch %d/%d (step %d): %s", epoch_done, self.loop.epochs, self.global_step, summary)
        patience = self.loop.early_stopping_patience
        return patience is not None and self.bad_epochs >= patience


def _merged_means(saved: Any, *, first_rank: bool) -> dict[str, dict[str, float]]:
    """The saved ranks' epoch sums, all on the first rank (zeros elsewhere with the same keys).

    The epoch's mean is a sum over ranks, so this is right for any world size on resume; every rank
    keeps the same keys, which the reduction at the epoch's end needs.
    """
    entries = saved if isinstance(saved, list) else [saved]
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for entry in entries:
        for k, v in entry["sums"].items():
            sums[k] = sums.get(k, 0.0) + float(v)
            counts[k] = counts.get(k, 0.0) + float(entry["counts"][k])
    if not first_rank:
        sums, counts = dict.fromkeys(sums, 0.0), dict.fromkeys(counts, 0.0)
    return {"sums": sums, "counts": counts}


def _read_progress(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text())["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _config_diffs(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(saved) | set(current)):
        a, b = saved.get(k), current.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_diffs(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out
