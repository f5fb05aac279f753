"""Ready for the GPU on the first try: a few real training steps per model, checked for hidden syncs.

Each package describes its research-size model, its DataLoader over synthetic data and its training step
as a ``GpuCheckSpec``; ``run_check`` then, on the given device:

* times the loader alone (samples/s with the configured workers, after its first batch) and the model's
  training step alone (samples/s on one batch already on the device, after warm-up), and requires the
  loader to be at least ``min_loader_ratio`` (2) times faster, so the GPU never waits for data;
* runs the steps under bf16 autocast on CUDA (fp32 on CPU) with
  ``torch.cuda.set_sync_debug_mode("error")``, so any host-device synchronization inside the step
  (``.item()``, a ``bool`` of a tensor, a data-dependent shape, a blocking copy of host memory to the
  device) fails with its stack instead of silently stalling the GPU. Every step is checked except the
  very first: it does the one-time work a model may do on its first call (constant matrices built on the
  host and copied over once, cached by size), which is not a per-step stall;
* records peak memory (``torch.cuda.max_memory_allocated``; peak RSS on CPU).

``check_process_group`` initializes the NCCL (CUDA) or gloo (CPU) process group with world size 1 and
all-reduces a tensor. ``tools/gpu_check.sh`` runs every package's spec and writes one JSON. With
``--device cpu`` the same code path runs in fp32 (the CI dry run), so a first GPU run only tests what a
GPU adds.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .training import StepInfo, StepOutput, to_device


@dataclass
class GpuCheckSpec:
    """One model's check: built by ``<package>.gpu_check.build_spec(device, workdir, steps=...)``.

    ``step_fn(model, batch, info)`` is the package's own training step (returns ``StepOutput`` or a loss
    tensor); ``batch_size`` is the number of samples in one batch of ``loader``.
    """

    name: str
    model: nn.Module
    loader: torch.utils.data.DataLoader
    step_fn: Callable[[nn.Module, Any, StepInfo], StepOutput | torch.Tensor]
    batch_size: int
    optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer] | None = None
    grad_clip: float | None = 1.0
    notes: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def sync_debug(device: torch.device) -> Iterator[None]:
    """Turn any host-device synchronization on ``device`` into an error while the block runs."""
    if device.type != "cuda":
        yield
        return
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _loss(out: StepOutput | torch.Tensor) -> torch.Tensor:
    return out.loss if isinstance(out, StepOutput) else out


def loader_throughput(loader: torch.utils.data.DataLoader, batches: int, batch_size: int) -> dict[str, float]:
    """Samples/s of the loader alone in steady state.

    The first batch (worker start-up) and the batches the workers prefetched while it was made are not
    timed; then ``batches`` batches are. A loader that runs out starts a new pass, whose start-up is
    timed: that errs on the side of a slower loader.
    """

    def batches_forever() -> Iterator[Any]:
        while True:
            yielded = False
            for b in loader:
                yielded = True
                yield b
            if not yielded:
                raise ValueError("the loader yields no batch")

    stream = batches_forever()
    prefetched = loader.num_workers * (loader.prefetch_factor or 2) if loader.num_workers else 0
    for _ in range(1 + prefetched):
        next(stream)
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    elapsed = time.perf_counter() - start
    stream.close()  # shuts the workers down now, not at garbage collection
    return {"batches": batches, "seconds": elapsed, "samples_per_s": batches * batch_size / elapsed}


def run_check(
    spec: GpuCheckSpec,
    device: torch.device,
    *,
    steps: int = 5,
    warmup: int = 2,
    precision: str | None = None,
    min_loader_ratio: float = 2.0,
) -> dict[str, Any]:
    """Train ``spec.model`` for ``warmup + steps`` steps on ``device``; returns the figures and problems."""
    precision = precision or ("bf16" if device.type == "cuda" else "fp32")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]
    result: dict[str, Any] = {"name": spec.name, "device": str(device), "precision": precision, "notes": spec.notes, "problems": []}
    model = spec.model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    result["parameters"] = sum(p.numel() for p in model.parameters())
    result["trainable_parameters"] = sum(p.numel() for p in params)
    optimizer = (spec.optimizer or (lambda ps: torch.optim.AdamW(ps, lr=1e-4)))(params)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    batch = to_device(next(iter(spec.loader)), device)
    autocast = (
        (lambda: torch.autocast(device_type=device.type, dtype=dtype)) if dtype is not None else contextlib.nullcontext
    )

    def one_step(i: int) -> None:
        with sync_debug(device) if i > 0 else contextlib.nullcontext():
            with autocast():
                loss = _loss(spec.step_fn(model, batch, StepInfo(0, i, i)))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if spec.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, spec.grad_clip)
            optimizer.step()

    try:
        for i in range(warmup):
            one_step(i)
        _synchronize(device)
        start = time.perf_counter()
        for i in range(steps):
            one_step(warmup + i)
        _synchronize(device)
        elapsed = time.perf_counter() - start
        result["sync_checked_steps"] = warmup + steps - 1
        result["step_seconds"] = elapsed / steps
        result["model_samples_per_s"] = steps * spec.batch_size / elapsed
    except RuntimeError as e:
        result["problems"].append(f"training step failed: {type(e).__name__}: {e}")
        result["traceback"] = traceback.format_exc()
        return result
    result["peak_memory_mb"] = _peak_memory_mb(device)
    loss_value = float(_loss(spec.step_fn(model, batch, StepInfo(0, 0, 0))).detach().float())  # outside the check
    result["final_loss"] = loss_value
    if loss_value != loss_value:
        result["problems"].append("the loss is NaN after the check's steps")
    result["loader"] = loader_throughput(spec.loader, max(steps, 3), spec.batch_size)
    result["loader_workers"] = spec.loader.num_workers
    ratio = result["loader"]["samples_per_s"] / result["model_samples_per_s"]
    result["loader_to_model_ratio"] = ratio
    if ratio < min_loader_ratio:
        result["problems"].append(
            f"the loader ({result['loader']['samples_per_s']:.1f} samples/s with {spec.loader.num_workers} workers) is "
            f"only {ratio:.2f}x the model's speed ({result['model_samples_per_s']:.1f} samples/s); need >= {min_loader_ratio}x"
        )
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_process_group(device: torch.device) -> dict[str, Any]:
    """NCCL (CUDA) or gloo (CPU) with world size 1: init, all-reduce, destroy."""
    import torch.distributed as dist

    backend = "nccl" if device.type == "cuda" else "gloo"
    result: dict[str, Any] = {"backend": backend, "problems": []}
    store = dist.TCPStore("127.0.0.1", _free_port(), 1, True)
    try:
        start = time.perf_counter()
        dist.init_process_group(backend, store=store, rank=0, world_size=1, device_id=device if device.type == "cuda" else None)
        t = torch.arange(4, dtype=torch.float32, device=device)
        dist.all_reduce(t)
        _synchronize(device)
        if t.cpu().tolist() != [0.0, 1.0, 2.0, 3.0]:
            result["problems"].append(f"all_reduce over one rank changed the tensor: {t.cpu().tolist()}")
        result["seconds"] = time.perf_counter() - start
        if backend == "nccl":
            result["nccl_version"] = ".".join(map(str, torch.cuda.nccl.version()))
    except Exception as e:  # the report must say what failed, not stop the other checks
        result["problems"].append(f"{backend} process group failed: {type(e).__name__}: {e}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return result


def environment(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "device": str(device),
        "cuda_available": torch.cuda.is_available(),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gb=props.total_memory / 2**30, cuda=torch.version.cuda,
                    bf16_supported=torch.cuda.is_bf16_supported())
    return info
