"""NSS + AUC-Judd: our metrics vs pysaliency's on the same maps and fixations, in one process.

Inputs: 20 log-density maps of 768x1024 (smooth random fields plus a center bias, normalized; float64)
with 150 fixations each, drawn from each map's own density at distinct pixels. Our side calls
``saliency_entropy.metrics.nss`` and ``auc_judd`` on the log-density. pysaliency's side runs the code its
``SaliencyMapModel.NSS`` and ``AUC_Judd(jitter=False)`` run per image, on the density ``exp(map)`` (the
saliency map of a probabilistic model): ``pysaliency.metrics.NSS``, and ``_get_unfixated_values`` +
``roc.general_roc(judd=1)`` as in ``AUC_per_image``. Calling these directly leaves out the
Stimuli/Fixations/model wrapping of its public API, which would only add to pysaliency's time.

Passes over all maps alternate (ours, pysaliency; then pysaliency, ours; ...) after one warm-up pass
each (numba compiles pysaliency's ROC loop there); the ratio is median(pysaliency) / median(ours), by
process CPU time on one thread (a shared machine inflates wall-clock time; both are reported). Values
must agree: AUC-Judd to 1e-12 (same definition, ties included, when fixated pixels are distinct);
NSS to a relative 1e-9 after converting pysaliency's population standard deviation to the benchmark's
sample standard deviation (ours = pysaliency's * sqrt((N - 1) / N), N = pixels per map).

    python packages/saliency-entropy/benchmarks/metrics_speed.py --out metrics_speed.json [--quick]

Needs pysaliency (``pip install 'saliency-entropy[bench]'``). Default: 7 timed passes per side (about
30 s on one core); ``--quick``: 4 maps of 192x256 and 2 passes, to check that it runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--quick", action="store_true", help="4 maps of 192x256, 2 passes: a smoke run, not a figure")
    p.add_argument("--maps", type=int, default=20)
    p.add_argument("--size", type=int, nargs=2, default=[768, 1024], metavar=("H", "W"))
    p.add_argument("--fixations", type=int, default=150, help="fixations per map (default: 150)")
    p.add_argument("--repeats", type=int, default=7, help="timed passes per side (default: 7)")
    p.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads for both sides (default: 1)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.quick:
        args.maps, args.size, args.repeats = 4, [192, 256], 2
    return args


ARGS = parse_args()
# before numpy is imported: both sides single-threaded unless asked otherwise
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.ndimage import gaussian_filter  # noqa: E402
from scipy.special import logsumexp  # noqa: E402

from perception_shared.benchmarking import device_name  # noqa: E402
from saliency_entropy.metrics import auc_judd, nss  # noqa: E402

try:
    from pysaliency.metrics import NSS as pysaliency_nss
    from pysaliency.roc import general_roc
    from pysaliency.saliency_map_models import _get_unfixated_values
except ImportError as e:
    sys.exit(
        f"error: this benchmark compares with pysaliency, which is not importable ({e}); "
        "pip install 'saliency-entropy[bench]'"
    )

if not hasattr(np, "trapz"):
    # numpy 2.4 removed trapz (renamed trapezoid in 2.0); pysaliency 0.2.22's general_roc still calls it
    np.trapz = np.trapezoid  # type: ignore[attr-defined]

AUC_ATOL = 1e-12
NSS_RTOL = 1e-9


def make_inputs(n_maps: int, height: int, width: int, n_fix: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(log-density (H, W) float64, fixations (n_fix, 2) of (x, y) at distinct pixels) per map."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    center = -(((xx - width / 2) / (0.3 * width)) ** 2 + ((yy - height / 2) / (0.3 * height)) ** 2) / 2
    out = []
    for _ in range(n_maps):
        field = gaussian_filter(rng.standard_normal((height, width)), sigma=height / 24)
        raw = 2.0 * field / field.std() + center  # nats
        log_density = raw - logsumexp(raw)
        flat = rng.choice(height * width, n_fix, replace=False, p=np.exp(log_density).ravel())
        fix = np.stack([flat % width + rng.random(n_fix), flat // width + rng.random(n_fix)], axis=1)
        out.append((log_density, fix))
    return out


def ours(inputs: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[float, float]]:
    return [(nss(m, f), auc_judd(m, f)) for m, f in inputs]


def theirs(inputs: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[float, float]]:
    values = []
    for log_density, fix in inputs:
        saliency = np.exp(log_density)
        xs, ys = fix[:, 0].astype(int), fix[:, 1].astype(int)
        nss_value = float(pysaliency_nss(saliency, xs, ys).mean())
        positives = np.asarray(saliency[ys, xs]).astype(float)
        negatives = _get_unfixated_values(saliency, ys, xs).astype(float)
        values.append((nss_value, float(general_roc(positives, negatives, judd=1)[0])))
    return values


def timed(fn: Any, inputs: Any) -> tuple[float, float, Any]:
    t, c = time.perf_counter(), time.process_time()
    result = fn(inputs)
    return time.perf_counter() - t, time.process_time() - c, result


def main() -> None:
    height, width = ARGS.size
    inputs = make_inputs(ARGS.maps, height, width, ARGS.fixations, ARGS.seed)
    n_pix = height * width
    t0 = time.perf_counter()
    ours_values, theirs_values = ours(inputs), theirs(inputs)  # warm-up (numba JIT, first touch)
    warmup_s = time.perf_counter() - t0
    wall: dict[str, list[float]] = {"ours": [], "pysaliency": []}
    cpu: dict[str, list[float]] = {"ours": [], "pysaliency": []}
    sides = {"ours": ours, "pysaliency": theirs}
    for r in range(ARGS.repeats):
        for name in ("ours", "pysaliency") if r % 2 == 0 else ("pysaliency", "ours"):
            w, c, _ = timed(sides[name], inputs)
            wall[name].append(w)
            cpu[name].append(c)

    to_sample_std = math.sqrt((n_pix - 1) / n_pix)
    nss_rel = max(abs(o[0] - t[0] * to_sample_std) / abs(o[0]) for o, t in zip(ours_values, theirs_values))
    auc_abs = max(abs(o[1] - t[1]) for o, t in zip(ours_values, theirs_values))
    equal = nss_rel <= NSS_RTOL and auc_abs <= AUC_ATOL
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    med_wall = {k: statistics.median(v) for k, v in wall.items()}
    ratio = med_cpu["pysaliency"] / med_cpu["ours"]
    result = {
        "benchmark": "saliency-entropy metrics_speed: NSS + AUC-Judd, pysaliency / ours",
        "device": device_name(torch.device("cpu")),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pysaliency": metadata.version("pysaliency"),
        "threads": ARGS.threads,
        "quick": ARGS.quick,
        "maps": ARGS.maps,
        "map_size": [height, width],
        "fixations_per_map": ARGS.fixations,
        "fixations": "drawn from each map's density, distinct pixels",
        "repeats": ARGS.repeats,
        "warmup_s": warmup_s,
        "ratio_basis": "process CPU time, median over passes",
        "median_cpu_s_per_pass": med_cpu,
        "median_wall_s_per_pass": med_wall,
        "ms_per_map_cpu": {k: 1000 * v / ARGS.maps for k, v in med_cpu.items()},
        "ratio_pysaliency_to_ours": ratio,
        "ratio_wall_median": med_wall["pysaliency"] / med_wall["ours"],
        "goal_ratio": 3.0,
        "meets_goal": ratio >= 3.0,
        "values_equal": equal,
        "tolerance": {
            "auc_judd_abs": AUC_ATOL,
            "nss_rel": NSS_RTOL,
            "nss_conversion": "ours = pysaliency * sqrt((N-1)/N): sample vs population std",
        },
        "max_nss_rel_diff": nss_rel,
        "max_auc_abs_diff": auc_abs,
        "pass_cpu_s": cpu,
        "pass_wall_s": wall,
        "values": {"ours": ours_values, "pysaliency": theirs_values},
    }
    Path(ARGS.out).parent.mkdir(parents=True, exist_ok=True)
    Path(ARGS.out).write_text(json.dumps(result, indent=2))
    print(
        f"{result['device']}, {ARGS.threads} thread(s), {ARGS.maps} maps {height}x{width}, {ARGS.fixations} fixations: "
        f"pysaliency {result['ms_per_map_cpu']['pysaliency']:.1f} ms/map, ours {result['ms_per_map_cpu']['ours']:.1f} "
        f"ms/map (CPU time); ratio {ratio:.2f} (goal >= 3; wall-clock {result['ratio_wall_median']:.2f}); values "
        f"{'equal' if equal else 'DIFFER'} (NSS rel {nss_rel:.1e}, AUC abs {auc_abs:.1e})"
    )
    if not equal:
        sys.exit(1)


if __name__ == "__main__":
    main()
