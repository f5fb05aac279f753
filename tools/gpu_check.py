"""Every package's research-size model for a few training steps on one device; one JSON report.

    python tools/gpu_check.py --device cuda --out gpu_check.json      # on a machine with one CUDA GPU
    python tools/gpu_check.py --device cpu --steps 1 --out dry.json   # the dry run the tests use

Runs, per package: bf16 autocast training steps (fp32 on CPU) with sync debug mode "error" inside the
step, the loader's samples/s against the model's (the loader must be >= 2x faster), throughput and peak
memory; plus the NCCL (gloo on CPU) process group with world size 1. Exit status 1 when anything failed.
See perception_shared.gpu_check.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from pathlib import Path

import torch

from perception_shared.gpu_check import check_process_group, environment, run_check
from perception_shared.jsonio import write_json

PACKAGES = {
    "saliency-entropy": "saliency_entropy",
    "gaze-estimation": "gaze_estimation",
    "sparse-video-loss": "sparse_video_loss",
    "image-rating": "image_rating",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per model (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--packages", nargs="*", default=list(PACKAGES), choices=list(PACKAGES))
    parser.add_argument("--out", default="gpu_check.json")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda but torch sees no CUDA GPU (use --device cpu for the dry run)", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    report: dict = {"environment": environment(device), "models": [], "problems": []}
    start = time.perf_counter()
    report["process_group"] = check_process_group(device)
    report["problems"] += report["process_group"]["problems"]
    for pkg in args.packages:
        module = importlib.import_module(f"{PACKAGES[pkg]}.gpu_check")
        # a package with several research models names a builder for each (SPEC_BUILDERS)
        for builder in getattr(module, "SPEC_BUILDERS", {pkg: module.build_spec}).values():
            with tempfile.TemporaryDirectory(prefix=f"gpu_check_{pkg}_") as tmp:
                t0 = time.perf_counter()
                spec = builder(device, Path(tmp), steps=args.steps + args.warmup)
                result = run_check(spec, device, steps=args.steps, warmup=args.warmup)
                result["package"] = pkg
                result["seconds_total"] = time.perf_counter() - t0
                del spec
            if device.type == "cuda":
                torch.cuda.empty_cache()
            report["models"].append(result)
            report["problems"] += [f"{pkg}: {p}" for p in result["problems"]]
            shown = {k: result.get(k) for k in ("step_seconds", "model_samples_per_s", "loader_to_model_ratio", "peak_memory_mb")}
            print(f"{pkg}: {result['name']}: " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items() if isinstance(v, float))
                  + ("" if not result["problems"] else "  PROBLEMS: " + "; ".join(result["problems"])), flush=True)
    report["seconds"] = time.perf_counter() - start
    report["ok"] = not report["problems"]
    write_json(args.out, report)
    print(f"gpu_check: {'ok' if report['ok'] else 'FAILED'} in {report['seconds']:.0f} s -> {args.out}")
    if report["problems"]:
        print("\n".join(report["problems"]), file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
