"""Synthetic gaze-like point sequences with a known motion model, written in the real on-disk format.

Each sequence is a point on a ``size x size`` grid, one frame per 40 ms (25 Hz), moving as an eye does:

* **fixation**: the point holds still for 3-12 frames (120-480 ms);
* **saccade**: a jump of 5-14 pixels in a uniformly random direction, completed within one frame; every
  fixation ends with one, and pursuit ends with one half of the time (else the eye just stops);
* **smooth pursuit**: constant velocity of 0.6-1.5 pixels/frame in a random direction for 5-15 frames (200-600 ms),
  bouncing off the border; after a saccade, pursuit follows with probability 0.3, a fixation otherwise;
* **track loss**: one sequence in five has a gap of 1-3 frames with no point (mask False), as in blinks.

What is predictable from the 10 past frames: a fixation continuing (the point stays) and a pursuit
continuing (the point keeps its velocity). What is not: when a saccade starts (fixation durations are
drawn uniformly, so the onset is a hazard, not a clock) and where it lands (direction and amplitude are
random). An ideal predictor is therefore exact on held and pursued frames and can only spread its
probability over plausible landing sites after a saccade. The ``motion`` field records, per frame, how
the point got there (0 fixation, 1 pursuit, 2 saccade), so evaluation can report the two parts apart.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .config import OriginalFormatConfig
from .original_data import write_original
from .sequences import SPLITS, save_sequences

FIXATION, PURSUIT, SACCADE = 0, 1, 2


@dataclass(frozen=True)
class MotionParams:
    """Motion model in grid pixels and frames (inclusive ranges)."""

    fixation_frames: tuple[int, int] = (3, 12)
    saccade_px: tuple[float, float] = (5.0, 14.0)
    pursuit_speed_px: tuple[float, float] = (0.6, 1.5)
    pursuit_frames: tuple[int, int] = (5, 15)
    p_pursuit_after_saccade: float = 0.3
    p_saccade_after_pursuit: float = 0.5
    p_track_loss: float = 0.2
    track_loss_frames: tuple[int, int] = (1, 3)
    margin_px: float = 1.0
    frame_ms: float = 40.0


def _in_bounds(p: np.ndarray, lo: float, hi: float) -> bool:
    return bool(np.all(p >= lo) and np.all(p <= hi))


def generate_sequence(rng: np.random.Generator, frames: int, size: int, params: MotionParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sequence: ``(coordinates (T, 2) as (x, y), masks (T,) bool, motion (T,) int8)``."""
    lo, hi = params.margin_px, size - 1 - params.margin_px
    coords = np.zeros((frames, 2))
    motion = np.zeros(frames, dtype=np.int8)
    pos = rng.uniform(lo, hi, size=2)
    velocity = np.zeros(2)

    def start_pursuit() -> tuple[np.ndarray, int]:
        angle = rng.uniform(0, 2 * math.pi)
        speed = rng.uniform(*params.pursuit_speed_px)
        return speed * np.array([math.cos(angle), math.sin(angle)]), int(rng.integers(params.pursuit_frames[0], params.pursuit_frames[1] + 1))

    def saccade_target(p: np.ndarray) -> np.ndarray:
        for _ in range(100):
            angle = rng.uniform(0, 2 * math.pi)
            amp = rng.uniform(*params.saccade_px)
            target = p + amp * np.array([math.cos(angle), math.sin(angle)])
            if _in_bounds(target, lo, hi):
                return target
        return np.clip(p + rng.uniform(-1, 1, size=2) * params.saccade_px[0], lo, hi)

    # Sequences start inside a segment, so the first onset is not aligned with frame 0.
    state = PURSUIT if rng.random() < params.p_pursuit_after_saccade else FIXATION
    if state == PURSUIT:
        velocity, full = start_pursuit()
    else:
        full = int(rng.integers(params.fixation_frames[0], params.fixation_frames[1] + 1))
    remaining = int(rng.integers(1, full + 1))
    for t in range(frames):
        label = state
        if t > 0:
            if remaining == 0:
                jump = state == FIXATION or rng.random() < params.p_saccade_after_pursuit
                if jump:
                    pos = saccade_target(pos)
                    state = PURSUIT if rng.random() < params.p_pursuit_after_saccade else FIXATION
                    label = SACCADE
                else:
                    state = FIXATION  # pursuit stops where it is
                    label = FIXATION
                if state == PURSUIT:
                    velocity, remaining = start_pursuit()
                else:
                    remaining = int(rng.integers(params.fixation_frames[0], params.fixation_frames[1] + 1))
            elif state == PURSUIT:
                pos = pos + velocity
                for d in range(2):  # bounce off the border
                    if pos[d] < lo:
                        pos[d], velocity[d] = 2 * lo - pos[d], -velocity[d]
                    elif pos[d] > hi:
                        pos[d], velocity[d] = 2 * hi - pos[d], -velocity[d]
                label = PURSUIT
            else:
                label = FIXATION
        coords[t] = pos
        motion[t] = label
        remaining -= 1
    masks = np.ones(frames, dtype=bool)
    if rng.random() < params.p_track_loss:
        gap = int(rng.integers(params.track_loss_frames[0], params.track_loss_frames[1] + 1))
        start = int(rng.integers(0, frames - gap + 1))
        masks[start : start + gap] = False
    return coords, masks, motion


def generate_split(n: int, frames: int, size: int, seed: int | np.random.SeedSequence, params: MotionParams | None = None) -> dict[str, torch.Tensor]:
    """``n`` sequences as tensors: ``coordinates (n, T, 2)``, ``masks (n, T)``, ``motion (n, T)``."""
    params = params or MotionParams()
    rng = np.random.default_rng(seed)
    out = [generate_sequence(rng, frames, size, params) for _ in range(n)]
    return {
        "coordinates": torch.from_numpy(np.stack([o[0] for o in out])).float(),
        "masks": torch.from_numpy(np.stack([o[1] for o in out])),
        "motion": torch.from_numpy(np.stack([o[2] for o in out])),
    }


def make_synthetic(
    out: str | Path,
    *,
    n_train: int = 1000,
    n_val: int = 200,
    n_test: int = 200,
    frames: int = 20,
    size: int = 32,
    seed: int = 0,
    params: MotionParams | None = None,
    original: OriginalFormatConfig | None = None,
) -> dict[str, Path]:
    """Write ``train.pt``, ``val.pt``, ``test.pt`` under ``out``; returns ``{split: path}``.

    With ``original`` (an ``OriginalFormatConfig``), write the study's format instead: the files, keys and
    coordinate convention it names (by default ``train_data.pt``, ... with ``coordinates`` as (row, col)
    grid pixels with pixel ``i`` covering ``[i, i + 1)`` and a float ``fixation_mask``), so the original
    loader can be tested end to end.

    The three splits come from independent streams of one seed, so changing ``n_train`` leaves val and
    test unchanged.
    """
    if min(n_train, n_val, n_test) < 1:
        raise ValueError(f"every split needs at least one sequence, got train={n_train}, val={n_val}, test={n_test}")
    if frames < 2:
        raise ValueError(f"frames must be at least 2, got {frames}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    params = params or MotionParams()
    streams = np.random.SeedSequence(seed).spawn(len(SPLITS))
    paths = {}
    for split, n, stream in zip(SPLITS, (n_train, n_val, n_test), streams):
        data = generate_split(n, frames, size, stream, params)
        if original is not None:
            if original.size != size:
                raise ValueError(f"the original format's grid size ({original.size}) differs from size ({size})")
            paths[split] = write_original(Path(out) / getattr(original.files, split), data["coordinates"], data["masks"], original,
                                          motion=data["motion"])
            continue
        meta = {"source": "synthetic", "seed": seed, "split": split, "frame_rate_hz": 1000.0 / params.frame_ms}
        meta.update({k: list(v) if isinstance(v, tuple) else v for k, v in asdict(params).items()})
        paths[split] = save_sequences(Path(out) / f"{split}.pt", data["coordinates"], data["masks"], size, motion=data["motion"], meta=meta)
    return paths
