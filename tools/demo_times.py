"""Time the README's demo command and the machine's load while it runs; print one table row.

    python tools/demo_times.py --label quiet               # in a fresh clone, nothing else running
    python tools/demo_times.py --label "under load" --load 2  # with 2 busy-looping processes beside it

Runs ``.venvs/nox/bin/nox -s demo`` (the README's first command, after its venv exists), samples
``/proc/loadavg`` every 5 s, and reads each package's own wall time from ``demo_outputs/<pkg>/summary.json``.
``--load N`` starts N CPU-bound processes for the duration, so that "under load" is reproducible rather
than whatever else the machine happened to do. Linux only (``/proc/loadavg``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["saliency-entropy", "gaze-estimation", "sparse-video-loss", "image-rating"]


def _spin() -> None:
    while True:
        pass


def _load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", required=True, help="the row's name, e.g. quiet or 'under load'")
    parser.add_argument("--load", type=int, default=0, help="CPU-bound processes to run beside the demo")
    parser.add_argument("--nox", default=str(ROOT / ".venvs" / "nox" / "bin" / "nox"), help="the nox executable")
    args = parser.parse_args()
    if not Path(args.nox).is_file():
        sys.exit(f"{args.nox} does not exist: create it with the README's first command once, then time again")

    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.load)]
    for p in spinners:
        p.start()
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(5.0):
            samples.append(_load1())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.monotonic()
    try:
        rc = subprocess.run([args.nox, "-s", "demo"], cwd=ROOT, env=os.environ.copy()).returncode
    finally:
        done.set()
        for p in spinners:
            p.terminate()
    total = time.monotonic() - start
    if rc != 0:
        sys.exit(f"nox -s demo failed (exit {rc}); no times recorded")
    per_package = {}
    for pkg in PACKAGES:
        summary = json.loads((ROOT / "demo_outputs" / pkg / "summary.json").read_text())
        per_package[pkg] = summary["seconds"]
    mean_load = sum(samples) / len(samples) if samples else _load1()
    row = {
        "label": args.label,
        "extra_processes": args.load,
        "cpus": os.cpu_count(),
        "load_average_1min_mean": round(mean_load, 2),
        "load_average_1min_max": round(max(samples, default=mean_load), 2),
        "total_s": round(total, 1),
        "demo_s": {k: round(v, 1) for k, v in per_package.items()},
    }
    print(json.dumps(row, indent=2))
    cells = " | ".join(f"{per_package[p]:.0f} s" for p in PACKAGES)
    print(f"| {args.label} | {mean_load:.1f} (max {row['load_average_1min_max']:.1f}) | {cells} | {total:.0f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
