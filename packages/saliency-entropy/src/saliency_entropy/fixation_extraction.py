"""Fixations from MIT1003's raw eye-tracking samples, in pure Python (no MATLAB or Octave).

MIT1003 (Judd et al., ICCV 2009) ships the raw gaze of each subject on each image as
``DATA/<subject>/<image stem>.mat``. Each file holds one MATLAB variable named after the image stem
(cut to MATLAB's 63-character limit), a struct whose field ``DATA(1).eyeData`` is an (N, 2) array of
gaze samples (x, y) in image pixels, recorded at 240 Hz; negative values are blinks. The release's
``checkFixations.m`` (B. Hidalgo-Sotelo, 2006) turns samples into fixations; pysaliency runs it in
MATLAB/Octave. ``check_fixations`` below is a line-by-line port of its acceleration-based detector,
including its quirks, so that the fixations are the ones the MATLAB code gives:

1. ``posChange``: distance between successive samples (0 for the first); smoothed by a causal
   4-sample moving average (MATLAB ``filter(ones(1,4)/4, 1, .)``).
2. ``accel(k)``, for 1-based k in 2..N-5: the difference of two overlapping 5-sample window sums of the
   smoothed change, each divided by 4/240 s (samples elsewhere are 0).
3. Samples with ``accel > 34 px/deg * 6 deg/s = 204`` are grouped into runs of consecutive samples;
   isolated samples and 2-sample runs are dropped. Each run is a candidate saccade (start, end).
4. A candidate is kept if within 25 samples after its end ``accel`` falls below -204 at a sample whose
   successor does not; that sample ends the saccade. (A trial may end in a saccade only if it is the
   single candidate and ends at the last non-zero ``accel``.)
5. Saccades less than 50 ms (12 samples) apart are merged; a final fixation shorter than that is
   absorbed into the last saccade.
6. Fixations are the stretches between saccades; each one's position is the median of its non-NaN
   samples. Without any saccade the whole trial is one fixation (NaN-median of all samples).

Checked against the MATLAB code run in GNU Octave 7.3 on 4,400 generated traces (noise, blinks, NaN
gaps, trials ending in a saccade): identical fixations, except that a 1-sample trace ends at sample 1
here where MATLAB's ``length`` of a 1x2 matrix reports 2. ``tests/data/checkfixations_octave.json``
keeps a set of those reference outputs.

``mit1003_fixations`` then applies the standard MIT1003 protocol (Judd et al.; pysaliency): the first
fixation is dropped (the forced central fixation on the cross before the image), and fixations outside
the image (``0 < x < width``, ``0 < y < height``, which also removes blinks and NaN) are discarded.
Coordinates are kept as recorded (pysaliency's convention); ``floor(x)`` is the pixel column.

``mit1003_scanpath`` keeps the order and the initial fixation, as pysaliency's
``get_mit1003_with_initial_fixation(replace_initial_invalid_fixations=True)`` (the data DeepGaze III's
scanpath model is trained on): the first fixation as recorded, or the image center (W / 2, H / 2) when it
lies outside the image, then the fixations inside the image in order. Its fixations after the first are
exactly ``mit1003_fixations``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.io import loadmat
from scipy.signal import lfilter

from perception_shared.errors import DataError

SAMPLING_RATE = 240.0  # Hz, the MIT1003 eye tracker
PX_PER_DEG = 34.0
ACCEL_DEG_PER_S = 6.0
ACCEL_CRIT = PX_PER_DEG * ACCEL_DEG_PER_S
WIN_SIZE = 4
STEP_SIZE = 1
MIN_FIXATION_MS = 50.0
MIN_FIXATION_SAMPLES = round(MIN_FIXATION_MS * SAMPLING_RATE / 1000)  # 12
DECEL_SEARCH = 25  # samples searched for the deceleration that ends a saccade
MATLAB_NAME_MAX = 63


@dataclass(frozen=True)
class Fixation:
    """One detected fixation: median position (pixels), first and last sample (1-based, inclusive)."""

    x: float
    y: float
    start: int
    end: int

    @property
    def duration_ms(self) -> float:
        return 1000.0 * (self.end - self.start + 1) / SAMPLING_RATE


def _acceleration(data: np.ndarray) -> np.ndarray:
    """``accel`` of checkFixations.m: (N,) with index k-1 holding MATLAB's accel(k)."""
    n = len(data)
    pos_change = np.concatenate([[0.0], np.hypot(np.diff(data[:, 0]), np.diff(data[:, 1]))])
    smoothed = lfilter(np.ones(WIN_SIZE) / WIN_SIZE, 1.0, pos_change)
    accel = np.zeros(n)
    last = n - WIN_SIZE - STEP_SIZE  # MATLAB loops k = 2 : N-winSize-stepSize
    if last < 2:
        return accel
    window = WIN_SIZE / SAMPLING_RATE
    # sums(k-1) = sum(posChangeSM(k:k+winSize)): windows of winSize + 1 samples, as in the MATLAB code
    sums = np.lib.stride_tricks.sliding_window_view(smoothed, WIN_SIZE + 1).sum(axis=1)
    k = np.arange(2, last + 1)
    accel[k - 1] = sums[k - 1 + STEP_SIZE] / window - sums[k - 1] / window
    return accel


def _candidate_runs(above: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Steps 3 of the module docstring: (sample values, labels 3=start/1=inside/2=end) of kept runs.

    ``above`` holds the 1-based samples whose acceleration exceeds the criterion. Returns None where
    checkFixations.m quits to its no-saccade branch.
    """
    m = len(above)
    if m < 3:
        return None
    d = np.diff(above)
    continuing = np.flatnonzero(d == 1)  # the next sample follows directly: same run
    ends = np.flatnonzero(d > 1)  # the last sample before a gap
    lone = ends[1:][np.diff(ends) == 1]  # a sample with gaps on both sides
    last_continues = above[-1] - above[-2] == 1
    if last_continues:
        continuing = np.append(continuing, m - 1)
    else:
        lone = np.append(lone, m - 1)
    labels = np.zeros(m, dtype=np.int64)
    labels[continuing] = 1
    labels[ends] = 2
    labels[lone] = 3
    if last_continues:
        labels[-1] = 2
        rows = m
    else:  # a lone last sample is dropped, and with it the gap before it
        rows = m - 1
        ends = ends[:-1]
    values, labels = above[:rows].copy(), labels[:rows]
    labels[ends + 1] = 3  # the sample after a gap starts a run
    if labels[0] == 1:
        labels[0] = 3

    keep: list[int] = []
    if labels[0] == 3 and labels[1] == 1:
        keep.append(0)
    for i in range(1, rows - 1):
        if labels[i] == 3:
            if labels[i + 1] == 1:
                keep.append(i)
        elif labels[i] == 1:
            keep.append(i)
        elif labels[i] == 2 and labels[i - 1] == 1 and labels[i + 1] == 3:
            keep.append(i)
        if i == rows - 2:
            last_kept = values[keep[-1]] if keep else 0
            if values[rows - 1] - last_kept == 1:
                keep.append(rows - 1)
    if len(keep) < 3:
        return None
    return values[keep], labels[keep]


def check_fixations(eye_data: np.ndarray) -> list[Fixation]:
    """Port of the MIT1003 release's ``checkFixations.m``: fixations in a 240 Hz gaze trace.

    ``eye_data``: (N, >=2) samples, columns x and y in pixels (NaN allowed). Returns the fixations in
    temporal order, including the first (forced central) one.
    """
    data = np.asarray(eye_data, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] < 2:
        raise ValueError(f"eye data must be an (N, 2) array of x, y samples, got shape {data.shape}")
    data = data[:, :2]
    n = len(data)
    if n == 0:
        return []
    accel = _acceleration(data)
    saccades = _saccades(accel, n)
    if saccades is None:
        return [_fixation(data, 1, n)]
    labels = np.zeros(n + 1, dtype=np.int64)  # 1-based; index 0 unused
    for start, _ in saccades:
        labels[start] = 3
    for _, end in saccades:
        labels[end] = 2
    for start, end in saccades:
        labels[start + 1 : end] = 1
    lab = labels[1:]
    fix_samples = np.flatnonzero(lab == 0) + 1
    if n - len(fix_samples) < 3 or len(fix_samples) == 0:
        return [_fixation(data, 1, n)]
    sac_starts = np.flatnonzero(lab == 3) + 1
    sac_ends = np.flatnonzero(lab == 2) + 1
    ends_in_saccade = sac_ends[-1] == n
    if len(sac_starts) == 1:
        starts = [fix_samples[0]] + ([] if ends_in_saccade else [sac_ends[0] + 1])
    else:
        starts = [fix_samples[0]] + list(sac_ends[:-1] + 1) + ([] if ends_in_saccade else [sac_ends[-1] + 1])
    first_is_saccade = sac_starts[0] == 1
    ends = list(sac_starts[1:] - 1 if first_is_saccade else sac_starts - 1)
    if not ends_in_saccade:
        ends.append(n)
    return [_fixation(data, int(s), int(e)) for s, e in zip(starts, ends)]


def _saccades(accel: np.ndarray, n: int) -> list[tuple[int, int]] | None:
    """Steps 3-5: the (start, end) samples (1-based) of the detected saccades, or None for none."""
    above = np.flatnonzero(accel > ACCEL_CRIT) + 1
    runs = _candidate_runs(above)
    if runs is None:
        return None
    values, labels = runs
    run_ends = np.flatnonzero(labels == 2)
    run_starts = np.flatnonzero(labels == 3)
    if len(run_ends) != len(run_starts):  # cannot happen for the runs built above
        raise RuntimeError("checkFixations port: unpaired saccade starts and ends")
    nonzero = np.flatnonzero(accel != 0)
    last_nonzero = nonzero[-1] + 1 if len(nonzero) else 0

    def below(samples: np.ndarray) -> np.ndarray:
        return accel[samples - 1] < -ACCEL_CRIT

    good: list[int] = []
    decel_end: list[int] = []
    for j, pos in enumerate(run_ends):
        check = np.array([values[pos] + 1, values[pos] + 2])
        cross = below(check)
        remaining, time_ok = DECEL_SEARCH, True
        while not (cross[0] and not cross[1]) and time_ok:
            check = check + 1
            cross = below(check)
            remaining -= 1
            time_ok = check.max() < n and remaining > 0
        if time_ok:
            good.append(j)
            decel_end.append(int(check[0]))
        elif np.all(values[run_ends] == last_nonzero):  # MATLAB: `if vector == scalar` needs all true
            good.append(j)
            decel_end.append(len(accel))
    if not good:
        return None
    starts = values[run_starts[good]]
    ends = np.array(decel_end)
    if len(good) > 1:
        too_short = np.flatnonzero(starts[1:] - ends[:-1] <= MIN_FIXATION_SAMPLES)
        keep_starts = np.setdiff1d(np.arange(len(good)), too_short + 1)
        keep_ends = np.setdiff1d(np.arange(len(good)), too_short)
        starts, merged_ends = starts[keep_starts], ends[keep_ends]
    else:
        merged_ends = ends[-1:]
    merged_ends = merged_ends.copy()
    if n - ends[-1] <= MIN_FIXATION_SAMPLES:
        merged_ends[-1] = n
    return [(int(s), int(e)) for s, e in zip(starts, merged_ends)]


def _fixation(data: np.ndarray, start: int, end: int) -> Fixation:
    chunk = data[start - 1 : end]
    with np.errstate(all="ignore"):
        xs, ys = chunk[:, 0], chunk[:, 1]
        x = float(np.median(xs[~np.isnan(xs)])) if (~np.isnan(xs)).any() else float("nan")
        y = float(np.median(ys[~np.isnan(ys)])) if (~np.isnan(ys)).any() else float("nan")
    return Fixation(x, y, start, end)


def matlab_variable_name(stem: str) -> str:
    """The variable a DATA/<subject>/<stem>.mat file stores its struct under (MATLAB cuts at 63 chars)."""
    return stem[:MATLAB_NAME_MAX]


class BadFileError(DataError):
    """A data file that cannot be used; ``path`` and ``problem`` are kept for ``BadInputPolicy.report``."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def load_mat(path: str | Path) -> dict:
    """``scipy.io.loadmat`` with a BadFileError naming the file when it is damaged or not a .mat file."""
    try:
        return loadmat(path, squeeze_me=False, struct_as_record=True)
    except Exception as e:  # scipy raises several types for damaged or foreign files
        raise BadFileError(path, f"cannot read MATLAB file ({type(e).__name__}: {e})") from None


def read_eye_data(path: str | Path, stem: str | None = None) -> np.ndarray:
    """``<stem>.DATA(1).eyeData`` of an MIT1003 raw-data file as an (N, 2) float array.

    Raises BadFileError (a DataError) naming the file when it cannot be read or lacks the variable.
    """
    p = Path(path)
    name = matlab_variable_name(stem if stem is not None else p.stem)
    mat = load_mat(p)
    if name not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise BadFileError(p, f"no variable '{name}' (MIT1003 stores DATA under the image name); found {found}")
    try:
        data = mat[name]["DATA"].flat[0]
        eye = np.asarray(data["eyeData"].flat[0], dtype=np.float64)
    except (ValueError, KeyError, IndexError, TypeError):
        raise BadFileError(p, f"variable '{name}' has no DATA(1).eyeData field") from None
    if eye.size == 0:
        return np.zeros((0, 2))
    if eye.ndim != 2 or eye.shape[1] < 2:
        raise BadFileError(p, f"eyeData has shape {eye.shape}, expected (N, 2) gaze samples")
    return eye[:, :2]


def _inside(xy: np.ndarray, width: int, height: int) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (xy[:, 0] > 0) & (xy[:, 0] < width) & (xy[:, 1] > 0) & (xy[:, 1] < height)


def mit1003_scanpath(eye_data: np.ndarray, width: int, height: int) -> tuple[np.ndarray, int]:
    """One subject's scanpath on one image, initial fixation first (see the module docstring).

    Returns ``((K + 1, 2) array of x, y, number of non-initial fixations discarded as outside the image)``;
    (0, 2) for a trial without fixations.
    """
    xy = np.array([[f.x, f.y] for f in check_fixations(eye_data)], dtype=np.float64).reshape(-1, 2)
    if len(xy) == 0:
        return xy, 0
    first = xy[:1] if _inside(xy[:1], width, height)[0] else np.array([[width / 2, height / 2]])
    inside = _inside(xy[1:], width, height)
    return np.concatenate([first, xy[1:][inside]]), int((~inside).sum())


def mit1003_fixations(
    eye_data: np.ndarray, width: int, height: int, *, drop_first: bool = True
) -> tuple[np.ndarray, int]:
    """Fixations of one subject on one image, as MIT1003 is used (see the module docstring).

    Returns ``((K, 2) array of x, y, number of fixations discarded as outside the image)``.
    """
    fixations = check_fixations(eye_data)
    if drop_first:
        fixations = fixations[1:]
    xy = np.array([[f.x, f.y] for f in fixations], dtype=np.float64).reshape(-1, 2)
    inside = _inside(xy, width, height)
    return xy[inside], int((~inside).sum())
