"""Synthetic participants watching stimuli at 10 Hz: gaze that moves as people's does, frames that are noisy.

``make-synthetic --sequences`` writes files in the training format with ``step_index``, ``frame_index``
(in 60 Hz camera frames, every 6th kept, as ``convert-eve --every 6`` writes EVE) and ``every``, so the
temporal model's loader reads them as it reads converted EVE.

Within a stimulus step (one video: lighting, background and sensor noise level fixed) the gaze is a
sequence of **fixations** of ``fixation_s`` seconds (uniform, 0.2-1 s: 2-10 frames at 10 Hz) on targets
drawn as ``synthetic.sample_params`` draws gaze, with a small random-walk **drift** inside a
fixation, and **saccades** between them (shorter than a frame at 10 Hz, so a jump from one frame to the
next). The head wanders slowly and independently of the gaze (an AR(1) process), so that it carries no
information about the gaze and the optimum below is exact. The label is the true gaze.

Each frame carries heavy independent noise: the iris and pupil are drawn ``pupil_jitter_deg`` (std per
axis) away from the true gaze, and with ``blink_prob`` the eyes are closed (the lids hide iris and
pupil); each crop is misaligned by ``crop_jitter`` (as data normalization's landmark noise would). A single frame can at best shrink its noisy reading towards the population mean, and must guess
the mean in a blink; a causal temporal model can average the readings of the current fixation and carry
them through blinks. ``expected_errors`` computes both by Monte Carlo from these settings (the best
linear estimators; the temporal one sees a new fixation at its first frame with open eyes, which
saccades much larger than the jitter nearly give away, and carries a stale one through a saccade hidden
by a blink), and so the margin a temporal model can win with a perfect frame reader.

Each file also holds the ground truth of the noise, per frame: ``eyes_open`` (0 in a blink) and
``fixation_index`` (the fixation's number within its step). ``context_margin`` applies the same causal
filter to a trained single-frame model's predictions on such a file: the margin that context can win
on top of that model's own readings, whatever part of its error is independent from frame to frame.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from perception_shared.logging import get_logger, progress

from .h5format import H5Writer
from .metrics import per_sample_errors
from .sequences import TIME_KEYS
from .synthetic import SceneParams, participant_jobs, render_sample, sample_params, sample_participant

_log = get_logger("gaze_estimation.synthetic_sequences")
CAMERA_HZ = 60.0  # EVE's basler camera; frames are kept every EVERY-th, as convert-eve does
EVERY = 6
TRUTH_KEYS = ("eyes_open", "fixation_index")  # per-frame ground truth of the noise, beside the time keys
# the fixation targets' distribution (as synthetic.sample_params draws gaze), radians
PITCH_MEAN, PITCH_STD, PITCH_RANGE = -0.05, 0.16, (-0.5, 0.4)
YAW_MEAN, YAW_STD, YAW_RANGE = 0.0, 0.28, (-0.75, 0.75)


@dataclass(frozen=True)
class SequenceNoise:
    """How gaze moves and how noisy single frames are."""

    pupil_jitter_deg: float = 5.0  # std per axis of where the iris is drawn around the true gaze
    blink_prob: float = 0.3  # probability that a frame shows closed eyes
    fixation_s: tuple[float, float] = (0.2, 1.0)
    drift_deg: float = 0.15  # std per axis of the drift per frame inside a fixation
    crop_jitter: float = 1.2  # std (scene units = face-crop px) of each crop's misalignment per frame, as sample_params
    head_std: tuple[float, float] = (0.06, 0.1)  # head pitch, yaw std (radians) of the AR(1) wander
    head_rho: float = 0.9  # the wander's correlation from frame to frame

    def __post_init__(self) -> None:
        if min(self.pupil_jitter_deg, self.drift_deg, self.crop_jitter) < 0 or not 0 <= self.blink_prob < 1 or not 0 <= self.head_rho < 1:
            raise ValueError(f"SequenceNoise: jitter and drift >= 0, blink_prob and head_rho in [0, 1) are required, got {self}")
        lo, hi = self.fixation_s
        if not 0 < lo <= hi:
            raise ValueError(f"SequenceNoise.fixation_s must be an increasing pair of positive seconds, got {self.fixation_s}")


def fixation_targets(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, 2)`` pitch/yaw radians of fixation targets."""
    pitch = np.clip(rng.normal(PITCH_MEAN, PITCH_STD, n), *PITCH_RANGE)
    yaw = np.clip(rng.normal(YAW_MEAN, YAW_STD, n), *YAW_RANGE)
    return np.stack([pitch, yaw], axis=1)


def gaze_sequence(rng: np.random.Generator, n: int, noise: SequenceNoise, fps: float = CAMERA_HZ / EVERY) -> tuple[np.ndarray, np.ndarray]:
    """``n`` frames of true gaze ``(n, 2)`` radians and ``(n,)`` bool, true where a fixation starts."""
    gaze = np.zeros((n, 2))
    onset = np.zeros(n, dtype=bool)
    t = 0
    while t < n:
        frames = max(1, int(round(rng.uniform(*noise.fixation_s) * fps)))
        drift = np.cumsum(rng.normal(0.0, np.radians(noise.drift_deg), (frames, 2)), axis=0)
        gaze[t : t + frames] = (fixation_targets(rng, 1) + drift)[: n - t]
        onset[t] = True
        t += frames
    return gaze, onset


def step_params(
    rng: np.random.Generator, n: int, appearance: dict[str, np.ndarray], noise: SequenceNoise
) -> tuple[SceneParams, np.ndarray, np.ndarray]:
    """The scenes of one stimulus step of ``n`` frames (what is rendered), its true gaze ``(n, 2)`` and
    ``(n,)`` fixation onsets."""
    base = sample_params(rng, n, appearance)
    gaze, onset = gaze_sequence(rng, n, noise)
    shown = gaze + rng.normal(0.0, np.radians(noise.pupil_jitter_deg), gaze.shape)
    head = np.zeros((n, 2))
    std = np.asarray(noise.head_std)
    head[0] = rng.normal(0.0, std)
    for t in range(1, n):
        head[t] = noise.head_rho * head[t - 1] + np.sqrt(1 - noise.head_rho**2) * rng.normal(0.0, std)
    one_video = {k: np.repeat(getattr(base, k)[:1], n, axis=0) for k in ("light_x", "light_y", "ambient", "diffuse", "background", "noise")}
    crop = {k: rng.normal(0.0, noise.crop_jitter, n).astype(np.float32) for k in ("face_du", "face_dv", "leye_du", "leye_dv", "reye_du", "reye_dv")}
    f32 = np.float32
    params = replace(
        base, **one_video, **crop,
        gaze_pitch=shown[:, 0].astype(f32), gaze_yaw=shown[:, 1].astype(f32),
        head_pitch=head[:, 0].astype(f32), head_yaw=head[:, 1].astype(f32),
        openness=(rng.random(n) >= noise.blink_prob).astype(f32),
    )
    return params, gaze.astype(f32), onset


def make_synthetic_sequences(
    out: str | Path,
    *,
    train_participants: int = 4,
    val_participants: int = 2,
    steps: int = 4,
    frames_per_step: int = 16,
    seed: int = 0,
    camera: str = "basler",
    noise: SequenceNoise | None = None,
    chunk: int = 32,
) -> list[Path]:
    """Write participants of ``steps`` stimulus steps of ``frames_per_step`` frames each (10 Hz); returns the files.

    Participant ``k`` of a split is drawn from ``(seed, split, k)`` alone. Each file records the noise
    settings (attribute ``sequence_noise``, JSON) beside ``every``, ``steps`` and ``source``, and the
    per-frame truth ``eyes_open`` and ``fixation_index``.
    """
    if train_participants < 1 or val_participants < 0 or steps < 1 or frames_per_step < 1:
        raise ValueError("make_synthetic_sequences needs at least one training participant, one step and one frame per step")
    noise = noise or SequenceNoise()
    written = []
    jobs = participant_jobs(out, train_participants, val_participants, camera, seed, streams=(3, 4))
    for rng, path in progress(jobs, desc="synthetic sequences"):
        appearance = sample_participant(rng)
        with H5Writer(path, extra=(*TIME_KEYS, *TRUTH_KEYS)) as w:
            for s in range(steps):
                params, gaze, onset = step_params(rng, frames_per_step, appearance, noise)
                fixation = np.cumsum(onset) - 1
                for a in range(0, frames_per_step, chunk):
                    rows = slice(a, min(a + chunk, frames_per_step))
                    r = render_sample(params.subset(rows), rng)
                    frame = np.arange(rows.start, rows.stop, dtype=np.int64) * EVERY
                    w.append(
                        r["face"], r["leye"], r["reye"], gaze[rows], step_index=np.full(len(frame), s, np.int64), frame_index=frame,
                        eyes_open=params.openness[rows].astype(np.int64), fixation_index=fixation[rows],
                    )
            w.file.attrs["every"] = EVERY
            w.file.attrs["steps"] = [f"step{s:03d}_synthetic" for s in range(steps)]
            w.file.attrs["source"] = "gaze-estimation make-synthetic --sequences"
            w.file.attrs["sequence_noise"] = str(asdict(noise))
        written.append(path)
    _log.info("wrote %d synthetic sequence participants (%d steps x %d frames at 10 Hz) under %s", len(written), steps, frames_per_step, Path(out))
    return written


def fixation_means(readings: np.ndarray, eyes_open: np.ndarray, fixation: np.ndarray, position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The causal filter of a temporal model that knows what the generator knows about each frame.

    For every frame: the mean of the ``(N, 2)`` readings of the open-eyed frames of the latest fixation
    seen with open eyes, counted from the start of the frame's window (``position`` 0) up to the frame,
    and how many there were ``(N,)``. A fixation is seen when an open-eyed frame of it arrives, so in a
    blink the filter carries the last fixation seen, also when a saccade hid in the blink. Frames are in
    time order.
    """
    means, counts = np.zeros_like(readings, dtype=np.float64), np.zeros(len(readings), dtype=np.int64)
    total, n, current = np.zeros(readings.shape[1]), 0, -1
    for t in range(len(readings)):
        if position[t] == 0:
            total, n, current = np.zeros(readings.shape[1]), 0, -1
        if eyes_open[t]:
            if fixation[t] != current:
                total, n, current = np.zeros(readings.shape[1]), 0, fixation[t]
            total, n = total + readings[t], n + 1
        means[t], counts[t] = (total / n if n else total), n
    return means, counts


def expected_errors(noise: SequenceNoise | None = None, *, window: int = 16, n_windows: int = 20000, seed: int = 0) -> dict[str, float]:
    """The mean angular error (degrees) of the best single-frame and causal temporal estimators, and the margin.

    Monte Carlo over windows of ``window`` frames of this module's gaze process, read with the jitter
    alone (a perfect frame reader). Single frame: the noisy reading shrunk towards the targets' mean
    (``w = s^2 / (s^2 + j^2)`` per axis, ``s`` the targets' std, ``j`` the jitter), the mean in a blink.
    Temporal: the ``fixation_means`` of the readings, shrunk likewise with ``j^2 / n``; the mean while
    no fixation has been seen. Drift is left out of both estimators (it is small against the jitter).
    """
    noise = noise or SequenceNoise()
    rng = np.random.default_rng(seed)
    prior = fixation_targets(rng, 200000)
    mu, var = prior.mean(axis=0), prior.var(axis=0)
    jit = np.radians(noise.pupil_jitter_deg) ** 2
    truth, reading, open_, fixation = [], [], [], []
    for _ in range(n_windows):
        gaze, onset = gaze_sequence(rng, window, noise)
        truth.append(gaze)
        reading.append(gaze + rng.normal(0.0, np.sqrt(jit), gaze.shape))
        open_.append(rng.random(window) >= noise.blink_prob)
        fixation.append(np.cumsum(onset))
    t_all, r_all, o_all = np.concatenate(truth), np.concatenate(reading), np.concatenate(open_)
    means, counts = fixation_means(r_all, o_all, np.concatenate(fixation), np.tile(np.arange(window), n_windows))
    single = np.where(o_all[:, None], mu + var / (var + jit) * (r_all - mu), mu)
    temporal = np.where(counts[:, None] > 0, mu + var / (var + jit / np.maximum(counts, 1)[:, None]) * (means - mu), mu)
    s_err = float(per_sample_errors(single, t_all).mean())
    t_err = float(per_sample_errors(temporal, t_all).mean())
    return {"single_frame_deg": s_err, "temporal_deg": t_err, "margin_deg": s_err - t_err}


def context_margin(predictions: np.ndarray, truth: np.ndarray, eyes_open: np.ndarray, fixation: np.ndarray, position: np.ndarray) -> dict[str, float]:
    """What context can win on top of a single-frame model's own readings (degrees).

    ``predictions`` ``(N, 2)`` of a single-frame model on frames in time order with their ``truth``,
    ``eyes_open``, ``fixation_index`` (the file's ground truth) and ``position`` in the evaluation
    window. The filtered estimate is the ``fixation_means`` of the predictions (the frame's own
    prediction while no fixation has been seen): the frame model's readings averaged over the current
    fixation and carried through blinks. Averaging removes only the part of the model's error that is
    independent from frame to frame; what it gets wrong for a whole fixation (a participant's
    appearance) stays, so unlike a margin computed from the generator's jitter this one does not assume
    the model's errors average away.
    """
    means, counts = fixation_means(predictions, eyes_open, fixation, position)
    filtered = np.where(counts[:, None] > 0, means, predictions)
    s_err = float(per_sample_errors(predictions, truth).mean())
    t_err = float(per_sample_errors(filtered, truth).mean())
    return {"single_frame_deg": s_err, "temporal_deg": t_err, "margin_deg": s_err - t_err}


def readings_from_predictions(predictions_csv: str | Path, window: int) -> dict[str, np.ndarray]:
    """A single-frame run's ``predictions.csv`` (one row per frame: ``file``, ``row``, ``pitch``, ``yaw``,
    ``true_pitch``, ``true_yaw``) in time order, with each frame's truth from its sequence file
    (``eyes_open``, ``fixation_index``) and its position in evaluation's windows (``window`` frames from
    each stimulus step's first frame): the arguments of ``context_margin``."""
    by_file: dict[str, list[dict[str, str]]] = {}
    with open(predictions_csv, newline="") as f:
        for r in csv.DictReader(f):
            by_file.setdefault(r["file"], []).append(r)
    out: dict[str, list[Any]] = {"predictions": [], "truth": [], "eyes_open": [], "fixation": [], "position": []}
    for file, rs in sorted(by_file.items()):
        with h5py.File(file, "r") as h:
            eyes_open, fixation, step = h["eyes_open"][()], h["fixation_index"][()], h["step_index"][()]
        starts = np.r_[0, np.flatnonzero(np.diff(step)) + 1]
        step_start = starts[np.searchsorted(starts, np.arange(len(step)), side="right") - 1]
        for r in sorted(rs, key=lambda r: int(r["row"])):
            i = int(r["row"])
            out["predictions"].append([float(r["pitch"]), float(r["yaw"])])
            out["truth"].append([float(r["true_pitch"]), float(r["true_yaw"])])
            out["eyes_open"].append(eyes_open[i])
            out["fixation"].append(fixation[i])
            out["position"].append((i - step_start[i]) % window)
    return {k: np.asarray(v) for k, v in out.items()}
