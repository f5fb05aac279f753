"""Deterministic gaze traces shared by the fixation-extraction tests and the Octave reference fixture.

``tests/data/checkfixations_octave.json`` holds the fixations that the MIT1003 release's
``checkFixations.m``, run in GNU Octave 7.3, returned for ``reference_traces()`` (x, y median and the
first and last sample, 1-based). Regenerating the traces must give the same arrays, so this generator
must not change without regenerating the fixture.
"""

from __future__ import annotations

import numpy as np


def _trace(
    rng: np.random.Generator, n_fix: int, noise: float, blink: bool, nan: bool, end_in_saccade: bool
) -> np.ndarray:
    samples = []
    current = np.array([512.0, 384.0])
    for i in range(n_fix):
        dwell = int(rng.integers(3, 120))
        if i:
            target = current + rng.normal(0, rng.choice([5.0, 30.0, 200.0]), 2)
            amplitude = float(np.linalg.norm(target - current))
            n = max(2, int(round((21 + 2.2 * amplitude / 34) * 0.24 * rng.uniform(0.5, 2))))
            t = np.arange(1, n + 1) / n
            s = 10 * t**3 - 15 * t**4 + 6 * t**5
            samples.append(current + s[:, None] * (target - current))
            current = target
        samples.append(current + rng.normal(0, noise, (dwell, 2)))
    if end_in_saccade:
        t = np.arange(1, 8) / 8
        samples.append(current + t[:, None] * np.array([300.0, 100.0]))
    a = np.concatenate(samples)
    if blink and len(a) > 40:
        i = int(rng.integers(0, len(a) - 20))
        a[i : i + int(rng.integers(3, 20))] = -rng.uniform(1, 50)
    if nan and len(a) > 40:
        i = int(rng.integers(0, len(a) - 20))
        a[i : i + int(rng.integers(1, 10))] = np.nan
    # the values as written with 6 decimals for Octave and parsed back
    return np.array([float(f"{v:.6f}") for v in a.ravel()]).reshape(a.shape)


def reference_traces(count: int = 60, seed: int = 2024) -> list[np.ndarray]:
    """Varied traces: fixations of 3-120 samples, saccades of 5-200 px, noise, blinks, NaN gaps."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        kind = k % 6
        out.append(
            _trace(
                rng,
                n_fix=int(rng.integers(1, 14)),
                noise=float(rng.choice([0.2, 1.0, 3.0, 8.0])),
                blink=kind in (1, 4),
                nan=kind in (2, 4),
                end_in_saccade=kind == 3,
            )
        )
    return out
