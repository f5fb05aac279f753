"""One policy for bad input files: fail naming the file, or with ``--skip-bad`` count and warn."""

from __future__ import annotations

import logging
from pathlib import Path

from .errors import DataError
from .logging import get_logger


class BadInputPolicy:
    """``report(path, problem)`` raises ``DataError('<path>: <problem>')`` unless skipping is on.

    With ``skip=True`` it logs a warning and counts; ``summary()`` gives one line for the end of loading.
    """

    def __init__(self, skip: bool = False, logger: logging.Logger | None = None) -> None:
        self.skip = skip
        self.logger = logger or get_logger("data")
        self.skipped: list[str] = []

    def report(self, path: str | Path, problem: str) -> None:
        message = f"{path}: {problem}"
        if not self.skip:
            raise DataError(message + " (use --skip-bad to skip bad inputs with a warning)")
        self.skipped.append(message)
        self.logger.warning("skipping bad input %s", message)

    @property
    def count(self) -> int:
        return len(self.skipped)

    def summary(self) -> str:
        if not self.skipped:
            return "no bad inputs"
        return f"skipped {self.count} bad input(s); first: {self.skipped[0]}"
