"""convert-eve's frames/s with 1 and 2 worker processes against PyAV's decode-only frames/s on the same videos.

    python benchmarks/convert_speed.py --out convert_speed.json [--raw DIR] [--repeats 3] [--every 6]

A frame is one label row: one face frame and one eye frame, both decoded. ``decode-only`` decodes both
videos of every stimulus folder in one process, one decoder thread each as convert-eve does, and does
nothing with the frames (the floor of convert-eve
in one process); ``decode-only 2 processes`` decodes the participants in two processes (what the machine
gives two processes at the time, others' load included); ``convert`` is ``convert_eve`` into an empty
output folder, its wall time from start to end including the worker processes' start. Goals (issue 22):
1 worker >= 0.8 of decode-only, 2 workers >= 1.6 x 1 worker on 2 cores.

Without ``--raw`` it writes a synthetic raw EVE set (``--participants`` train folders of ``--steps`` stimulus
folders of ``--frames`` frames at the release's patch sizes, 256 and 2 x 128 px, H.264 as in
``synthetic_eve``) into ``--workdir``, or reuses the one there. Rendering is slow, so each video cycles
through ``POOL`` rendered scenes with fresh sensor noise on every frame. Two tiny ``val`` participants
warm up the worker processes' server (it imports h5py and av once) before any timing. The load
average is recorded with every measurement: on a shared machine it decides the numbers. The repeats
interleave the four measurements; the summary is each ratio's median over the repeats, and for 1 worker
(which converts in this process) also the ratio of CPU times, which other processes' load disturbs least.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import shutil
import time
from collections.abc import Callable
from itertools import zip_longest
from pathlib import Path

import av
import h5py
import numpy as np

from gaze_estimation.convert import convert_eve, usable_cpus
from gaze_estimation.eve_layout import LABEL_GROUP, participant_folders, step_files, stimulus_folders
from gaze_estimation.synthetic_eve import (
    RELEASE_EYE_SIZE,
    RELEASE_FACE_SIZE,
    participant_truth,
    render_patches,
    step_names,
    write_video,
)

POOL = 48  # rendered scenes per participant, cycled through with fresh noise
NOISE_SD = 3.0  # grey levels of sensor noise per frame


def noisy(images: np.ndarray, order: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """``images[order]`` with fresh sensor noise on each, uint8."""
    return [np.clip(images[i] + rng.normal(0, NOISE_SD, images[i].shape), 0, 255).astype(np.uint8) for i in order]


def write_raw_set(root: Path, *, participants: int, steps: int, frames: int, seed: int = 0) -> None:
    """Raw EVE layout: ``train01..`` with ``steps`` stimulus folders of ``frames`` frames, ``val01``/``val02`` tiny."""
    for split, count, n in (("train", participants, frames), ("val", 2, 8)):
        for k in range(count):
            rng = np.random.default_rng([seed, k, split == "val"])
            truth = participant_truth(seed, "train", k, steps=1, frames=POOL)[1]
            face, eyes = render_patches(truth.params, None, face_size=RELEASE_FACE_SIZE, eye_size=RELEASE_EYE_SIZE)
            for name in step_names(steps)[1:]:
                folder = root / f"{split}{k + 1:02d}" / name
                folder.mkdir(parents=True, exist_ok=True)
                order = rng.integers(0, POOL, n)
                labels, face_video, eyes_video = step_files(folder, "basler")
                with h5py.File(labels, "w") as f:
                    f[f"{LABEL_GROUP}/data"] = truth.gaze[order]
                    f[f"{LABEL_GROUP}/validity"] = np.ones(n, bool)
                write_video(face_video, noisy(face, order, rng))
                write_video(eyes_video, noisy(eyes, order, rng))


def load() -> float:
    """The 1-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def cpu_s() -> float:
    """CPU seconds of this process (the worker processes are the forkserver's children, not counted)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def label_rows(raw: Path) -> int:
    total = 0
    for folder in participant_folders(raw, ("train",)):
        for step in stimulus_folders(folder):
            with h5py.File(step_files(step, "basler")[0], "r") as f:
                total += len(f[LABEL_GROUP]["data"])
    return total


def decode_participant(folder: Path) -> int:
    """Decode both videos of every stimulus folder, as convert-eve does; returns the face frames decoded."""
    n = 0
    for step in stimulus_folders(folder):
        _, face, eyes = step_files(step, "basler")
        with av.open(str(face)) as fc, av.open(str(eyes)) as ec:
            for c in (fc, ec):
                c.streams.video[0].thread_count = 1  # as convert-eve decodes
            for ff, _ef in zip_longest(fc.decode(video=0), ec.decode(video=0)):
                n += ff is not None
    return n


def timed(what: str, fn: Callable[[], object], frames: int) -> tuple[dict, object]:
    """``fn()`` timed: a row with wall and CPU seconds (of this process) and the load average; its result."""
    load_before, cpu0, t0 = load(), cpu_s(), time.perf_counter()
    result = fn()
    wall = time.perf_counter() - t0
    cpu = cpu_s() - cpu0
    row = {"what": what, "frames": frames, "wall_s": round(wall, 3), "frames_per_s": round(frames / wall, 1),
           "cpu_s_this_process": round(cpu, 2), "load_before": load_before, "load_after": load()}
    print(json.dumps(row), flush=True)
    return row, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output JSON")
    parser.add_argument("--raw", default=None, help="a raw EVE root to measure on (its train* participants)")
    parser.add_argument("--workdir", default="convert_speed_work", help="where the synthetic set and the outputs go")
    parser.add_argument("--participants", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--frames", type=int, default=1000, help="frames per stimulus folder")
    parser.add_argument("--every", type=int, default=6, help="keep every N-th frame (default 6, EVE's 10 Hz)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("PERCEPTION_NO_PROGRESS", "1")
    work = Path(args.workdir)
    raw = Path(args.raw) if args.raw else work / "raw"
    if args.raw is None and not (raw / "val02").is_dir():
        t0 = time.perf_counter()
        shutil.rmtree(raw, ignore_errors=True)
        write_raw_set(raw, participants=args.participants, steps=args.steps, frames=args.frames)
        print(f"wrote the synthetic raw set in {time.perf_counter() - t0:.0f} s", flush=True)
    frames = label_rows(raw)
    out = work / "h5"
    if (raw / "val01").is_dir() and (raw / "val02").is_dir():  # start the worker server before timing
        convert_eve(raw, out, splits=("val",), every=args.every, workers=2, force=True)
    folders = participant_folders(raw, ("train",))
    pool = multiprocessing.get_context("fork").Pool(2)  # started before timing: the machine's own 2-process ceiling
    runs = []
    for r in range(args.repeats):
        row, decoded = timed("decode-only", lambda: sum(map(decode_participant, folders)), frames)
        if decoded != frames:
            raise SystemExit(f"decoded {decoded} face frames, the labels have {frames} rows")
        runs.append({"repeat": r, **row})
        row, _ = timed("decode-only 2 processes", lambda: sum(pool.map(decode_participant, folders, chunksize=1)), frames)
        runs.append({"repeat": r, **row})
        for workers in (1, 2):
            shutil.rmtree(out / "train", ignore_errors=True)  # a fresh conversion, not a rerun
            row, _ = timed(
                f"convert {workers} worker(s)",
                lambda w=workers: convert_eve(raw, out, splits=("train",), every=args.every, workers=w),
                frames,
            )
            runs.append({"repeat": r, "workers": workers, **row})
    ratios = []
    for r in range(args.repeats):
        rows = {row["what"]: row for row in runs if row["repeat"] == r}
        fps = {what: row["frames_per_s"] for what, row in rows.items()}
        one, two = fps["convert 1 worker(s)"], fps["convert 2 worker(s)"]
        ratios.append({
            "repeat": r, "one_worker_over_decode": round(one / fps["decode-only"], 3), "two_over_one_worker": round(two / one, 3),
            "decode_two_over_one_process": round(fps["decode-only 2 processes"] / fps["decode-only"], 3),
            # 1 worker converts in this process, so its CPU time is measured too: what others' load disturbs least
            "one_worker_over_decode_cpu": round(rows["decode-only"]["cpu_s_this_process"] / rows["convert 1 worker(s)"]["cpu_s_this_process"], 3),
        })
        print(f"repeat {r}: 1 worker / decode-only = {ratios[-1]['one_worker_over_decode']:.2f} (goal >= 0.8; by CPU time "
              f"{ratios[-1]['one_worker_over_decode_cpu']:.2f}), 2 workers / 1 worker = {ratios[-1]['two_over_one_worker']:.2f} "
              f"(goal >= 1.6; decode-only in 2 processes / 1: {ratios[-1]['decode_two_over_one_process']:.2f})")
    pool.close()
    loads = [row[k] for row in runs for k in ("load_before", "load_after")]
    medians = {k: float(np.median([r[k] for r in ratios])) for k in ratios[0] if k != "repeat"}
    print("median over repeats: " + ", ".join(f"{k} {v:.3f}" for k, v in medians.items()) + f"; load {min(loads):.2f}-{max(loads):.2f}")
    result = {
        "machine": {"cpus_usable": usable_cpus(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "av": av.__version__},
        "data": {"raw": str(raw), "synthetic": args.raw is None, "frames": frames, "every": args.every,
                 "participants": len(folders)},
        "runs": runs, "ratios": ratios, "median_ratios": medians, "load_range": [min(loads), max(loads)],
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
