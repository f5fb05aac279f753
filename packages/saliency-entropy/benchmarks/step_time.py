"""Training-step time with the bias-map entropy regularizer on every step vs without it, in one process.

A step is the package's own training step (``saliency_entropy.train.make_step_fn``: forward, NLL,
information gain, and for the regularized side the bias map of the 16 near-uniform images and its
entropy) followed by backward and the Adam update, on random images with 60 random fixations each
(data loading excluded). The configuration is the research config ``entropy_reg.yaml`` (DenseNet-201,
DeepGaze III's three denseblock4 layers, 768x1024 images, batch 4, 16 bias images, every step
regularized) with a randomly initialized backbone (timing only; the weights do not change the cost).

Both sides run in the same process, interleaved (A B A B ...) after a warm-up, in ``--repeats`` blocks of
``--pairs`` pairs. The run's ratio is min(regularized) / min(baseline) over all its pairs, and the goal is
that every run's ratio is <= 1.05. The minimum, because on a machine shared with other jobs contention
only ever adds time to a step (cache and memory-bandwidth sharing inflate even CPU time, by up to 30% per
step on the 2-core development machine), so the fastest step of each side is the best estimate of its own
cost. A second, independent estimate is recorded beside it: 1 + the median over pairs of (regularized -
baseline), the two steps of a pair being adjacent in time, divided by the median baseline step (slow
drifts of the machine's load cancel in each difference). Each block's min ratio shows the spread within
the run. On CUDA the times are wall-clock (synchronized); on CPU they are each step's process CPU time
(user + system, all threads), which other jobs inflate less than wall-clock time (both are recorded). Each
step also records the minor page faults it caused (``getrusage``): the cause of the bimodal ratios
measured before (``saliency_entropy.allocator``). ``--no-retain-host-memory`` measures with glibc's
default allocator settings, to show that cause.

    python packages/saliency-entropy/benchmarks/step_time.py --out step_time.json [--device auto]

Writes JSON naming the device, torch version and thread count.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from perception_shared.benchmarking import environment
from perception_shared.config import load_config, resolve_config_path
from perception_shared.training import StepInfo
from saliency_entropy.allocator import retain_freed_host_memory
from saliency_entropy.config import TrainConfig
from saliency_entropy.registry import build_model
from saliency_entropy.train import make_step_fn

GOAL = 1.05
FIXATIONS = 60


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--config", default="entropy_reg", help="config name or path (default: entropy_reg)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--repeats", type=int, default=4, help="blocks of interleaved pairs (default 4)")
    p.add_argument("--pairs", type=int, default=None, help="pairs per block (default: 10 on CUDA, 8 on CPU)")
    p.add_argument("--warmup", type=int, default=2, help="untimed pairs first (default 2)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument(
        "--no-retain-host-memory",
        action="store_true",
        help="leave glibc's allocator settings as they are (shows the page-fault cause of the old bimodality)",
    )
    args = p.parse_args()

    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    pairs = args.pairs or (10 if use_cuda else 8)
    if not use_cuda:
        torch.set_num_threads(args.threads)
    retained = False if args.no_retain_host_memory else retain_freed_host_memory()
    overrides = [*args.overrides, "model.pretrained=false", "entropy.compute_every=1"]
    cfg = load_config(TrainConfig, resolve_config_path("saliency_entropy", args.config), overrides)
    cfg.entropy.weight = cfg.entropy.weight or 1.0
    plain = load_config(TrainConfig, resolve_config_path("saliency_entropy", args.config), overrides)
    plain.entropy.weight = 0.0
    size = (cfg.data.image_size[0], cfg.data.image_size[1])
    batch = cfg.data.batch_size
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.entropy).to(device).train()
    model.set_center_prior(torch.ones_like(model.center_prior))
    optimizer = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=cfg.optim.lr)
    sides = {"baseline": make_step_fn(plain, model), "regularized": make_step_fn(cfg, model)}
    generator = torch.Generator().manual_seed(0)
    data = {
        "image": torch.rand(batch, 3, *size, generator=generator).to(device),
        "fixations": (
            torch.rand(batch, FIXATIONS, 2, generator=generator, dtype=torch.float64)
            * torch.tensor([size[1], size[0]], dtype=torch.float64)
        ).to(device),
        "mask": torch.ones(batch, FIXATIONS, dtype=torch.bool, device=device),
    }

    def step(side: str, index: int) -> tuple[float, float, int]:
        if use_cuda:
            torch.cuda.synchronize()
        faults, t, c = _faults(), time.perf_counter(), time.process_time()
        out = sides[side](model, data, StepInfo(0, index, index))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        if use_cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t, time.process_time() - c, _faults() - faults

    t0 = time.perf_counter()
    for i in range(args.warmup):
        step("baseline", i)
        step("regularized", i)
    warmup_s = time.perf_counter() - t0
    blocks: list[dict[str, Any]] = []
    index = args.warmup
    for _ in range(args.repeats):
        rec: dict[str, dict[str, list[float]]] = {s: {"wall_s": [], "cpu_s": [], "page_faults": []} for s in sides}
        for _ in range(pairs):
            for side in sides:
                w, c, f = step(side, index)
                rec[side]["wall_s"].append(w)
                rec[side]["cpu_s"].append(c)
                rec[side]["page_faults"].append(f)
            index += 1
        basis = "wall_s" if use_cuda else "cpu_s"
        low = {s: min(rec[s][basis]) for s in sides}
        med = {s: statistics.median(rec[s][basis]) for s in sides}
        blocks.append(
            {
                "ratio": low["regularized"] / low["baseline"],
                "ratio_of_medians": med["regularized"] / med["baseline"],
                "min_step_s": low,
                "median_step_s": med,
                "median_wall_s": {s: statistics.median(rec[s]["wall_s"]) for s in sides},
                "median_page_faults": {s: statistics.median(rec[s]["page_faults"]) for s in sides},
                "steps": rec,
            }
        )
    ratios = [b["ratio"] for b in blocks]
    basis = "wall_s" if use_cuda else "cpu_s"
    steps = {s: [x for b in blocks for x in b["steps"][s][basis]] for s in sides}
    all_med = {s: statistics.median(v) for s, v in steps.items()}
    all_min = {s: min(v) for s, v in steps.items()}
    ratio = all_min["regularized"] / all_min["baseline"]
    extra = statistics.median(r - b for b, r in zip(steps["baseline"], steps["regularized"]))
    ratio_paired = 1.0 + extra / all_med["baseline"]
    result = {
        "benchmark": "saliency-entropy step_time",
        **environment(device),
        "config": args.config,
        "backbone": cfg.model.backbone,
        "layers": cfg.model.layers,
        "backbone_weights": "random (timing only)",
        "image_size": list(size),
        "batch": batch,
        "bias_samples": cfg.entropy.n_samples,
        "retain_host_memory": retained,
        "repeats": args.repeats,
        "pairs_per_repeat": pairs,
        "warmup_s": warmup_s,
        "ratio_basis": "wall-clock" if use_cuda else "process CPU time",
        "ratio_statistic": "min(regularized) / min(baseline) over all pairs of the run",
        "ratio": ratio,
        "ratio_paired_median": ratio_paired,
        "regularizer_cost_s": {"difference_of_minima": all_min["regularized"] - all_min["baseline"],
                               "median_paired_difference": extra},
        "ratios_per_repeat": ratios,
        "ratios_of_medians_per_repeat": [b["ratio_of_medians"] for b in blocks],
        "min_step_s": all_min,
        "median_step_s": all_med,
        "images_per_s": {s: batch / v for s, v in all_min.items()},
        "goal_ratio": GOAL,
        "meets_goal": max(ratio, ratio_paired) <= GOAL,
        "blocks": blocks,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    faults = {s: statistics.median(x for b in blocks for x in b["steps"][s]["page_faults"]) for s in sides}
    print(
        f"{result['device']} ({result['ratio_basis']}, retain host memory: {retained}): fastest baseline step "
        f"{all_min['baseline'] * 1000:.0f} ms, regularized every step {all_min['regularized'] * 1000:.0f} ms (medians "
        f"{all_med['baseline'] * 1000:.0f} / {all_med['regularized'] * 1000:.0f} ms); "
        f"ratio {ratio:.3f} (paired-median estimate {ratio_paired:.3f}; goal <= {GOAL}; per repeat "
        f"{', '.join(f'{r:.3f}' for r in ratios)}); "
        f"median page faults per step {faults['baseline']:.0f} / {faults['regularized']:.0f}"
    )


if __name__ == "__main__":
    main()
