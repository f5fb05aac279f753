"""One policy for bad input files: fail naming the file, or with ``--skip-bad`` count and warn."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from .errors import DataError
from .logging import get_logger

MAX_LISTED = 40  # problems listed in one error message; the rest are counted


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

    def report_all(
        self, subject: str, problems: Sequence[tuple[str | Path, str]], total: int, unit: str = "rows"
    ) -> None:
        """Report every ``(where, problem)`` found while checking ``subject`` (a CSV, a folder) at once.

        Without skipping: one DataError naming ``subject`` and listing the problems (the first 40, then a
        count), so a user fixes them all in one pass. With skipping: a warning for each, counted.
        """
        if not problems:
            return
        if not self.skip:
            lines = [f"{where}: {problem}" for where, problem in problems[:MAX_LISTED]]
            more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
            raise DataError(
                f"{subject}: {len(problems)} of {total} {unit} have problems "
                f"(fix them, or use --skip-bad to skip these {unit} with a warning):\n  " + "\n  ".join(lines) + more
            )
        for where, problem in problems:
            self.report(where, problem)

    @property
    def count(self) -> int:
        return len(self.skipped)

    def summary(self) -> str:
        if not self.skipped:
            return "no bad inputs"
        return f"skipped {self.count} bad input(s); first: {self.skipped[0]}"
