"""What a model's weights are and where they came from: ``WeightsSource`` (recorded in every run's metadata),
``WeightsRequest`` (what a config asks for) and ``random_init``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

SourceKind = Literal["file", "hf-cache", "torch-hub-cache", "download", "random"]


@dataclass(frozen=True)
class WeightsSource:
    """Which weights a model got and from where; ``sha256`` is the hex digest of the file (None if random)."""

    identifier: str
    kind: SourceKind
    path: Path | None
    sha256: str | None

    @property
    def pretrained(self) -> bool:
        return self.kind != "random"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record for a run's metadata."""
        return {
            "identifier": self.identifier,
            "kind": self.kind,
            "path": str(self.path) if self.path is not None else None,
            "sha256": self.sha256,
            "pretrained": self.pretrained,
        }

    def describe(self) -> str:
        """One line for logs and reports."""
        if not self.pretrained:
            return f"{self.identifier}: RANDOM initialization (pretrained: false)"
        digest = f" (sha256 {self.sha256[:12]}…)" if self.sha256 else ""
        return f"{self.identifier} from {self.kind} {self.path}{digest}"


@dataclass(frozen=True)
class WeightsRequest:
    """One set of weights a config asks for (``role`` tells several apart, e.g. gaze's face and eye)."""

    identifier: str
    pretrained: bool
    file: str | None = None
    role: str = "backbone"


def random_init(identifier: str) -> WeightsSource:
    """The record of a model that starts from random initialization (``pretrained: false``)."""
    return WeightsSource(identifier.strip(), "random", None, None)
