"""Run directories: one name on every rank, checked for writability and free space before any work.

A command that fails before its run took a step leaves no run directory behind: ``prepare_run_dir``
records the directories it creates, and ``run_cli`` (``perception_shared.cli``) removes those of a failed
command that hold no sign of training (see :func:`removing_unstarted_runs`).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from .distributed import barrier, broadcast_object, is_main_process
from .errors import RunDirError
from .logging import close_logging

MIN_FREE_MB_ENV = "PERCEPTION_MIN_FREE_MB"
DEFAULT_MIN_FREE_MB = 200


def timestamped_name(prefix: str = "run") -> str:
    return f"{prefix}_{datetime.datetime.now().strftime('%Y%m%d_%H%M%S')}"


def check_writable_dir(path: str | Path, min_free_mb: float | None = None) -> Path:
    """Create ``path`` if needed and prove it is writable with enough free space, or raise RunDirError.

    The free-space floor is ``min_free_mb`` or ``$PERCEPTION_MIN_FREE_MB`` (default 200 MB): a run
    that can write its first checkpoint but not its tenth should fail now, not after hours.
    """
    p = Path(path)
    if min_free_mb is None:
        min_free_mb = float(os.environ.get(MIN_FREE_MB_ENV, DEFAULT_MIN_FREE_MB))
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot create output directory {p}: {e.strerror or e}") from None
    probe = p / f".write-test-{uuid.uuid4().hex}"
    try:
        with open(probe, "wb") as f:
            f.write(b"0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise RunDirError(f"output directory {p} is not writable: {e.strerror or e}") from None
    finally:
        probe.unlink(missing_ok=True)
    free_mb = shutil.disk_usage(p).free / 2**20
    if free_mb < min_free_mb:
        raise RunDirError(
            f"output directory {p} has {free_mb:.0f} MB free, less than the {min_free_mb:.0f} MB needed "
            f"(set {MIN_FREE_MB_ENV} to change the floor)"
        )
    return p


def prepare_run_dir(output_dir: str | Path = "outputs", run_dir: str | Path | None = None, prefix: str = "run") -> Path:
    """The run directory: ``run_dir`` if given, else ``output_dir/run_YYYYMMDD_HHMMSS`` (made unique).

    Rank 0 picks the name and checks the directory; every rank gets the same path (a collective).
    """
    error: str | None = None
    chosen: str | None = None
    if is_main_process():
        try:
            if run_dir is not None:
                target = Path(run_dir)
            else:
                base = Path(output_dir)
                name = timestamped_name(prefix)
                target = base / name
                i = 1
                while target.exists():
                    target = base / f"{name}_{i}"
                    i += 1
            existed = target.exists()
            check_writable_dir(target)
            chosen = str(target)
            if not existed:
                for created in _recorders:
                    created.append(target)
        except RunDirError as e:
            error = str(e)
    chosen, error = broadcast_object((chosen, error))
    if error is not None:
        raise RunDirError(error)
    barrier()
    return Path(chosen)  # type: ignore[arg-type]


# Files that show a run has trained: a checkpoint (any *.pth) or the Trainer's progress.json (the last logged
# step). Without them a run directory holds only its setup (log, config, manifest, split), nothing to resume.
STARTED_MARKERS = ("progress.json",)
_recorders: list[list[Path]] = []


def has_started(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a checkpoint or a logged step (``progress.json``)."""
    p = Path(run_dir)
    return any((p / m).exists() for m in STARTED_MARKERS) or next(p.rglob("*.pth"), None) is not None


@contextlib.contextmanager
def removing_unstarted_runs() -> Iterator[list[Path]]:
    """Remove the run directories that ``prepare_run_dir`` creates inside the block when the block fails
    (an exception, a failed start) and they hold no trace of training (:func:`has_started`).

    Yields the list of removed directories, filled when the block has failed. A directory that existed
    before (``--run-dir`` of an earlier run, ``--resume``) is never removed.
    """
    created: list[Path] = []
    removed: list[Path] = []
    _recorders.append(created)
    try:
        yield removed
    except BaseException:
        for run in created:
            if run.is_dir() and not has_started(run):
                close_logging()  # the run's train.log is open in a handler
                shutil.rmtree(run, ignore_errors=True)
                removed.append(run)
        raise
    finally:
        _recorders.remove(created)
