"""The package's data API: one split in the format the config names, and the training dataset.

The native format lives in ``sequences`` (what a split file holds, its checks and frame rendering);
readers of other formats stand on it and convert to it (``original_data`` for the study's own files).
``load_split_data`` picks the reader ``data.format`` names, so this module sits above both and neither
imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from perception_shared.badinput import BadInputPolicy
from perception_shared.errors import DataError

from .original_data import load_original
from .sequences import UNKNOWN_MOTION, load_sequences, pixel_indices, split_path

__all__ = ["SparseVideoDataset", "load_split_data"]


def load_split_data(cfg: Any, split: str, policy: BadInputPolicy | None = None, root: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Read and check one split as the ``data`` config (``DataConfig``) describes it, in either format.

    Returns the file's path and the native dict (``coordinates`` as x, y with pixel centres at integers,
    ``masks``, ``size``, optional ``motion`` and ``meta``). The loaders and ``validate-data`` both use it.
    """
    root = root if root is not None else cfg.root
    if cfg.format == "original":
        path = split_path(root, split, cfg.original.files)
        return path, load_original(path, cfg.original, policy)
    path = split_path(root, split)
    return path, load_sequences(path, policy)


class SparseVideoDataset(Dataset):
    """Sequences of one split file as (past frames, future frames) pairs.

    Sample ``i`` is a dict:

    * ``"inputs"``: ``(n_input, 1, S, S)`` float32 frames ``0 .. n_input - 1``;
    * ``"targets"``: ``(n_output, 1, S, S)`` float32 frames ``n_input .. n_input + n_output - 1``;
    * ``"input_mask"`` ``(n_input,)`` and ``"target_mask"`` ``(n_output,)`` bool: frames with a point;
    * ``"target_pixels"``: ``(n_output, 2)`` long ``(row, col)`` of the target point (-1 where invalid);
    * ``"motion"``: ``(n_output,)`` long motion codes of the target frames (-1 when unknown);
    * ``"index"``: ``i``.

    Frames are rendered in ``__getitem__`` (no augmentation, so no randomness).
    """

    def __init__(
        self,
        path: str | Path,
        n_input: int = 10,
        n_output: int = 10,
        policy: BadInputPolicy | None = None,
        *,
        data: dict[str, Any] | None = None,
        first_frames: bool = False,
    ) -> None:
        self.path = Path(path)
        data = data if data is not None else load_sequences(self.path, policy)
        T = data["coordinates"].shape[1]
        window = n_input + n_output
        if T != window and not (first_frames and T > window):
            raise DataError(
                f"{self.path}: sequences have {T} frames but the config asks for n_input + n_output = "
                f"{n_input} + {n_output} = {window}"
            )
        if T > window:  # the study's files: inputs are frames [0, n_input), targets the n_output after them
            data = {**data, "coordinates": data["coordinates"][:, :window], "masks": data["masks"][:, :window]}
            if data.get("motion") is not None:
                data["motion"] = data["motion"][:, :window]
        self.n_input, self.n_output = n_input, n_output
        self.size = int(data["size"])
        self.coordinates = data["coordinates"].float()
        self.masks = data["masks"]
        motion = data.get("motion")
        self.motion = motion.long() if motion is not None else torch.full(self.masks.shape, UNKNOWN_MOTION, dtype=torch.long)
        self.has_motion = motion is not None
        self.meta = data.get("meta", {})
        # The points were checked on load: each sample only places its ones (the loader must outpace a GPU).
        self.pixels = torch.where(self.masks[..., None], pixel_indices(torch.nan_to_num(self.coordinates)), -1)

    def __len__(self) -> int:
        return len(self.coordinates)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        mask, pixels = self.masks[index], self.pixels[index]
        frames = torch.zeros(len(mask), 1, self.size, self.size)
        t = torch.nonzero(mask).flatten()
        frames[t, 0, pixels[t, 0], pixels[t, 1]] = 1.0
        k = self.n_input
        return {
            "inputs": frames[:k],
            "targets": frames[k:],
            "input_mask": mask[:k].clone(),
            "target_mask": mask[k:].clone(),
            "target_pixels": pixels[k:].clone(),
            "motion": self.motion[index, k:].clone(),
            "index": index,
        }

