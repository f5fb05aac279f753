"""Training-step time with the bias-map entropy regularizer on every step vs without it, in one run.

A step is forward, loss, backward and Adam update of the saliency model on random images with 60
random fixations each (data loading excluded). Baseline and regularized steps alternate (A B A B ...)
after warm-up, so drift in machine load hits both alike; the ratio is median(regularized) / median(baseline)
(goal <= 1.05). On CUDA the times are wall-clock (synchronized); on CPU the ratio uses the process CPU
time of each step (all threads), which a machine shared with other jobs does not inflate the way it
inflates wall-clock time (both are reported). The bias images' backbone features are computed during
warm-up, as in training where they are computed once. Writes JSON naming the device and torch version.

    python packages/saliency-entropy/benchmarks/step_time.py --out step_time.json [--device auto]

Defaults: the real configuration (DenseNet-201 with DeepGaze III's three denseblock4 layers, 768x1024
images, batch 4, 16 bias images); 20 timed steps per mode on CUDA, 6 on CPU (about 2 minutes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from perception_shared.benchmarking import device_name
from saliency_entropy.config import EntropyConfig, ModelConfig
from saliency_entropy.losses import fixation_nll
from saliency_entropy.models import SaliencyModel


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--backbone", default="torchvision:densenet201")
    p.add_argument(
        "--layers", nargs="+", default=None, help="backbone layers (default: DeepGaze III's for DenseNet-201)"
    )
    p.add_argument(
        "--size", type=int, nargs=2, default=[768, 1024], metavar=("H", "W"), help="image size (default: 768 1024)"
    )
    p.add_argument("--batch", type=int, default=4, help="images per step (default: 4)")
    p.add_argument("--bias-samples", type=int, default=16)
    p.add_argument("--steps", type=int, default=None, help="timed steps per mode (default: 20 on CUDA, 6 on CPU)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument(
        "--threads", type=int, default=1, help="CPU threads (default 1: no OpenMP spin-waiting in the CPU times)"
    )
    args = p.parse_args()

    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    size = (args.size[0], args.size[1])
    batch = args.batch
    steps = args.steps or (20 if use_cuda else 6)
    if not use_cuda:
        torch.set_num_threads(args.threads)
    model_cfg = ModelConfig(backbone=args.backbone, **({"layers": args.layers} if args.layers else {}))
    entropy_cfg = EntropyConfig(n_samples=args.bias_samples)
    torch.manual_seed(0)
    model = SaliencyModel(model_cfg, entropy_cfg).to(device).train()
    optimizer = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=1e-4)
    images = torch.rand(batch, 3, *size, device=device)
    fix = torch.rand(batch, 60, 2, device=device, dtype=torch.float64) * torch.tensor(
        [size[1], size[0]], device=device, dtype=torch.float64
    )
    mask = torch.ones(batch, 60, dtype=torch.bool, device=device)

    def step(with_bias: bool) -> tuple[float, float]:
        if use_cuda:
            torch.cuda.synchronize()
        t, c = time.perf_counter(), time.process_time()
        logp, bias = model(images, with_bias=with_bias)
        loss = fixation_nll(logp, fix, mask, model_cfg.saliency_map_factor)
        if bias is not None:
            loss = loss - model.entropy_full_resolution(bias)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if use_cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t, time.process_time() - c

    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step(False)
        step(True)
    warmup_s = time.perf_counter() - t0
    wall: dict[str, list[float]] = {"baseline": [], "regularized": []}
    cpu: dict[str, list[float]] = {"baseline": [], "regularized": []}
    for _ in range(steps):
        for mode, with_bias in (("baseline", False), ("regularized", True)):
            w, c = step(with_bias)
            wall[mode].append(w)
            cpu[mode].append(c)
    med_wall = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    med = med_wall if use_cuda else med_cpu
    ratio = med["regularized"] / med["baseline"]
    result = {
        "benchmark": "saliency-entropy step_time",
        "device": device_name(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "backbone": model_cfg.backbone,
        "layers": model_cfg.layers,
        "backbone_weights": "random (timing only)",
        "image_size": list(size),
        "batch": batch,
        "bias_samples": args.bias_samples,
        "steps_per_mode": steps,
        "warmup_s": warmup_s,
        "ratio_basis": "wall-clock" if use_cuda else "process CPU time",
        "median_step_s": med,
        "median_wall_s": med_wall,
        "median_cpu_s": med_cpu,
        "min_wall_s": {k: min(v) for k, v in wall.items()},
        "images_per_s": {k: batch / v for k, v in med.items()},
        "ratio_regularized_to_baseline": ratio,
        "ratio_wall_median": med_wall["regularized"] / med_wall["baseline"],
        "goal_ratio": 1.05,
        "meets_goal": ratio <= 1.05,
        "step_wall_s": wall,
        "step_cpu_s": cpu,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(
        f"{result['device']} ({result['ratio_basis']}): baseline {med['baseline'] * 1000:.1f} ms/step "
        f"({batch / med['baseline']:.2f} img/s), regularized every step {med['regularized'] * 1000:.1f} ms/step; "
        f"ratio {ratio:.3f} (goal <= 1.05)"
    )


if __name__ == "__main__":
    main()
