"""Graceful stop on SIGTERM / SIGUSR1, the signals SLURM sends before a time limit or preemption.

The handler only sets a flag; the training loop checks it at each step boundary, saves a checkpoint
and leaves with ``Preempted`` (exit code 75, EX_TEMPFAIL). In a multi-process job the flag is combined
over ranks (a max all-reduce), so every rank stops at the same step even if only one got the signal.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import torch

from .distributed import all_reduce_max, get_world_size

PREEMPTED_EXIT_CODE = 75
MARKER = "PREEMPTED"


class Preempted(Exception):
    """Training stopped on a signal after saving a checkpoint; resume with ``--resume``."""

    def __init__(self, message: str, checkpoint: str | None = None) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


class PreemptionHandler:
    """Context manager that turns SIGTERM/SIGUSR1 into a flag checked at step boundaries."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGUSR1)) -> None:
        self.signals = signals
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name

    def request(self, name: str = "request") -> None:
        """Ask for a stop as a signal would (for tests and for callers with their own triggers)."""
        self.signal_name = name

    @property
    def requested(self) -> bool:
        """True once this process got a signal (not combined over ranks)."""
        return self.signal_name is not None

    def should_stop(self, device: torch.device | None = None) -> bool:
        """True on every rank if any rank got a signal. A collective: call it on all ranks together."""
        if get_world_size() == 1:
            return self.requested
        flag = torch.tensor([1.0 if self.requested else 0.0], device=device)
        return bool(all_reduce_max(flag).item() > 0)

    def __enter__(self) -> PreemptionHandler:
        # Signal handlers can only be installed from the main thread; elsewhere the flag stays usable
        # through request().
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, prev in self._previous.items():
            signal.signal(s, prev)
        self._previous.clear()
