"""Test helpers that packages share: counting host reads of tensor values, offline weight caches, and
reading back what an offline Weights & Biases run logged (``read_wandb_offline``).

On a GPU every read of a tensor's value on the host (``.item()``, ``float(t)``, ``if t:``, ``.tolist()``,
``.numpy()``) waits for all queued kernels: a training step that reads a loss for a running mean stalls
the pipeline once per step. ``count_host_reads`` makes those reads visible on a CPU-only machine, so a
test can hold a step to "at most one read per log interval" before it ever runs on a GPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import struct
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# Reads there are not the training step's: optimizers read their step counters, data loading reads
# indices and converts samples on the host by design.
IGNORED_PATHS = ("/torch/optim/", "/torch/utils/data/", "/torch/_dynamo/", "/torch/_inductor/")
_METHODS = ("item", "tolist", "numpy", "__float__", "__int__", "__bool__")


@dataclass
class HostReads:
    """What ``count_host_reads`` saw: the number of reads and where each happened (``file:line method``)."""

    sites: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.sites)

    def summary(self, limit: int = 20) -> str:
        counts: dict[str, int] = {}
        for s in self.sites:
            counts[s] = counts.get(s, 0) + 1
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
        return "\n".join(f"{n:5d}  {site}" for site, n in top)


def _caller_site(method: str) -> str | None:
    """``file:line method`` of the first frame outside this module, or None when the read is ignored."""
    frame = sys._getframe(2)
    site = None
    while frame is not None:
        name = frame.f_code.co_filename.replace("\\", "/")
        if any(p in name for p in IGNORED_PATHS):
            return None
        if site is None and not name.endswith("perception_shared/testing.py"):
            site = f"{name}:{frame.f_lineno} {method}"
        frame = frame.f_back
    return site


@contextmanager
def count_host_reads() -> Iterator[HostReads]:
    """Count reads of tensor values on the host while the block runs (not thread-safe; tests only).

    Patches ``torch.Tensor.item``, ``tolist``, ``numpy``, ``__float__``, ``__int__`` and ``__bool__``;
    reads made while another read is in progress (e.g. ``__float__`` calling ``item``) count once.
    """
    seen = HostReads()
    originals = {m: getattr(torch.Tensor, m) for m in _METHODS}
    depth = 0

    def wrap(method: str):
        original = originals[method]

        def counted(self, *args, **kwargs):
            nonlocal depth
            if depth == 0:
                site = _caller_site(method)
                if site is not None:
                    seen.sites.append(site)
            depth += 1
            try:
                return original(self, *args, **kwargs)
            finally:
                depth -= 1

        counted.__name__ = getattr(original, "__name__", method)
        return counted

    for m in _METHODS:
        setattr(torch.Tensor, m, wrap(m))
    try:
        yield seen
    finally:
        for m, f in originals.items():
            setattr(torch.Tensor, m, f)



@contextmanager
def count_epoch_reads(monkeypatch: Any, trainer_path: str) -> Iterator[HostReads]:
    """Host reads inside the training epochs of the ``Trainer`` a package's ``train`` uses.

    ``trainer_path`` names where the package looks the Trainer up (``"sparse_video_loss.train.Trainer"``);
    it is replaced by a subclass that marks where each epoch's steps begin and end, so the reads of the
    epoch's end (evaluation, checkpoints, history) are left out. The yielded ``HostReads`` is filled when
    the block ends; a package test then asserts ``reads.count <= ceil(N / log_every) * epochs``.
    """
    from .training import Trainer

    windows: list[tuple[int, int]] = []

    class Counting(Trainer):
        def _train_epoch(self) -> None:
            start = counter.count
            try:
                super()._train_epoch()
            finally:
                windows.append((start, counter.count))

    monkeypatch.setattr(trainer_path, Counting)
    inside = HostReads()
    with count_host_reads() as counter:
        yield inside
    inside.sites = [site for a, b in windows for site in counter.sites[a:b]]


# ----- offline weight caches -------------------------------------------------------------------------
# Tests of pretrained weights never download: they block the network and build the caches the hub
# clients read, in their real layouts, from weights saved out of randomly initialized models.


def go_offline(monkeypatch: Any, root: str | Path) -> None:
    """No network (a connection attempt raises), ``HF_HUB_OFFLINE=1``, empty caches below ``root``.

    ``monkeypatch`` is pytest's fixture; ``HF_HOME`` is ``root/hf`` and ``TORCH_HOME`` ``root/torch``.
    """

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("a test tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(Path(root) / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(Path(root) / "torch"))


HF_TEST_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def put_in_hf_cache(hf_home: str | Path, repo: str, filename: str, data: str | Path) -> Path:
    """Store ``data`` as huggingface_hub does: ``blobs/<sha256>``, ``snapshots/<commit>/<file>`` -> blob, ``refs/main``."""
    repo_dir = Path(hf_home) / "hub" / ("models--" + repo.replace("/", "--"))
    blob = repo_dir / "blobs" / hashlib.sha256(Path(data).read_bytes()).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(data, blob)
    link = repo_dir / "snapshots" / HF_TEST_COMMIT / filename
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(HF_TEST_COMMIT)
    return link


def put_in_offline_hf_cache(repo: str, filename: str, data: str | Path) -> Path:
    """``put_in_hf_cache`` into the cache ``go_offline`` made (``$HF_HOME``)."""
    return put_in_hf_cache(os.environ["HF_HOME"], repo, filename, data)


def cache_timm_weights(hf_home: str | Path, identifier: str, state: dict[str, torch.Tensor], staging: str | Path) -> Path:
    """``state`` saved as safetensors in the hub cache where timm looks for ``identifier`` (``timm/<name>.<tag>``)."""
    from safetensors.torch import save_file

    staged = Path(staging) / f"{identifier}.safetensors"
    staged.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(staged))
    return put_in_hf_cache(hf_home, f"timm/{identifier.removeprefix('timm:')}", "model.safetensors", staged)


# The ``.wandb`` transaction log of an offline run: LevelDB's log format (32 KiB blocks of records, a
# record split across blocks as FIRST/MIDDLE/LAST chunks, each chunk with a CRC-32 of its type byte and
# data) after a 7-byte ":W&B" header; each record is a ``wandb_internal_pb2.Record`` protobuf.
_WANDB_HEADER = struct.Struct("<4sHB")
_CHUNK_HEADER = struct.Struct("<IHB")
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def wandb_records(path: str | Path) -> Iterator[Any]:
    """The protobuf records of one ``run-<id>.wandb`` file, in the order W&B wrote them."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    ident, magic, _version = _WANDB_HEADER.unpack_from(data)
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path}: not a W&B transaction log")
    pos, pending = _WANDB_HEADER.size, b""
    while pos + _CHUNK_HEADER.size <= len(data):
        if _BLOCK - pos % _BLOCK < _CHUNK_HEADER.size:  # a block's tail too short for a header is padding
            pos += _BLOCK - pos % _BLOCK
            continue
        crc, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        if kind == 0:
            break
        chunk = data[pos + _CHUNK_HEADER.size : pos + _CHUNK_HEADER.size + length]
        if zlib.crc32(chunk, zlib.crc32(bytes([kind]))) != crc:
            raise ValueError(f"{path}: corrupt record at byte {pos}")
        pos += _CHUNK_HEADER.size + length
        pending = chunk if kind in (_FULL, _FIRST) else pending + chunk
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def _set_item(target: dict[str, Any], item: Any) -> None:
    keys = list(item.nested_key) or [item.key]
    for k in keys[:-1]:
        target = target.setdefault(k, {})
    target[keys[-1]] = json.loads(item.value_json)


@dataclass
class WandbAttempt:
    """What one attempt of an offline W&B run logged (one ``offline-run-*`` folder): the run's id, its
    config, ``history`` as ``{step: {key: value}}`` (an image is a dict with ``_type: image-file`` and its
    ``path`` under the folder's ``files/``), and the exit code it finished with."""

    folder: Path
    run_id: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: dict[int, dict[str, Any]] = field(default_factory=dict)
    exit_code: int | None = None


def read_wandb_offline(run_dir: str | Path) -> list[WandbAttempt]:
    """Every offline W&B attempt under ``<run_dir>/wandb/``, oldest first, read from its transaction log.

    ``run.finish()`` returns before W&B's service has written all of an offline run's records; this
    stops the service first (``wandb.teardown``, the next ``wandb.init`` starts a new one), which writes them.
    """
    import wandb

    wandb.teardown()
    attempts = []
    for folder in sorted(Path(run_dir).glob("wandb/offline-run-*")):
        attempt = WandbAttempt(folder)
        for log in folder.glob("run-*.wandb"):
            for record in wandb_records(log):
                kind = record.WhichOneof("record_type")
                if kind == "run":
                    attempt.run_id = record.run.run_id
                    for item in record.run.config.update:
                        _set_item(attempt.config, item)
                elif kind == "config":
                    for item in record.config.update:
                        _set_item(attempt.config, item)
                elif kind == "history":
                    row: dict[str, Any] = {}
                    for item in record.history.item:
                        _set_item(row, item)
                    attempt.history.setdefault(int(row["_step"]), {}).update(row)
                elif kind == "exit":
                    attempt.exit_code = record.exit.exit_code
        attempts.append(attempt)
    return attempts
