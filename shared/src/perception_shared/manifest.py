"""``manifest.json``: what a run was, so that a number in a paper can be traced back to it.

A run directory's manifest records the command line, the resolved config, the versions of our packages
and of torch/torchvision/timm/numpy, the git commit (and whether the tree was dirty), the data files with
their sizes and content hashes, the weights used (identifier, source, sha256), host, device, world size,
seeds, start and end times and the exit status. It is written when the run starts (status ``running``)
and again when it ends, so a crashed run is recognizable as one.

Content hashes: files up to ``FULL_HASH_MAX_BYTES`` are hashed whole (sha256). Larger files (HDF5 data
sets of many GB) get ``sha256-sampled``: the sha256 of the size and of 1 MiB at 16 evenly spaced offsets,
which changes with any edit of the size or of the sampled regions and costs milliseconds; the method is
written next to the hash. A folder gets the sha256 of its files' relative paths and hashes.

``check_same_data`` is what ``evaluate`` and the reports call before they compare runs.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .config import config_to_dict
from .errors import UserError
from .jsonio import write_json

MANIFEST = "manifest.json"
FORMAT = "perception-lab-manifest/1"
FULL_HASH_MAX_BYTES = 64 * 2**20
_SAMPLES = 16
_CHUNK = 2**20
OUR_PACKAGES = ("perception-shared", "saliency-entropy", "gaze-estimation", "sparse-video-loss", "image-rating")
LIBRARIES = ("torch", "torchvision", "timm", "numpy")


class DataMismatchError(UserError):
    """Runs that are to be compared were trained or evaluated on different data."""


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds")


def file_hash(path: str | Path) -> tuple[str, str]:
    """``(method, hexdigest)`` of a file: ``sha256`` when small, ``sha256-sampled`` when large (module doc)."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256()
    with open(p, "rb") as f:
        if size <= FULL_HASH_MAX_BYTES:
            for block in iter(lambda: f.read(_CHUNK), b""):
                h.update(block)
            return "sha256", h.hexdigest()
        h.update(str(size).encode())
        for i in range(_SAMPLES):
            f.seek((size - _CHUNK) * i // (_SAMPLES - 1))
            h.update(f.read(_CHUNK))
    return "sha256-sampled", h.hexdigest()


def describe_data(path: str | Path) -> dict[str, Any]:
    """Size and content hash of a data file, or of every file below a folder (hidden files skipped)."""
    p = Path(path)
    if p.is_file():
        method, digest = file_hash(p)
        return {"path": str(p.resolve()), "kind": "file", "bytes": p.stat().st_size, "hash_method": method, "hash": digest}
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts))
        h = hashlib.sha256()
        methods = set()
        total = 0
        for f in files:
            method, digest = file_hash(f)
            methods.add(method)
            total += f.stat().st_size
            h.update(f"{f.relative_to(p).as_posix()}\0{digest}\n".encode())
        return {
            "path": str(p.resolve()),
            "kind": "folder",
            "files": len(files),
            "bytes": total,
            "hash_method": "tree-of-" + "+".join(sorted(methods)) if methods else "tree",
            "hash": h.hexdigest(),
        }
    return {"path": str(p), "kind": "missing"}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def package_versions() -> dict[str, str]:
    """Versions of our packages and of the libraries that decide numerics (installed ones only)."""
    return {name: v for name in (*OUR_PACKAGES, *LIBRARIES) if (v := _version(name)) is not None}


def git_state(start: str | Path | None = None) -> dict[str, Any]:
    """The commit of the checkout the code runs from, and whether its tree has uncommitted changes.

    Looks at the current directory first, then at this file's location (an editable install); an
    installed wheel outside a checkout gives ``{"commit": None}``.
    """
    for where in (Path(start) if start else Path.cwd(), Path(__file__).resolve().parent):
        try:
            commit = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            status = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=where, capture_output=True, text=True, timeout=30, check=True,
            ).stdout
            top = subprocess.run(
                ["git", "rev-parse", "--show-toplevel"], cwd=where, capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            return {"commit": commit, "dirty": bool(status.strip()), "repository": top}
        except (OSError, subprocess.SubprocessError):
            continue
    return {"commit": None, "dirty": None, "repository": None}


def _weights_list(weights: Any) -> list[dict[str, Any]]:
    if weights is None:
        return []
    items = weights if isinstance(weights, (list, tuple)) else [weights]
    out = []
    for w in items:
        if hasattr(w, "to_dict"):
            w = w.to_dict()
        out.append(dict(w))
    return out


@dataclass
class Manifest:
    """A run's manifest; ``finish`` records the end time and exit status and rewrites the file."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True

    def write(self) -> None:
        if self.enabled:
            write_json(self.path, self.data)

    def update(self, **values: Any) -> None:
        self.data.update(values)
        self.write()

    def finish(self, status: str, exit_code: int | None = None, **extra: Any) -> None:
        """``status``: ``completed``, ``preempted``, ``failed`` or ``interrupted``."""
        self.data["end_time"] = _now()
        self.data["status"] = status
        self.data["exit_code"] = exit_code
        self.data.update(extra)
        self.write()


def start_manifest(
    run_dir: str | Path,
    *,
    config: Any,
    argv: Sequence[str] | None = None,
    data_paths: Iterable[str | Path] | Mapping[str, str | Path] = (),
    weights: Any = None,
    seeds: Mapping[str, Any] | None = None,
    ctx: Any = None,
    extra: Mapping[str, Any] | None = None,
    enabled: bool = True,
) -> Manifest:
    """Write ``run_dir/manifest.json`` with status ``running`` (only where ``enabled``, i.e. on rank 0).

    ``data_paths``: the files or folders the run reads (a mapping gives them names, e.g. ``{"train": ...}``).
    ``weights``: ``WeightsSource`` objects or dicts (identifier, kind, path, sha256). ``ctx``: the
    ``DistContext`` (device, world size). A resumed run keeps the first start time and adds the new one to
    ``resumed_at``.
    """
    run = Path(run_dir)
    named = dict(data_paths) if isinstance(data_paths, Mapping) else {str(i): p for i, p in enumerate(data_paths)}
    data_entries = {k: describe_data(v) for k, v in named.items() if v is not None} if enabled else {}
    previous = load_manifest(run, missing_ok=True) if enabled else None
    data: dict[str, Any] = {
        "format": FORMAT,
        "command": list(argv if argv is not None else sys.argv),
        "cwd": os.getcwd(),
        "config": config_to_dict(config) if config is not None else None,
        "versions": package_versions(),
        "python": platform.python_version(),
        "git": git_state(),
        "data": data_entries,
        "weights": _weights_list(weights),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "device": _device_description(ctx),
        "world_size": getattr(ctx, "world_size", 1),
        "seeds": dict(seeds or {}),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "start_time": _now(),
        "end_time": None,
        "status": "running",
        "exit_code": None,
    }
    if previous and previous.get("start_time"):
        data["resumed_at"] = [*previous.get("resumed_at", []), data["start_time"]]
        data["start_time"] = previous["start_time"]
        # a run resumed on other data is a different experiment: keep what the first attempt read
        changed = data_differences(previous, data)
        first = previous.get("data_first_attempt") or previous.get("data")
        if changed or previous.get("data_first_attempt"):
            data["data_first_attempt"] = first
            data["data_changed_on_resume"] = [*previous.get("data_changed_on_resume", []), *changed]
    if extra:
        data.update(extra)
    manifest = Manifest(run / MANIFEST, data, enabled)
    manifest.write()
    return manifest


def _device_description(ctx: Any) -> str:
    device = getattr(ctx, "device", None)
    if device is None:
        return "cpu"
    if getattr(device, "type", None) == "cuda":
        import torch

        return f"cuda ({torch.cuda.get_device_name(device)})"
    return str(device)


def load_manifest(run_dir: str | Path, *, missing_ok: bool = False) -> dict[str, Any] | None:
    """The manifest of a run directory (or a manifest file); None when absent and ``missing_ok``."""
    import json

    p = Path(run_dir)
    path = p if p.suffix == ".json" else p / MANIFEST
    if not path.is_file():
        if missing_ok:
            return None
        raise UserError(f"{path} does not exist: the run was made before run manifests, or is not a run directory")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read run manifest {path}: {e}") from None


def _data_key(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    return (entry.get("kind"), entry.get("hash_method"), entry.get("hash"), entry.get("bytes"))


def data_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """How two manifests' data differ (empty: the same files with the same contents)."""
    da, db = a.get("data") or {}, b.get("data") or {}
    out = []
    for name in sorted(set(da) | set(db)):
        ea, eb = da.get(name), db.get(name)
        if ea is None or eb is None:
            out.append(f"data '{name}' is recorded in only one run")
        elif _data_key(ea) != _data_key(eb):
            out.append(
                f"data '{name}': {ea.get('path')} ({ea.get('bytes')} bytes, {str(ea.get('hash'))[:12]}) vs "
                f"{eb.get('path')} ({eb.get('bytes')} bytes, {str(eb.get('hash'))[:12]})"
            )
    return out


def check_same_data(manifests: Mapping[str, Mapping[str, Any] | None], *, allow: bool = False) -> list[str]:
    """Refuse to compare runs whose manifests say their data differ; returns the differences found.

    ``manifests`` maps a label (e.g. the run directory) to its manifest; a run without one is named too.
    With ``allow`` the differences are returned (for the caller to log and print in its report) instead.
    """
    labels = list(manifests)
    problems = [f"{label}: no manifest.json, so its data cannot be checked" for label in labels if manifests[label] is None]
    present = [label for label in labels if manifests[label] is not None]
    for other in present[1:]:
        problems += [f"{present[0]} vs {other}: {d}" for d in data_differences(manifests[present[0]], manifests[other])]  # type: ignore[arg-type]
    if problems and not allow:
        raise DataMismatchError(
            "refusing to compare runs on different data: " + "; ".join(problems) + " (pass --allow-data-mismatch to compare anyway)"
        )
    return problems
