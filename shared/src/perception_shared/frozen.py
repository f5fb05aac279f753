"""Frozen tensors kept out of checkpoints: a checkpoint holds what training changes (issue 23).

At each save ``split_state`` divides a model's state three ways:

* tensors of a module built by ``perception_shared.pretrained`` that still equal the weights as loaded
  (frozen parameters and buffers; the builder records each tensor's sha256 on the module with
  ``tag_pretrained``) are not stored: the checkpoint records ``{"kind": "pretrained", "identifier",
  "prefix", "keys", "sha256"}``, and ``restore_model`` checks that the model built again from the weights
  cache holds exactly those tensors;
* the other frozen parameters (``requires_grad`` False: a frozen random-init backbone, an encoder frozen
  for the first epochs) go to ``frozen/<sha256>.pth`` in the run directory, written once (the name is the
  hash of its content) and never removed by checkpoint rotation; the checkpoint records ``{"kind": "run",
  "file", "keys", "sha256"}`` and ``load_checkpoint`` reads the file back into ``state["model"]``;
* everything else (trainable parameters, buffers) stays in ``state["model"]``.

The split is decided at each save, so a parameter frozen for some epochs and trained afterwards is
referenced while it is frozen and stored once it trains. Buffers are referenced only when they equal
pretrained weights: a batch-norm layer in train mode changes its statistics even when its parameters
are frozen. Hashes cover each tensor's key, dtype, shape and bytes, so a sha256 names the tensors
exactly, wherever they come from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

FROZEN_DIR = "frozen"
FROZEN_FORMAT = "perception-lab-frozen/1"
PRETRAINED = "pretrained"
RUN = "run"
# The attribute ``tag_pretrained`` sets on a module: {"identifier": str, "tensors": {key: sha256}}.
_TAG = "perception_pretrained_weights"


def tensor_sha256(t: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes (on the CPU, contiguous)."""
    t = t.detach().to("cpu").contiguous()
    h = hashlib.sha256(f"{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def combined_sha256(digests: Mapping[str, str]) -> str:
    """One sha256 over ``key -> tensor_sha256`` pairs (sorted by key)."""
    h = hashlib.sha256()
    for key in sorted(digests):
        h.update(f"{key}={digests[key]};".encode())
    return h.hexdigest()


def state_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """The sha256 of a set of named tensors (what references in checkpoints record)."""
    return combined_sha256({k: tensor_sha256(v) for k, v in tensors.items()})


def tag_pretrained(module: nn.Module, identifier: str) -> None:
    """Record on ``module`` the sha256 of each tensor of its state as loaded from ``identifier``'s weights."""
    digests = {k: tensor_sha256(v) for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}
    setattr(module, _TAG, {"identifier": identifier, "tensors": digests})


def pretrained_identifier(module: nn.Module) -> str | None:
    """The identifier of the weights ``module`` was built with by ``perception_shared.pretrained``, if any."""
    tag = getattr(module, _TAG, None)
    return None if tag is None else tag["identifier"]


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def split_state(module: nn.Module) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, torch.Tensor]]:
    """``(stored, pretrained_refs, run_frozen)``: the state to store in the checkpoint, the references to
    frozen pretrained tensors (not stored at all), and the other frozen parameters (for the run's file)."""
    state = module.state_dict(keep_vars=True)

    def frozen(value: Any) -> bool:
        return isinstance(value, torch.Tensor) and not value.requires_grad

    refs = []
    covered: set[str] = set()
    for prefix, sub in module.named_modules():
        tag = getattr(sub, _TAG, None)
        if tag is None:
            continue
        digests = {}
        for name, digest in tag["tensors"].items():
            key = _key(prefix, name)
            if key not in covered and frozen(state.get(key)) and tensor_sha256(state[key]) == digest:
                digests[key] = digest
        if digests:
            covered |= digests.keys()
            refs.append(
                {"kind": PRETRAINED, "identifier": tag["identifier"], "prefix": prefix, "keys": sorted(digests),
                 "sha256": combined_sha256(digests)}
            )
    run_frozen = {
        k: v.detach() for k, v in state.items() if k not in covered and isinstance(v, nn.Parameter) and not v.requires_grad
    }
    stored = {
        k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in state.items() if k not in covered and k not in run_frozen
    }
    return stored, refs, run_frozen


def frozen_file_name(sha256: str) -> str:
    """Where, relative to the run directory, the frozen tensors with this sha256 are kept."""
    return f"{FROZEN_DIR}/{sha256}.pth"
