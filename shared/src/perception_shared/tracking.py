"""The same scalars to TensorBoard, ``metrics.csv`` and (optionally) Weights & Biases; figures to PNG,
TensorBoard and W&B.

``metrics.csv`` is long format, one row per scalar: ``wall_time,step,tag,value``, so new tags can
appear at any time and the file can be appended to after a resume. Only rank 0 writes anything.
W&B (``tracking.wandb``, see ``wandb_run``) gets every scalar at the same step as TensorBoard, and every
figure as an image at the step it is drawn.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .distributed import is_main_process
from .wandb_run import WandbRun, open_wandb_run

WANDB_MODES = ("online", "offline", "disabled")


@dataclass
class WandbConfig:
    """Weights & Biases beside TensorBoard and CSV (rank 0 only); ``mode: disabled`` (the default) logs nothing there."""

    project: str | None = None
    entity: str | None = None
    mode: str = "disabled"

    def __post_init__(self) -> None:
        if self.mode not in WANDB_MODES:
            raise ValueError(f"tracking.wandb.mode must be one of {', '.join(WANDB_MODES)}; got {self.mode!r}")


@dataclass
class TrackingConfig:
    """Where a run's scalars and figures go besides ``metrics.csv`` and TensorBoard; packages nest it as ``tracking``."""

    wandb: WandbConfig = field(default_factory=WandbConfig)


class Tracker:
    """Scalar and figure logging for one run directory."""

    def __init__(
        self,
        run_dir: str | Path,
        *,
        tensorboard: bool = True,
        enabled: bool | None = None,
        purge_step: int | None = None,
        wandb: WandbConfig | None = None,
        package: str = "perception-shared",
        run_config: Mapping[str, Any] | None = None,
        toy: bool = False,
    ) -> None:
        """``purge_step``: on resume, drop what an interrupted run logged at or after this step, so the
        replayed steps are not counted twice (TensorBoard's ``purge_step``, and the same for the CSV).

        ``wandb``: also log to the run directory's W&B run (started, or continued when the directory has
        one, see ``wandb_run``) unless its mode is ``disabled``; ``run_config`` becomes the W&B run's
        config, ``package`` names the pip extra in the missing-``wandb`` error and is the default project,
        ``toy`` tags the W&B run as demo/test settings.
        """
        self.run_dir = Path(run_dir)
        self.enabled = is_main_process() if enabled is None else enabled
        self._tb = None
        self._csv_file = None
        self._wandb: WandbRun | None = None
        if not self.enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.run_dir / "metrics.csv"
        if purge_step is not None and self.csv_path.exists():
            _purge_csv(self.csv_path, purge_step)
        new = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
        self._csv_file = open(self.csv_path, "a", newline="", encoding="utf-8")
        self._csv = csv.writer(self._csv_file)
        if new:
            self._csv.writerow(["wall_time", "step", "tag", "value"])
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), purge_step=purge_step)
        if wandb is not None and wandb.mode != "disabled":
            self._wandb = open_wandb_run(
                self.run_dir,
                mode=wandb.mode,
                project=wandb.project,
                entity=wandb.entity,
                package=package,
                run_config=run_config,
                toy=toy,
            )

    def log_scalars(self, scalars: Mapping[str, Any], step: int, prefix: str = "") -> None:
        """Log ``{tag: number}``; tags get ``prefix`` (for example ``'val/'``)."""
        if not self.enabled:
            return
        now = time.time()
        values = {f"{prefix}{tag}": float(value) for tag, value in scalars.items()}
        for name, v in values.items():
            self._csv.writerow([f"{now:.3f}", step, name, repr(v) if math.isfinite(v) else str(v)])
            if self._tb is not None:
                self._tb.add_scalar(name, v, step)
        self._csv_file.flush()
        if self._wandb is not None:
            self._wandb.log_scalars(values, step)

    def log_figure(self, tag: str, figure: Any, step: int, *, close: bool = True) -> Path | None:
        """Save a matplotlib figure as ``figures/<tag>_<step>.png``, to TensorBoard and as a W&B image;
        returns the PNG path."""
        if not self.enabled:
            if close:
                import matplotlib.pyplot as plt

                plt.close(figure)
            return None
        safe = tag.replace("/", "_")
        path = self.run_dir / "figures" / f"{safe}_{step:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100, bbox_inches="tight")
        if self._tb is not None:
            self._tb.add_figure(tag, figure, step, close=False)
        if self._wandb is not None:
            self._wandb.log_image(tag, path, step)
        if close:
            import matplotlib.pyplot as plt

            plt.close(figure)
        return path

    def log_image(self, tag: str, path: str | Path, step: int) -> None:
        """An image file already written (a PNG a package drew, ``training_history.png``) to TensorBoard and W&B."""
        if not self.enabled:
            return
        if self._tb is not None:
            import matplotlib.image

            pixels = matplotlib.image.imread(str(path))  # (H, W) grey, or (H, W, 3|4) RGB(A)
            self._tb.add_image(tag, pixels[..., :3] if pixels.ndim == 3 else pixels, step, dataformats=("HW", "HWC")[pixels.ndim - 2])
        if self._wandb is not None:
            self._wandb.log_image(tag, path, step)

    def update_run_config(self, values: Mapping[str, Any]) -> None:
        """Add or replace entries of the W&B run's config (the finished manifest at the end of training)."""
        if self._wandb is not None:
            self._wandb.update_config(values)

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()
        if self._csv_file is not None:
            self._csv_file.flush()

    def close(self, exit_code: int | None = None, *, preempted: bool = False) -> None:
        """Close the files and finish the W&B run with ``exit_code`` (non-zero: failed, unless ``preempted``)."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = None
        if self._wandb is not None:
            self._wandb.finish(exit_code, preempted=preempted)
            self._wandb = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def log_images(
    run_dir: str | Path, images: Mapping[str, str | Path], step: int, *, wandb: WandbConfig | None, package: str
) -> None:
    """Figures drawn from files outside the training loop (``{tag: png}``: a run's evaluation, figures drawn
    from its best checkpoint) into the run directory's TensorBoard and its W&B run, continued, at ``step``."""
    with Tracker(run_dir, wandb=wandb, package=package) as tracker:
        for tag, path in images.items():
            tracker.log_image(tag, path, step)


def _purge_csv(path: Path, purge_step: int) -> None:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    kept = rows[:1] + [r for r in rows[1:] if len(r) == 4 and int(r[1]) < purge_step]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(kept)
    tmp.replace(path)


def read_scalars(csv_path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Read ``metrics.csv`` back as ``{tag: [(step, value), ...]}``."""
    out: dict[str, list[tuple[int, float]]] = {}
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["tag"], []).append((int(row["step"]), float(row["value"])))
    return out
