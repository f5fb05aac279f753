"""SimVP training-step time, peak memory and parameter count at the default shape; loss overhead vs MSE.

Run:  python packages/sparse-video-loss/benchmarks/train_step.py --out bench.json [--device auto]

Measures, in one run and on one device:

* for SimVP-IncepU and SimVP-gSTA at in_shape (10, 1, 32, 32), hid_S 64, hid_T 256, N_S 4, N_T 8 and
  batch 8: parameters, median wall time of a full training step (forward, composite loss, backward,
  Adam step), samples per second, and peak memory (CUDA: ``max_memory_allocated``; CPU: growth of the
  process's peak resident set while the model trains, each model in a fresh process);
* for every loss: median time of its forward + backward on ``(8, 10, 1, 32, 32)`` logits, as a ratio to
  MSE's and as a share of the IncepU training step.

The JSON names the device and the torch version. Default sizes keep a CPU run under 3 minutes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from perception_shared.benchmarking import device_name
from sparse_video_loss.losses import LOSSES, get_loss_function
from sparse_video_loss.models import SimVP, count_parameters

IN_SHAPE = (10, 1, 32, 32)
SIZES = {"hid_S": 64, "hid_T": 256, "N_S": 4, "N_T": 8}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sparse_batch(batch: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets with one active pixel per frame, as the real data."""
    g = torch.Generator().manual_seed(seed)
    T, C, H, W = IN_SHAPE
    frames = torch.zeros(batch, 2 * T, C, H, W)
    idx = torch.randint(H * W, (batch, 2 * T), generator=g)
    frames.view(batch, 2 * T, -1).scatter_(2, idx[..., None], 1.0)
    return frames[:, :T].to(device), frames[:, T:].to(device)


def measure_model(model_type: str, device_str: str, batch: int, warmup: int, steps: int, threads: int) -> dict[str, Any]:
    """Train ``steps`` steps after ``warmup`` and report times and peak memory (run in its own process on CPU)."""
    torch.set_num_threads(threads)
    device = torch.device(device_str)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.manual_seed(0)
    model = SimVP(IN_SHAPE, model_type=model_type, **SIZES).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    loss_fn = get_loss_function("composite")
    x, y = sparse_batch(batch, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(warmup + steps):
        sync(device)
        start = time.perf_counter()
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024  # ru_maxrss is KiB on Linux
        kind = "cpu peak RSS growth"
    median = statistics.median(times)
    return {
        "parameters": count_parameters(model),
        "step_time_s": median,
        "step_times_s": times,
        "samples_per_s": batch / median,
        "peak_memory_mib": peak,
        "peak_memory_kind": kind,
    }


def measure_losses(device: torch.device, batch: int, reps: int) -> dict[str, float]:
    """Median seconds of forward + backward of each loss on sparse targets.

    The losses take turns within every repetition, so a change in machine load hits all of them alike.
    """
    _, targets = sparse_batch(batch, device, seed=1)
    logits = torch.randn(targets.shape, device=device).requires_grad_()
    fns = {name: get_loss_function(name) for name in LOSSES}
    times: dict[str, list[float]] = {name: [] for name in LOSSES}
    for i in range(reps + 3):
        for name, fn in fns.items():
            logits.grad = None
            sync(device)
            start = time.perf_counter()
            fn(logits, targets).backward()
            sync(device)
            if i >= 3:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output JSON file")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model (default: 3 on CPU, 20 on CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 1 on CPU, 5 on CUDA)")
    parser.add_argument("--loss-reps", type=int, default=200, help="timed repetitions per loss")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no CUDA device")
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    steps = args.steps or (20 if device.type == "cuda" else 3)
    warmup = args.warmup if args.warmup is not None else (5 if device.type == "cuda" else 1)
    torch.set_num_threads(args.threads)

    models = {}
    for model_type in ("incepu", "gsta"):
        params = (model_type, str(device), args.batch_size, warmup, steps, args.threads)
        if device.type == "cpu":  # a fresh process per model, so peak RSS belongs to that model alone
            with mp.get_context("spawn").Pool(1) as pool:
                models[model_type] = pool.apply(measure_model, params)
        else:
            models[model_type] = measure_model(*params)
        print(f"{model_type}: {models[model_type]['parameters']} parameters, step {models[model_type]['step_time_s']:.3f} s, "
              f"peak {models[model_type]['peak_memory_mib']:.0f} MiB", flush=True)
    loss_times = measure_losses(device, args.batch_size, args.loss_reps)
    step = models["incepu"]["step_time_s"]
    losses = {
        name: {"time_ms": 1000 * t, "ratio_vs_mse": t / loss_times["mse"], "share_of_incepu_step": t / step}
        for name, t in loss_times.items()
    }
    result = {
        "benchmark": "sparse-video-loss train_step",
        "device": device_name(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "threads": args.threads if device.type == "cpu" else None,
        "batch_size": args.batch_size,
        "in_shape": list(IN_SHAPE),
        "model_sizes": SIZES,
        "timed_steps": steps,
        "warmup_steps": warmup,
        "models": models,
        "ratios": {"gsta_vs_incepu_step_time": models["gsta"]["step_time_s"] / step},
        "loss_overhead": losses,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, v in losses.items():
        print(f"loss {name:<14} {v['time_ms']:8.2f} ms  x{v['ratio_vs_mse']:.2f} of MSE  {100 * v['share_of_incepu_step']:.2f}% of a step")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
