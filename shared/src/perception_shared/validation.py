"""The report of every package's ``validate-data``: what was read, how fast, and every problem by file.

A package's ``validate_data`` fills one ``ValidationReport`` (or a subclass with the package's own
fields): ``files`` read, ``seconds`` spent, one summary dict per data set or file in ``sections``,
``problems`` (each a string naming its file; any problem means exit status 1) and ``warnings`` (worth
knowing, training would not stop on them). The CLI prints ``text()`` and writes ``to_dict()`` with
``--json`` (``report_and_exit`` does both and returns the exit status: 0 ok, 1 problems). ``collecting_policy`` runs the loaders' own
checks with every problem collected instead of raised.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from .badinput import BadInputPolicy
from .jsonio import write_json


@dataclass
class ValidationReport:
    """What ``validate-data`` found at ``path``.

    ``kind`` says what ``path`` was read as (e.g. "training format", "csv trace"); ``files`` counts the
    ``unit``s read (files; a subclass may count e.g. images), the denominator of ``ms_per_unit``.
    """

    path: Path
    kind: str
    files: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    unit: ClassVar[str] = "file"

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def ms_per_unit(self) -> float:
        """Milliseconds per file (per ``unit``) read; 0 when nothing was read."""
        return 1000 * self.seconds / self.files if self.files else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Every field (a subclass's too), ``ok`` and ``ms_per_<unit>``, as JSON-ready values."""
        out: dict[str, Any] = {"ok": self.ok}
        for f in fields(self):
            out[f.name] = _plain(getattr(self, f.name))
        out["seconds"] = round(self.seconds, 4)
        out[f"ms_per_{self.unit}"] = round(self.ms_per_unit, 3)
        return out

    def summary_lines(self) -> list[str]:
        """One line per section (``name: key value, ...``); a subclass may show its summary otherwise."""
        return [f"  {name}: " + ", ".join(f"{k} {v}" for k, v in info.items()) for name, info in self.sections.items()]

    def text(self) -> str:
        """Header (files, time, speed), summary, every warning and problem, and a last line with the verdict."""
        lines = [
            f"validate-data {self.path} ({self.kind}): {self.files} {self.unit}(s) read in {self.seconds:.2f} s "
            f"({self.ms_per_unit:.2f} ms per {self.unit})",
            *self.summary_lines(),
            *(f"WARNING {w}" for w in self.warnings),
            *(f"PROBLEM {p}" for p in self.problems),
        ]
        verdict = f"{len(self.problems)} problem(s)" if self.problems else "no problems found"
        if self.warnings:
            verdict += f", {len(self.warnings)} warning(s)"
        lines.append(verdict)
        return "\n".join(lines)


def report_and_exit(report: ValidationReport, json_path: str | Path | None = None) -> int:
    """What every ``validate-data`` command ends with: print the report, write its JSON when asked, and
    return the exit status (0 when no problem was found, 1 otherwise)."""
    print(report.text())
    if json_path:
        write_json(json_path, report.to_dict())
    return 0 if report.ok else 1


def _plain(value: Any) -> Any:
    """Paths as strings, containers element by element: what ``json`` can write."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def collecting_policy() -> BadInputPolicy:
    """The loaders' bad-input policy in skip mode, silent: every problem lands in ``skipped``, none is raised.

    Silent because the report lists the problems; the policy's per-item warnings would print them twice.
    """
    logger = logging.getLogger("perception_shared.validation.collected")
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return BadInputPolicy(skip=True, logger=logger)
