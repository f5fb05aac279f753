"""Weights & Biases as a tracker beside TensorBoard and ``metrics.csv``: one W&B run per run directory.

The W&B run's id is kept in the run directory (``wandb_run.json``), and every later attempt in that
directory (``--resume``, ``--auto-resume`` after a SLURM requeue, logging a figure after training)
continues the same W&B run (``resume="allow"`` with that id) instead of starting a new one. W&B writes
its own files under ``<run_dir>/wandb/``; ``mode: offline`` never touches the network (``wandb sync``
uploads them later).

W&B keeps a run's steps increasing: steps an attempt replays after an unannounced kill (the ones after
its last checkpoint) are already in the resumed online run and are not sent again. Offline, each attempt
is its own ``offline-run-*`` folder with the same run id, which ``wandb sync`` puts together.

Only :class:`~perception_shared.tracking.Tracker` opens a W&B run, and only on rank 0; this module is
where W&B's rules live (ids, resumption, settings, errors).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .extras import require_extra
from .jsonio import write_json

RUN_ID_JSON = "wandb_run.json"

_log = logging.getLogger("perception.tracking")


def require_wandb(mode: str, package: str) -> None:
    """The one-line missing-extra error, before any work, when ``tracking.wandb.mode`` needs W&B."""
    if mode != "disabled":
        require_extra("wandb", package=package, extra="wandb", what=f"tracking.wandb.mode: {mode}")


def read_run_id(run_dir: str | Path) -> str | None:
    """The id of the W&B run that belongs to ``run_dir`` (``wandb_run.json``), or None before its first."""
    path = Path(run_dir) / RUN_ID_JSON
    if not path.is_file():
        return None
    try:
        run_id = json.loads(path.read_text(encoding="utf-8"))["id"]
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: not a W&B run record with an 'id' ({e}); remove it to start a new W&B run") from None
    if not isinstance(run_id, str) or not run_id:
        raise ConfigError(f"{path}: 'id' must be a non-empty string, got {run_id!r}")
    return run_id


class WandbRun:
    """An open W&B run: scalars and images at given steps, the config, and ``finish``."""

    def __init__(self, run: Any) -> None:
        self._run = run
        # A resumed online run already has every step below this one; W&B would drop them with a warning each.
        self.first_new_step = int(run.step)
        self.id: str = run.id

    def log_scalars(self, scalars: Mapping[str, float], step: int) -> None:
        if step >= self.first_new_step:
            self._run.log(dict(scalars), step=step)

    def log_image(self, tag: str, path: str | Path, step: int) -> None:
        import wandb

        if step >= self.first_new_step:
            self._run.log({tag: wandb.Image(str(path))}, step=step)

    def update_config(self, values: Mapping[str, Any]) -> None:
        self._run.config.update(dict(values), allow_val_change=True)

    def finish(self, exit_code: int | None = None, *, preempted: bool = False) -> None:
        if preempted:  # W&B shows the run as preempted (to be continued), not as crashed
            self._run.mark_preempting()
        self._run.finish(exit_code=exit_code)


def open_wandb_run(
    run_dir: str | Path,
    *,
    mode: str,
    project: str | None,
    entity: str | None,
    package: str,
    run_config: Mapping[str, Any] | None = None,
    toy: bool = False,
) -> WandbRun:
    """Start, or continue, the W&B run of ``run_dir``; its id goes to ``wandb_run.json`` on first use.

    ``project`` defaults to the package's name; the W&B run is named after the run directory and tagged
    ``toy`` for demo/test settings. A W&B failure at start (no API key, no network with ``mode: online``)
    is a ConfigError that names ``tracking.wandb`` and the way out.
    """
    require_wandb(mode, package)
    import wandb

    run_dir = Path(run_dir)
    run_id = read_run_id(run_dir)
    resuming = run_id is not None
    project = project or package
    try:
        run = wandb.init(
            project=project,
            entity=entity,
            mode=mode,
            dir=str(run_dir),
            id=run_id,
            resume="allow" if resuming else None,
            name=run_dir.name,
            job_type="train",
            tags=["toy"] if toy else None,
            config=dict(run_config) if run_config is not None else None,
            # train.log already has the console; W&B's capture of it would duplicate every line
            settings=wandb.Settings(silent=True, console="off"),
        )
    except wandb.errors.Error as e:
        raise ConfigError(
            f"tracking.wandb (mode {mode}, project {project!r}): W&B could not start the run: {str(e).rstrip('. ')}. "
            "Or set tracking.wandb.mode: offline and upload later with `wandb sync`"
        ) from None
    if not resuming:
        write_json(run_dir / RUN_ID_JSON, {"id": run.id, "project": project, "entity": entity})
    # an offline run has no URL (and asking W&B for one prints a warning)
    where = run.url if mode == "online" else f"{run_dir / 'wandb'} (upload with `wandb sync`)"
    _log.info("W&B run %s (%s, %s, project %s): %s", run.id, "continued" if resuming else "new", mode, project, where)
    return WandbRun(run)
