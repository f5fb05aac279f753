"""The temporal model's costs: does the sequence loader keep up, and what does streaming cost per frame?

    python packages/gaze-estimation/benchmarks/temporal.py --out temporal.json [--device cpu] [--workers 2]

1. **Loader vs training**, in windows/s: the training loader of ``SequenceDataset`` (windows of
   ``--window`` frames read with one slice per key, one augmentation draw per window, ``--workers``
   workers) over ``make-synthetic --sequences`` participants, against full training steps (forward,
   fp32 ``sequence_loss``, backward, AdamW) of ``gazetr_temporal`` on batches already in memory. The
   ratio loader/model above 1 means the loader keeps up. On a CPU-only machine both compete for the
   same cores; ``tools/gpu_check.sh`` measures the research config on a GPU.
2. **Streaming**: per-frame CPU seconds (one thread; wall on CUDA) of ``TemporalStream.step`` (one frame
   in, the state carried) against the single-frame model's forward on one frame, both at batch 1 in eval
   mode, interleaved, median of ``--repeats``, for the GRU and the transformer; the requirement is <= 1.2x.

Models: ``tiny`` (the demo's frame model, what the CPU can train) and ``lite`` (GazeTRLite, the research
encoder; random init). One thread (``torch.set_num_threads(1)``) unless ``--threads``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from gaze_estimation.augment import AugmentConfig
from gaze_estimation.config import OptimConfig
from gaze_estimation.data import find_h5_files, to_float
from gaze_estimation.losses import sequence_loss
from gaze_estimation.models import ModelConfig, build_model
from gaze_estimation.sequences import SequenceDataset
from gaze_estimation.synthetic_sequences import make_synthetic_sequences
from gaze_estimation.temporal import TemporalStream
from gaze_estimation.train import make_optimizer
from perception_shared.benchmarking import environment
from perception_shared.samplers import make_train_loader

FRAME_MODELS = {
    "tiny": ModelConfig(name="gazetr_tiny", tiny_width=8, d_model=64, num_layers=2, num_heads=4, dim_feedforward=128, dropout=0.0, pretrained=False),
    "lite": ModelConfig(name="gazetr_lite", pretrained=False),
}


def temporal_config(frame: ModelConfig, kind: str) -> ModelConfig:
    return replace(frame, name="gazetr_temporal", frame_model=frame.name, temporal=kind)


def loader_windows_per_s(root: Path, window: int, batch: int, workers: int, batches: int) -> float:
    """Windows/s of the training loader over ``batches`` batches (the first, worker start-up, excluded)."""
    ds = SequenceDataset(find_h5_files(root, "train"), length=window, stride=window // 2, augment=AugmentConfig())
    loader = make_train_loader(ds, batch, seed=0, num_workers=workers, drop_last=True)
    it = iter(loader)
    next(it)
    t, n = time.perf_counter(), 0
    for _ in range(batches):
        try:
            n += len(next(it)["face"])
        except StopIteration:
            break
    return n / (time.perf_counter() - t)


def train_windows_per_s(cfg: ModelConfig, window: int, batch: int, steps: int, device: torch.device) -> float:
    """Windows/s of full training steps of ``gazetr_temporal`` (median step time after one warm-up step)."""
    model, _ = build_model(cfg, window=window)
    model.to(device).train()
    opt = make_optimizer(model, OptimConfig())
    g = torch.Generator().manual_seed(0)
    face = torch.randint(0, 256, (batch, window, 3, 224, 224), dtype=torch.uint8, generator=g).to(device)
    eye = torch.randint(0, 256, (batch, window, 3, 112, 112), dtype=torch.uint8, generator=g).to(device)
    gaze = (torch.rand(batch, window, 2, generator=g) * 0.4 - 0.2).to(device)
    valid = torch.ones(batch, window, dtype=torch.bool, device=device)
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = sequence_loss(model(to_float(face), to_float(eye), to_float(eye)), gaze, valid)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return batch / statistics.median(times[1:])


@torch.no_grad()
def per_frame_seconds(frame_cfg: ModelConfig, repeats: int, device: torch.device) -> dict[str, float]:
    """Median CPU seconds per frame at batch 1 of the single-frame model and of each stream's step.

    Interleaved (single, GRU, transformer, single, ...) so that a change of load hits all alike, and CPU
    time of this process (one thread) rather than wall time, which other sessions on the machine inflate.
    The streams run on: their state (a transformer's cache up to its window) is there as live.
    """
    g = torch.Generator().manual_seed(0)
    face = torch.rand(1, 3, 224, 224, generator=g).to(device)
    eye = torch.rand(1, 3, 112, 112, generator=g).to(device)
    single = build_model(frame_cfg)[0].to(device).eval()
    streams = {kind: TemporalStream(build_model(temporal_config(frame_cfg, kind), window=16)[0].to(device)) for kind in ("gru", "transformer")}
    calls = {"single_frame": lambda: single(face, eye, eye), **{f"stream_{k}": (lambda s=s: s.step(face, eye, eye)) for k, s in streams.items()}}
    times: dict[str, list[float]] = {k: [] for k in calls}
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    for i in range(repeats + 20):  # 20 warm-up rounds fill the transformer's cache to its window
        for name, call in calls.items():
            t = clock()
            call()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 20:
                times[name].append(clock() - t)
    return {f"{k}_s_per_frame": statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="temporal.json")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="loader workers (default 2: this VM's cores)")
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--batch", type=int, default=2, help="windows per training batch (default 2 on CPU)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--models", nargs="+", default=list(FRAME_MODELS), choices=list(FRAME_MODELS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result: dict = {"environment": environment(device), "window": args.window, "batch_windows": args.batch, "workers": args.workers}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        windows_needed = args.batch * 12
        make_synthetic_sequences(root, train_participants=2, val_participants=0, steps=2,
                                 frames_per_step=args.window + (args.window // 2) * (windows_needed // 4), seed=0)
        loader = loader_windows_per_s(root, args.window, args.batch, args.workers, batches=10)
    result["loader_windows_per_s"] = loader
    result["models"] = {}
    for name in args.models:
        frame = FRAME_MODELS[name]
        train = train_windows_per_s(temporal_config(frame, "gru"), args.window, args.batch, args.steps, device)
        entry = {"train_windows_per_s": train, "loader_over_model": loader / train, **per_frame_seconds(frame, args.repeats, device)}
        for kind in ("gru", "transformer"):
            entry[f"stream_{kind}_over_single"] = entry[f"stream_{kind}_s_per_frame"] / entry["single_frame_s_per_frame"]
        result["models"][name] = entry
        print(name, json.dumps(entry, indent=1), flush=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
