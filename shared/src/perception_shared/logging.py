"""Rank-aware logging: console on rank 0, one log file per run, tqdm bars on rank 0 only.

Other ranks still print warnings and errors (prefixed with their rank), so a failure on rank 3 is not
silent; only rank 0 writes the run's log file. Where stderr is not a terminal (a SLURM job's log file, a
pipe), a bar becomes one plain line per ``PERCEPTION_PROGRESS_INTERVAL`` seconds (default 60) instead of
carriage-return redraws that pile up into one unreadable line.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO, TypeVar

from tqdm.auto import tqdm

from .errors import ConfigError

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


def _rank() -> int:
    """This process's rank: 0 where torch.distributed was never imported (no process group can be up
    then), so that processes which only log (convert-eve's workers) need not import torch."""
    if "torch.distributed" not in sys.modules:
        return 0
    from .distributed import get_rank

    return get_rank()


def setup_logging(run_dir: str | Path | None = None, *, level: int = logging.INFO, filename: str = "train.log") -> logging.Logger:
    """Configure the ``perception`` logger for this process and return it.

    Rank 0: INFO to stderr and to ``run_dir/filename``. Other ranks: WARNING and above to stderr.
    Calling it again (for a new run in the same process) replaces the handlers.
    """
    close_logging()
    logger = logging.getLogger(ROOT_LOGGER)
    logger.setLevel(level)
    logger.propagate = False
    rank = _rank()
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


class _Lines:
    """A stream for tqdm that turns each carriage-return redraw into a line of its own."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def progress(iterable: Iterable[T], **kwargs: Any) -> Iterable[T]:
    """A tqdm bar on rank 0; a plain iterator elsewhere, or when PERCEPTION_NO_PROGRESS=1. Off a terminal,
    a line every ``PERCEPTION_PROGRESS_INTERVAL`` seconds (default 60)."""
    disable = _rank() != 0 or os.environ.get("PERCEPTION_NO_PROGRESS") == "1"
    stream = kwargs.pop("file", None) or sys.stderr
    if _is_terminal(stream):
        kwargs.setdefault("dynamic_ncols", True)
        kwargs.setdefault("mininterval", 1.0)
    else:
        raw = os.environ.get("PERCEPTION_PROGRESS_INTERVAL", "60")
        try:
            interval = float(raw)
        except ValueError:
            raise ConfigError(f"PERCEPTION_PROGRESS_INTERVAL={raw!r} is not a number of seconds") from None
        kwargs.setdefault("mininterval", interval)
        kwargs.setdefault("maxinterval", max(interval, 10.0))  # tqdm's monitor must not redraw more often
        kwargs.setdefault("ncols", 100)
        kwargs["leave"] = True  # a finished bar's last line stays: it is the summary in a log file
        stream = _Lines(stream)
    return tqdm(iterable, disable=disable, file=stream, **kwargs)
