"""Progress output: tqdm redraws on a terminal, plain lines in a log file (a SLURM job's output)."""

from __future__ import annotations

import io

import pytest

from perception_shared.errors import ConfigError
from perception_shared.logging import progress


def test_progress_off_a_terminal_writes_whole_lines(monkeypatch):
    monkeypatch.setenv("PERCEPTION_PROGRESS_INTERVAL", "0")
    monkeypatch.delenv("PERCEPTION_NO_PROGRESS", raising=False)
    out = io.StringIO()  # not a tty, like the file sbatch --output writes
    assert list(progress(range(5), desc="epoch 1/1", leave=False, file=out)) == [0, 1, 2, 3, 4]
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) >= 2 and all(line.startswith("epoch 1/1") for line in lines)
    assert "5/5" in lines[-1]  # the finished bar is left as the last line, even when leave=False was asked


def test_progress_interval_must_be_a_number(monkeypatch):
    monkeypatch.setenv("PERCEPTION_PROGRESS_INTERVAL", "often")
    monkeypatch.delenv("PERCEPTION_NO_PROGRESS", raising=False)
    with pytest.raises(ConfigError, match="PERCEPTION_PROGRESS_INTERVAL='often'"):
        progress(range(3), file=io.StringIO())


def test_progress_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("PERCEPTION_NO_PROGRESS", "1")
    out = io.StringIO()
    assert list(progress(range(3), file=out)) == [0, 1, 2]
    assert out.getvalue() == ""
