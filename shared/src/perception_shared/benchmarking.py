"""What every benchmark JSON records about where it ran."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch


def device_name(device: torch.device) -> str:
    """``torch.cuda.get_device_name`` for a GPU, else the CPU model from /proc/cpuinfo."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def environment(device: torch.device) -> dict[str, Any]:
    """Device, versions and thread count, for the header of a benchmark's JSON."""
    return {
        "device": device_name(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
