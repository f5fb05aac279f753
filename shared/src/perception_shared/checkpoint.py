"""Atomic checkpoints, read back with ``weights_only=True``, and the files a run keeps.

A save writes a temporary file in the same directory, fsyncs it, renames it over the target and fsyncs
the directory: a crash or a kill at any moment leaves either the old or the new checkpoint, never a
half-written one under the real name.

Files in a run directory (only rank 0 writes them):

* ``last.pth``: the newest state (every epoch, and on preemption mid-epoch); what ``--resume`` reads;
* ``checkpoint_epoch_N.pth``: every ``every`` epochs, the newest ``keep_last`` kept;
* ``best_model.pth``: the model with the best monitored validation metric;
* ``final_model.pth``: the model at the end of training (these two keep no optimizer, scheduler, scaler
  or RNG state: ``model_only``; they are for evaluate, predict, export and ``--init-from``);
* ``frozen/<sha256>.pth``: frozen parameters that are not pretrained weights (a frozen random-init
  backbone), written once per run and referred to by every checkpoint that needs them (``frozen``).

A checkpoint holds what training changes. Frozen pretrained weights are recorded by identifier and
sha256 only; ``restore_model`` loads a checkpoint into a model built again with those weights and checks
the hash. ``load_checkpoint`` reads the run's frozen file back into ``state["model"]`` (a missing or
altered file is a CheckpointError naming it); ``consolidate_checkpoint`` writes a copy that needs no
``frozen/`` folder. Checkpoints written before this (a complete ``model``) load unchanged.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .distributed import is_main_process
from .errors import CheckpointError
from .frozen import (
    FROZEN_FORMAT,
    PRETRAINED,
    RUN,
    combined_sha256,
    frozen_file_name,
    pretrained_identifier,
    split_state,
    state_sha256,
    tensor_sha256,
)

LAST = "last.pth"
BEST = "best_model.pth"
FINAL = "final_model.pth"
EPOCH_PATTERN = "checkpoint_epoch_{epoch}.pth"
_EPOCH_RE = re.compile(r"checkpoint_epoch_(\d+)\.pth$")
# What each kind of frozen-tensor reference must name.
_REF_KEYS = {RUN: {"file", "keys", "sha256"}, PRETRAINED: {"identifier", "prefix", "keys", "sha256"}}


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some file systems do not allow opening directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def describe_load_error(e: Exception) -> str:
    """A one-line reason for a failed ``torch.load``, without torch's advice to turn off weights_only."""
    text = str(e)
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()
        detail_line = next((line.strip() for line in detail if line.strip()), "").split(" was not an allowed")[0]
        return f"truncated, or holds pickled objects other than tensors and plain values ({detail_line})"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a missing, truncated or foreign file is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated or non-checkpoint files
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable: {describe_load_error(e)}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a checkpoint dict")
    if "frozen" not in state:  # a checkpoint from before frozen references, or a plain state dict
        return state
    refs = state["frozen"] or []
    if not isinstance(refs, list) or not all(
        isinstance(r, dict) and r.get("kind") in _REF_KEYS and _REF_KEYS[r["kind"]] <= r.keys() for r in refs
    ):
        raise CheckpointError(f"checkpoint {path}: its 'frozen' entry is not a list of frozen-tensor references")
    for ref in refs:
        if ref.get("kind") == RUN:
            state["model"].update(_read_frozen_file(path.parent / ref["file"], ref, path))
    state["frozen"] = [ref for ref in refs if ref.get("kind") != RUN]
    return state


def _read_frozen_file(path: Path, ref: dict[str, Any], checkpoint: Path) -> dict[str, torch.Tensor]:
    """The tensors of a run's frozen file, checked against the checkpoint's reference to it."""
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {checkpoint} keeps {len(ref['keys'])} frozen tensors in {path}, which does not exist: a "
            "checkpoint copied out of its run directory needs the run's frozen/ folder beside it (or a copy made "
            "self-contained with perception_shared.checkpoint.consolidate_checkpoint)"
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated or non-checkpoint files
        raise CheckpointError(f"frozen tensors file {path} of checkpoint {checkpoint} is unreadable: {describe_load_error(e)}") from None
    tensors = data.get("tensors") if isinstance(data, dict) else None
    if not isinstance(tensors, dict) or sorted(tensors) != sorted(ref["keys"]):
        raise CheckpointError(f"frozen tensors file {path} does not hold the tensors checkpoint {checkpoint} refers to")
    actual = state_sha256(tensors)
    if actual != ref["sha256"]:
        raise CheckpointError(
            f"frozen tensors file {path} was altered: its tensors hash to sha256 {actual}, "
            f"but checkpoint {checkpoint} was saved with {ref['sha256']}"
        )
    return tensors


def uses_pretrained(state: dict[str, Any]) -> bool:
    """Whether a loaded checkpoint refers to frozen pretrained weights (build its model with them)."""
    return any(ref.get("kind") == PRETRAINED for ref in state.get("frozen") or [])


def restore_model(
    model: nn.Module, state: dict[str, Any], source: str | Path, *, new_keys: Callable[[str], bool] | None = None
) -> list[str]:
    """Load the weights of checkpoint ``state`` (from ``load_checkpoint``) into ``model``, strictly.

    ``model`` is built as the checkpoint's config says; where the checkpoint refers to frozen pretrained
    weights (``uses_pretrained``), with those weights, and their sha256 must be the one recorded at save.
    ``new_keys``: the model's tensors the checkpoint may lack because the model adds them (e.g. networks a
    later training stage puts on top); they keep their initialization and are returned.
    """
    own = model.state_dict()
    covered: set[str] = set()
    for ref in state.get("frozen") or []:
        keys = list(ref["keys"])
        lacking = [k for k in keys if k not in own]
        if lacking:
            raise CheckpointError(
                f"checkpoint {source} refers to {ref['identifier']} weights at {lacking[0]}, which the model built here lacks"
            )
        actual = combined_sha256({k: tensor_sha256(own[k]) for k in keys})
        if actual != ref["sha256"]:
            built_with = pretrained_identifier(model.get_submodule(ref["prefix"]))
            why = (
                f"the weights found for {built_with} (in the weights cache or the file the config names) are not the ones training used"
                if built_with is not None
                else "it was built without pretrained weights: build it with them when uses_pretrained(state)"
            )
            raise CheckpointError(
                f"checkpoint {source} was trained on frozen {ref['identifier']} weights with sha256 {ref['sha256']} "
                f"({len(keys)} tensors under {ref['prefix'] or 'the model'!r}), but the model built here holds other "
                f"weights there (sha256 {actual}): {why}"
            )
        covered.update(keys)
    try:
        result = model.load_state_dict(state["model"], strict=False)
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {source} does not fit this model: {e}") from None
    added = [k for k in result.missing_keys if k not in covered and new_keys is not None and new_keys(k)]
    missing = [k for k in result.missing_keys if k not in covered and k not in added]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"checkpoint {source} does not fit this model: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    return added


def consolidate_checkpoint(path: str | Path, out: str | Path) -> Path:
    """Write checkpoint ``path`` as ``out`` with its run's frozen tensors inside, to copy or share alone.

    References to pretrained weights stay references (the weights cache supplies them on load).
    """
    return atomic_save(load_checkpoint(path), out)


# What only continuing a run needs; best_model.pth and final_model.pth are for evaluate, predict, export
# and --init-from, and leave it out (an Adam state is twice the size of the weights it trains).
RESUME_ONLY = ("optimizer", "scheduler", "scaler", "rng", "epoch_means")


def model_only(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` without what only resuming needs (``RESUME_ONLY``); the model, config, history and
    extra entries stay."""
    return {k: v for k, v in state.items() if k not in RESUME_ONLY}


def require_resumable(state: dict[str, Any], source: str | Path) -> None:
    """A CheckpointError when ``state`` is a best/final model file, which cannot continue a run."""
    lacking = [k for k in RESUME_ONLY if k not in state]
    if lacking:
        raise CheckpointError(
            f"checkpoint {source} holds the model only (best_model.pth and final_model.pth keep no {', '.join(lacking)}): "
            f"resume from {LAST} or a checkpoint_epoch_N.pth of the same run"
        )


class CheckpointManager:
    """Writes and finds the checkpoints of one run directory."""

    def __init__(self, directory: str | Path, *, keep_last: int = 3, every: int = 1, enabled: bool | None = None) -> None:
        if keep_last < 1:
            raise ValueError("keep_last must be at least 1")
        if every < 1:
            raise ValueError("checkpoint every must be at least 1 epoch")
        self.directory = Path(directory)
        self.keep_last = keep_last
        self.every = every
        self.enabled = is_main_process() if enabled is None else enabled

    @property
    def last_path(self) -> Path:
        return self.directory / LAST

    @property
    def best_path(self) -> Path:
        return self.directory / BEST

    @property
    def final_path(self) -> Path:
        return self.directory / FINAL

    def model_state(self, module: nn.Module) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """``(model, frozen)`` entries of a checkpoint of ``module``: the state training changes, and
        references to the frozen tensors (see ``perception_shared.frozen``). Frozen parameters that are
        not pretrained weights are written to the run's ``frozen/<sha256>.pth`` first, once."""
        stored, refs, run_frozen = split_state(module)
        if run_frozen:
            digest = state_sha256(run_frozen)
            name = frozen_file_name(digest)
            ref = {"kind": RUN, "file": name, "keys": sorted(run_frozen), "sha256": digest}
            if self.enabled and not (self.directory / name).is_file() and not self._link_sibling(name, ref):
                atomic_save({"format": FROZEN_FORMAT, "sha256": digest, "tensors": run_frozen}, self.directory / name)
            refs.append(ref)
        return stored, refs

    def _link_sibling(self, name: str, ref: dict[str, Any]) -> bool:
        """Hard-link the same frozen file from a sibling run (runs of one study that share a seed share a
        random-init backbone), checked first; False when there is none or links are not possible here."""
        for other in sorted(self.directory.parent.glob(f"*/{name}")):
            if other.parent.parent == self.directory:
                continue
            try:
                _read_frozen_file(other, ref, self.directory / name)
            except CheckpointError:
                continue
            (self.directory / name).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(other, self.directory / name)
            except OSError:  # another file system, or one without hard links: write our own copy
                return False
            _fsync_dir((self.directory / name).parent)
            return True
        return False

    def epoch_path(self, epoch: int) -> Path:
        return self.directory / EPOCH_PATTERN.format(epoch=epoch)

    def epoch_checkpoints(self) -> list[tuple[int, Path]]:
        """``(epoch, path)`` of the periodic checkpoints, newest first."""
        found = []
        for p in self.directory.glob("checkpoint_epoch_*.pth"):
            m = _EPOCH_RE.search(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found, reverse=True)

    def save_last(self, state: dict[str, Any]) -> Path | None:
        return atomic_save(state, self.last_path) if self.enabled else None

    def save_epoch(self, state: dict[str, Any], epoch: int, *, force: bool = False) -> Path | None:
        """Save ``state`` as last.pth and, every ``every`` epochs (or when ``force``), as checkpoint_epoch_N.pth."""
        if not self.enabled:
            return None
        last = atomic_save(state, self.last_path)
        if not force and epoch % self.every != 0:
            return last
        # A separate copy, not a hard link: damage to last.pth on disk must leave this one readable.
        target = atomic_save(state, self.epoch_path(epoch))
        for _, old in self.epoch_checkpoints()[self.keep_last :]:
            old.unlink(missing_ok=True)
        _fsync_dir(self.directory)
        return target

    def save_best(self, state: dict[str, Any]) -> Path | None:
        return atomic_save(model_only(state), self.best_path) if self.enabled else None

    def save_final(self, state: dict[str, Any]) -> Path | None:
        return atomic_save(model_only(state), self.final_path) if self.enabled else None

    def candidates(self) -> list[Path]:
        """Checkpoints to resume from, newest first: last.pth, then the periodic ones."""
        out = [self.last_path] if self.last_path.is_file() else []
        out += [p for _, p in self.epoch_checkpoints()]
        return out

    def load_latest(
        self, map_location: str | torch.device = "cpu", warn: Callable[[str], None] | None = None
    ) -> tuple[Path, dict[str, Any]] | None:
        """The newest readable checkpoint, or None when there is none.

        A corrupt file is reported by name through ``warn`` and the next older one is tried; if every
        file is corrupt, that is a CheckpointError listing them.
        """
        problems = []
        for path in self.candidates():
            try:
                return path, load_checkpoint(path, map_location)
            except CheckpointError as e:
                problems.append(str(e))
                if warn is not None:
                    warn(f"{e}; trying the previous checkpoint")
        if problems:
            raise CheckpointError("no readable checkpoint in " + str(self.directory) + ": " + "; ".join(problems))
        return None
