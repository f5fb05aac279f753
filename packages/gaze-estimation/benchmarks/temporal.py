"""The temporal model's costs: does the sequence loader keep up, what does streaming cost per frame, what batch fits?

    python packages/gaze-estimation/benchmarks/temporal.py --out temporal.json [--device cpu] [--workers 2]
        [--sizes tiny research] [--parts loader streaming memory]

Sizes: ``tiny`` is ``configs/temporal_demo.yaml`` (the demo's frame model, what the CPU can train),
``research`` is ``configs/eve_temporal.yaml`` (GazeTRLite, random init here); each with its own window
(``data.sequence_length``) and temporal module settings, for both ``model.temporal`` kinds.

1. **loader**, in windows/s: the training loader of ``SequenceDataset`` (windows read with one slice per
   key, one augmentation draw per window, ``--workers`` workers) over ``make-synthetic --sequences``
   participants, against full training steps (forward, fp32 ``sequence_loss``, backward, AdamW) of
   ``gazetr_temporal`` on batches already in memory. The ratio loader/model above 1 means the loader
   keeps up. On a CPU-only machine both compete for the same cores; ``tools/gpu_check.sh`` measures the
   research config on a GPU.
2. **streaming**: per-frame CPU seconds (one thread; wall on CUDA) of ``TemporalStream.step`` (one frame
   in, the state carried) against the single-frame model's forward on one frame, both at batch 1 in eval
   mode, interleaved round by round, median of ``--repeats`` rounds after the streams have filled their
   window; also the temporal module's step alone. The requirement is stream/single <= 1.2.
3. **memory** (research size): the bytes autograd saves for the backward pass (the activations) of one
   training window in bf16 autocast, counted by a ``saved_tensors_hooks`` pack hook (each storage once),
   plus parameters, gradients and AdamW's two moments in fp32; the batch of windows that fits a GPU of
   ``--gpu-gib`` with ``--headroom`` of it left for the allocator's fragmentation, cuDNN/cuBLAS workspaces
   and the CUDA context. Activations of the encoder scale with frames, so this is linear in the batch.
   Measured on the CPU (CPU autocast keeps the same tensors as CUDA's for these layers); a GPU's peak
   (``tools/gpu_check.sh``) is the check.

One thread (``torch.set_num_threads(1)``) unless ``--threads``.
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
from gaze_estimation.cli import load_train_config
from gaze_estimation.config import OptimConfig, TrainConfig
from gaze_estimation.data import find_h5_files, to_float
from gaze_estimation.losses import sequence_loss
from gaze_estimation.models import ModelConfig, build_model
from gaze_estimation.sequences import SequenceDataset
from gaze_estimation.synthetic_sequences import make_synthetic_sequences
from gaze_estimation.temporal import TemporalStream
from gaze_estimation.train import make_optimizer
from perception_shared.benchmarking import environment
from perception_shared.samplers import make_train_loader

SIZES = {"tiny": "temporal_demo", "research": "eve_temporal"}
KINDS = ("gru", "transformer")


def size_config(size: str) -> TrainConfig:
    """The shipped config of a size, without pretrained weights (they change no cost measured here)."""
    return load_train_config(SIZES[size], ["model.pretrained=false"])


def frame_config(cfg: ModelConfig) -> ModelConfig:
    """The single-frame model that ``cfg``'s ``gazetr_temporal`` runs on every frame."""
    return replace(cfg, name=cfg.frame_model)


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
def per_frame_seconds(cfg: ModelConfig, window: int, repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds per frame at batch 1 of the single-frame model, of each stream's step and of each
    temporal module's step alone.

    Interleaved (single, GRU stream, transformer stream, their temporal modules, single, ...) so that a
    change of load hits all alike, and CPU time of this process (one thread) rather than wall time,
    which other sessions on the machine inflate. ``2 window`` warm-up rounds fill the streams' state
    (a transformer's ring of ``window`` frames) so that the rounds measured are the steady state.
    """
    g = torch.Generator().manual_seed(0)
    face = torch.rand(1, 3, 224, 224, generator=g).to(device)
    eye = torch.rand(1, 3, 112, 112, generator=g).to(device)
    single = build_model(frame_config(cfg))[0].to(device).eval()
    streams = {kind: TemporalStream(build_model(replace(cfg, temporal=kind), window=window)[0].to(device)) for kind in KINDS}
    feature = torch.rand(1, 1, cfg.d_model, generator=g).to(device)
    modules = {kind: (s.model.temporal, s.model.temporal(feature)[1]) for kind, s in streams.items()}
    calls = {
        "single_frame": lambda: single(face, eye, eye),
        **{f"stream_{k}": (lambda s=s: s.step(face, eye, eye)) for k, s in streams.items()},
        **{f"module_{k}": (lambda m=m, st=st: m(feature, st)) for k, (m, st) in modules.items()},
    }
    times: dict[str, list[float]] = {k: [] for k in calls}
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    warm = 2 * window
    for i in range(repeats + warm):
        for name, call in calls.items():
            t = clock()
            call()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warm:
                times[name].append(clock() - t)
    return {f"{k}_s_per_frame": statistics.median(v) for k, v in times.items()}


def activation_bytes_per_window(cfg: ModelConfig, window: int, device: torch.device) -> int:
    """Bytes autograd saves for backward in one training step of one window (bf16 autocast), each storage once."""
    model = build_model(cfg, window=window)[0].to(device).train()
    g = torch.Generator().manual_seed(0)
    face = torch.rand(1, window, 3, 224, 224, generator=g).to(device)
    eye = torch.rand(1, window, 3, 112, 112, generator=g).to(device)
    seen: dict[tuple[int, str], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[(storage.data_ptr(), str(t.device))] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast(device.type, dtype=torch.bfloat16):
        out = model(face, eye, eye)
    del out
    return sum(seen.values())


def batch_that_fits(cfg: ModelConfig, window: int, device: torch.device, gpu_gib: float, headroom: float) -> dict[str, float]:
    """The largest batch of windows whose activations, parameters, gradients and AdamW state fit ``gpu_gib`` less ``headroom``."""
    act = activation_bytes_per_window(cfg, window, device)
    params = sum(p.numel() for p in build_model(cfg, window=window)[0].parameters())
    fixed = params * 4 * 4  # fp32 weights, gradients and AdamW's two moments; autocast's bf16 weight copies are in act
    budget = gpu_gib * 2**30 * (1 - headroom) - fixed
    return {
        "window": window, "activation_gib_per_window": act / 2**30, "parameters": params, "fixed_gib": fixed / 2**30,
        "gpu_gib": gpu_gib, "headroom": headroom, "batch_windows_that_fit": int(budget // act),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="temporal.json")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="loader workers (default 2: this VM's cores)")
    parser.add_argument("--window", type=int, default=None, help="frames per window (default: each config's data.sequence_length)")
    parser.add_argument("--batch", type=int, default=2, help="windows per training batch of the loader part (default 2 on CPU)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=200, help="streaming rounds measured (default 200)")
    parser.add_argument("--gpu-gib", type=float, default=80.0)
    parser.add_argument("--headroom", type=float, default=0.15, help="share of the GPU left free (default 0.15)")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--parts", nargs="+", default=["loader", "streaming", "memory"], choices=["loader", "streaming", "memory"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result: dict = {"environment": environment(device), "args": vars(args), "sizes": {}}
    for size in args.sizes:
        cfg = size_config(size)
        window, model = args.window or cfg.data.sequence_length, cfg.model
        entry: dict = {"config": SIZES[size], "window": window}
        if "loader" in args.parts:
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                windows_needed = args.batch * 12
                make_synthetic_sequences(root, train_participants=2, val_participants=0, steps=2,
                                         frames_per_step=window + (window // 2) * (windows_needed // 4), seed=0)
                entry["loader_windows_per_s"] = loader_windows_per_s(root, window, args.batch, args.workers, batches=10)
            entry["train_windows_per_s"] = train_windows_per_s(model, window, args.batch, args.steps, device)
            entry["loader_over_model"] = entry["loader_windows_per_s"] / entry["train_windows_per_s"]
        if "streaming" in args.parts:
            entry.update(per_frame_seconds(model, window, args.repeats, device))
            for kind in KINDS:
                entry[f"stream_{kind}_over_single"] = entry[f"stream_{kind}_s_per_frame"] / entry["single_frame_s_per_frame"]
        if "memory" in args.parts and size == "research":
            entry["memory"] = batch_that_fits(model, window, device, args.gpu_gib, args.headroom)
        result["sizes"][size] = entry
        print(size, json.dumps(entry, indent=1), flush=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
