"""Rank-aware logging: console on rank 0, one log file per run, tqdm bars on rank 0 only.

Other ranks still print warnings and errors (prefixed with their rank), so a failure on rank 3 is not
silent; only rank 0 writes the run's log file.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

from .distributed import get_rank

T = TypeVar("T")
ROOT_LOGGER = "perception"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def get_logger(name: str | None = None) -> logging.Logger:
    """A child of the ``perception`` logger (``get_logger('gaze_estimation.train')``)."""
    return logging.getLogger(ROOT_LOGGER if not name else f"{ROOT_LOGGER}.{name}")


def close_logging() -> None:
    """Detach and close the ``perception`` logger's handlers (the run's log file among them).

    For a process that runs several trainings in turn (a comparison, a test suite): the next
    ``setup_logging`` would replace them anyway, but an open file handle should not outlive its run.
    """
    logger = logging.getLogger(ROOT_LOGGER)
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()


def setup_logging(run_dir: str | Path | None = None, *, level: int = logging.INFO, filename: str = "train.log") -> logging.Logger:
    """Configure the ``perception`` logger for this process and return it.

    Rank 0: INFO to stderr and to ``run_dir/filename``. Other ranks: WARNING and above to stderr.
    Calling it again (for a new run in the same process) replaces the handlers.
    """
    close_logging()
    logger = logging.getLogger(ROOT_LOGGER)
    logger.setLevel(level)
    logger.propagate = False
    rank = get_rank()
    console = logging.StreamHandler(sys.stderr)
    if rank == 0:
        console.setLevel(level)
        console.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    else:
        console.setLevel(logging.WARNING)
        console.setFormatter(logging.Formatter(f"[rank {rank}] " + _FORMAT, datefmt="%H:%M:%S"))
    logger.addHandler(console)
    if rank == 0 and run_dir is not None:
        path = Path(run_dir) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(path, encoding="utf-8")
        fh.setLevel(level)
        fh.setFormatter(logging.Formatter(_FORMAT))
        logger.addHandler(fh)
    return logger


def progress(iterable: Iterable[T], **kwargs: Any) -> Iterable[T]:
    """A tqdm bar on rank 0; a plain iterator elsewhere, or when PERCEPTION_NO_PROGRESS=1."""
    disable = get_rank() != 0 or os.environ.get("PERCEPTION_NO_PROGRESS") == "1"
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("mininterval", 1.0)
    return tqdm(iterable, disable=disable, **kwargs)
