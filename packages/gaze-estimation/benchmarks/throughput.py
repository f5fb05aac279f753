"""Data-loader throughput from HDF5 vs model training throughput, and the step time of each model.

    python packages/gaze-estimation/benchmarks/throughput.py --out throughput.json [--device auto]

1. Writes participants in the training format (random crops: reading cost does not depend on content)
   to a temporary folder and reads them through the training loader (``make_train_loader``: per-sample
   seeded augmentation, lazy per-worker HDF5 handles) with several worker counts: samples/s.
2. Times full training steps (forward, fp32 loss, backward, AdamW) of ``gazetr_tiny``,
   ``gazetr_lite`` and ``gazetr_hybrid`` at the given batch size (bf16 autocast on CUDA, fp32 on CPU):
   seconds per step (median) and samples/s.
3. Reports ``loader_over_model``: loader samples/s (best worker count) divided by each model's training
   samples/s. Above 1 the loader keeps up. On a CPU-only machine the loader and the model compete for
   the same cores, so there the ratio says little about a GPU node; run it on the GPU node to judge.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gaze_estimation.augment import AugmentConfig
from gaze_estimation.config import OptimConfig
from gaze_estimation.data import load_split, to_float
from gaze_estimation.h5format import H5Writer
from gaze_estimation.losses import gaze_loss
from gaze_estimation.models import ModelConfig, build_model, count_parameters
from gaze_estimation.train import make_optimizer
from perception_shared.benchmarking import device_name
from perception_shared.samplers import make_train_loader


def write_data(root: Path, participants: int, samples: int) -> None:
    rng = np.random.default_rng(0)
    for k in range(participants):
        with H5Writer(root / "train" / f"participant_{k:02d}" / "frames_basler.h5") as w:
            for start in range(0, samples, 64):
                b = min(64, samples - start)
                w.append(
                    rng.integers(0, 256, (b, 224, 224, 3), dtype=np.uint8),
                    rng.integers(0, 256, (b, 112, 112, 3), dtype=np.uint8),
                    rng.integers(0, 256, (b, 112, 112, 3), dtype=np.uint8),
                    rng.uniform(-0.3, 0.3, (b, 2)),
                )


def loader_throughput(root: Path, batch_size: int, workers: int, batches: int, augment: bool) -> float:
    """Samples/s of the training loader over ``batches`` batches (the first one, worker start-up, excluded)."""
    ds = load_split(root, "train", augment=AugmentConfig() if augment else None)
    loader = make_train_loader(ds, batch_size, seed=0, num_workers=workers, drop_last=True)
    it = iter(loader)
    next(it)
    t = time.perf_counter()
    n = 0
    for _ in range(batches):
        n += len(next(it)["gaze"])
    dt = time.perf_counter() - t
    del it
    return n / dt


def step_time(name: str, device: torch.device, batch_size: int, steps: int) -> dict[str, float]:
    """Median seconds per training step of model ``name`` (after one warm-up step) and samples/s."""
    torch.manual_seed(0)
    cfg = (
        ModelConfig(name=name, pretrained=False)
        if name != "gazetr_tiny"
        else ModelConfig(name=name, d_model=64, num_heads=4, dim_feedforward=128, num_layers=2, pretrained=False)
    )
    model, _ = build_model(cfg)  # random init: the benchmark times steps, it never downloads weights
    model = model.to(device).train()
    opt = make_optimizer(model, OptimConfig())
    g = torch.Generator().manual_seed(0)
    face = torch.randint(0, 256, (batch_size, 3, 224, 224), dtype=torch.uint8, generator=g).to(device)
    leye = torch.randint(0, 256, (batch_size, 3, 112, 112), dtype=torch.uint8, generator=g).to(device)
    reye = torch.randint(0, 256, (batch_size, 3, 112, 112), dtype=torch.uint8, generator=g).to(device)
    gaze = (torch.rand(batch_size, 2, generator=g) - 0.5).to(device)
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    times = []
    for i in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
            pred = model(to_float(face), to_float(leye), to_float(reye))
            loss = gaze_loss(pred, gaze)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i > 0:
            times.append(time.perf_counter() - t)
    median = statistics.median(times)
    return {
        "parameters": count_parameters(model),
        "batch_size": batch_size,
        "precision": "bf16" if use_bf16 else "fp32",
        "step_s": median,
        "samples_per_s": batch_size / median,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output JSON")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=None, help="default: 64 on CUDA, 4 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model (default: 20 on CUDA, 3 on CPU)")
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="loader worker counts (default: 0, 2, and all cores)")
    parser.add_argument("--loader-batches", type=int, default=None, help="timed loader batches (default: 40 on CUDA, 12 on CPU)")
    parser.add_argument("--models", nargs="+", default=["gazetr_tiny", "gazetr_lite", "gazetr_hybrid"])
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    gpu = device.type == "cuda"
    batch = args.batch_size or (64 if gpu else 4)
    steps = args.steps or (20 if gpu else 3)
    cores = os.cpu_count() or 1
    workers = args.workers or sorted({0, min(2, cores), cores})
    loader_batches = args.loader_batches or (40 if gpu else 12)
    t0 = time.time()
    result: dict = {
        "benchmark": "gaze-estimation throughput",
        "device": device_name(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "cpu_count": cores,
        "torch_threads": torch.get_num_threads(),
        "batch_size": batch,
        "loader": {},
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        samples = max(256, batch * (loader_batches + 2))
        write_data(root, 2, (samples + 1) // 2)
        for w in workers:
            for augment in (True, False):
                key = f"workers={w},augment={'on' if augment else 'off'}"
                result["loader"][key] = loader_throughput(root, batch, w, loader_batches, augment)
                print(f"loader {key}: {result['loader'][key]:.1f} samples/s", flush=True)
    best = max(v for k, v in result["loader"].items() if k.endswith("augment=on"))
    result["loader_best_samples_per_s"] = best
    for name in args.models:
        r = step_time(name, device, batch, steps)
        r["loader_over_model"] = best / r["samples_per_s"]
        result["models"][name] = r
        print(f"{name}: {r['step_s'] * 1000:.1f} ms/step, {r['samples_per_s']:.1f} samples/s, loader/model {r['loader_over_model']:.2f}", flush=True)
    result["seconds"] = round(time.time() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out} ({result['seconds']} s on {result['device']})")


if __name__ == "__main__":
    main()
