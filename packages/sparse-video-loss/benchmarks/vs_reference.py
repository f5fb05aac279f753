"""Our SimVP training step against the original implementation, in one process, interleaved.

Run:  SIMVP_REF_PATH=/path/to/OpenSTL python packages/sparse-video-loss/benchmarks/vs_reference.py --out ref.json
      SIMVP_REF_PATH=/path/to/SimVP   python ... (the CVPR 2022 code, github.com/A4Bio/SimVP: IncepU only)

``SIMVP_REF_PATH`` is a checkout (or ``git archive``) of the reference, outside this repository; nothing of
it is copied here. From OpenSTL only ``openstl/models/simvp_model.py`` and the ``openstl.modules`` package
are imported (its other models need packages the study does not use); from A4Bio/SimVP ``model.py``.

The study's training step at the study's size: batch 8, inputs ``(10, 1, 32, 32)``, hid_S 64, hid_T 256,
N_S 4, N_T 8, forward, composite loss, backward, gradient clipping at 1.0, Adam (lr 1e-3, wd 1e-5). Both
sides run the same step; only the model implementation and our opt-in speed-ups differ:

* ``ours``: the package's default (fp32, NCHW, eager): numerically what every shipped config runs;
* ``ours+channels_last``: ``perf.channels_last`` (NHWC convolutions; float results differ in the last bits);
* ``ours+bf16``: bf16 autocast of the forward pass (``perf.cpu_bf16`` on CPU, ``loop.precision: bf16`` on
  CUDA); the loss, gradients and Adam stay fp32 (a CPU needs bf16 units, avx512_bf16 or AMX, to gain);
* ``ours+bf16+channels_last``: both;
* ``ours+compile`` (``--compile``): ``perf.compile`` (torch.compile, inductor); its compile time is
  reported apart and every timed step comes after warm-up.

Each round times one step of every variant in turn (the reference first), so machine load hits all of
them alike; the ratio of a variant is the median over rounds of its time / the reference's time in the
same round. With the reference's weights copied into our model (same architecture, parameters matched
by position), the forward outputs are compared too: 0 difference means the same function.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from perception_shared.benchmarking import device_name
from perception_shared.training import StepInfo
from sparse_video_loss.config import PerfConfig
from sparse_video_loss.losses import get_loss_function
from sparse_video_loss.models import SimVP, count_parameters
from sparse_video_loss.train import apply_perf, step_fn

IN_SHAPE = (10, 1, 32, 32)
SIZES = {"hid_S": 64, "hid_T": 256, "N_S": 4, "N_T": 8}
ENV = "SIMVP_REF_PATH"


def _exec_file(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"error: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_reference(root: Path) -> tuple[str, dict[str, Callable[[], nn.Module]], list[Path]]:
    """``(kind, {model_type: builder}, source files)`` of the reference checkout at ``root``."""
    openstl_model = root / "openstl" / "models" / "simvp_model.py"
    original = root / "model.py"
    if openstl_model.is_file():
        sys.path.insert(0, str(root))
        importlib.import_module("openstl.modules")  # the package simvp_model.py imports its blocks from
        module = _exec_file("simvp_reference_openstl", openstl_model)
        builders = {t: (lambda t=t: module.SimVP_Model(IN_SHAPE, model_type=t, **SIZES)) for t in ("incepu", "gsta")}
        return "OpenSTL SimVP_Model", builders, [openstl_model, root / "openstl" / "modules" / "simvp_modules.py"]
    if original.is_file() and "class SimVP" in original.read_text():
        sys.path.insert(0, str(root))  # model.py imports its blocks from modules.py beside it
        module = _exec_file("simvp_reference_original", original)
        return "A4Bio/SimVP (CVPR 2022) SimVP", {"incepu": lambda: module.SimVP(IN_SHAPE, **SIZES)}, [original, root / "modules.py"]
    raise SystemExit(f"error: {ENV}={root} is neither an OpenSTL checkout (openstl/models/simvp_model.py) nor A4Bio/SimVP (model.py)")


def _our_order(keys: list[str]) -> list[str]:
    """Our state-dict keys in the reference's registration order: OpenSTL registers each gSTA block's 1x1
    reduction right after the block, we keep them in a separate list (everything else is in the same order)."""

    def translator(k: str) -> bool:
        return k.startswith(("hid.blocks.", "hid.reductions."))

    slots = [i for i, k in enumerate(keys) if translator(k)]
    moved = sorted((k for k in keys if translator(k)),
                   key=lambda k: (int(k.split(".")[2]), k.startswith("hid.reductions."), keys.index(k)))
    out = list(keys)
    for i, k in zip(slots, moved):
        out[i] = k
    return out


def same_function(ours: nn.Module, reference: nn.Module, device: torch.device) -> float | None:
    """Max |difference| of the outputs with the reference's weights copied into ours (None: shapes differ)."""
    ref_items = list(reference.state_dict().values())
    our_keys = _our_order(list(ours.state_dict()))
    if len(ref_items) != len(our_keys) or any(ours.state_dict()[k].shape != v.shape for k, v in zip(our_keys, ref_items)):
        return None
    ours.load_state_dict(dict(zip(our_keys, ref_items)))
    x = torch.rand(2, *IN_SHAPE, generator=torch.Generator().manual_seed(0)).to(device)
    ours.eval()
    reference.eval()
    with torch.no_grad():
        diff = float((ours(x) - reference(x)).abs().max())
    ours.train()
    reference.train()
    return diff


def sparse_batch(batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets with one active pixel per frame, as the real data."""
    g = torch.Generator().manual_seed(0)
    T, C, H, W = IN_SHAPE
    frames = torch.zeros(batch, 2 * T, C, H, W)
    idx = torch.randint(H * W, (batch, 2 * T), generator=g)
    frames.view(batch, 2 * T, -1).scatter_(2, idx[..., None], 1.0)
    return frames[:, :T].contiguous().to(device), frames[:, T:].contiguous().to(device)


def make_step(model: nn.Module, device: torch.device, batch: int, *, channels_last: bool = False, bf16: bool = False,
              compile: bool = False) -> Callable[[], None]:
    """One training step as the package's Trainer runs it (``train.step_fn``, clipping, Adam), with the
    package's own opt-ins (``train.apply_perf``; bf16 through ``perf.cpu_bf16`` on CPU and, as
    ``loop.precision: bf16`` does, ``torch.autocast`` on CUDA), for our model or the reference's."""
    perf = PerfConfig(channels_last=channels_last, compile=compile, cpu_bf16=bf16)
    model = apply_perf(model.to(device).train(), perf)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-5)
    forward = step_fn(get_loss_function("composite"), perf)
    x, y = sparse_batch(batch, device)
    data = {"inputs": x, "targets": y, "target_mask": torch.ones(x.shape[:2], dtype=torch.bool, device=device)}
    cuda_bf16 = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 and device.type == "cuda" else contextlib.nullcontext
    info = StepInfo(0, 0, 0)

    def step() -> None:
        with cuda_bf16():
            loss = forward(model, data, info).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[], None], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    step()
    sync(device)
    return time.perf_counter() - start


def compare(model_type: str, build_reference: Callable[[], nn.Module], device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    reference = build_reference()
    torch.manual_seed(0)
    check = SimVP(IN_SHAPE, model_type=model_type, **SIZES)
    max_diff = same_function(check.to(device), reference.to(device), device)
    variants: dict[str, dict[str, bool]] = {
        "ours": {},
        "ours+channels_last": {"channels_last": True},
        "ours+bf16": {"bf16": True},
        "ours+bf16+channels_last": {"bf16": True, "channels_last": True},
    }
    if args.compile:
        variants["ours+compile"] = {"compile": True}
        variants["ours+compile+bf16+channels_last"] = {"compile": True, "bf16": True, "channels_last": True}
    if args.reference_opt_ins:
        variants["reference+bf16+channels_last"] = {"bf16": True, "channels_last": True}
    steps: dict[str, Callable[[], None]] = {"reference": make_step(reference, device, args.batch_size)}
    params = {"reference": count_parameters(reference)}
    warmup_s: dict[str, float] = {}
    for name, opts in variants.items():
        torch.manual_seed(0)
        model = build_reference() if name.startswith("reference") else SimVP(IN_SHAPE, model_type=model_type, **SIZES)
        params[name] = count_parameters(model)
        steps[name] = make_step(model, device, args.batch_size, **opts)
    for name, step in steps.items():
        start = time.perf_counter()
        for _ in range(args.warmup):
            step()
        sync(device)
        warmup_s[name] = time.perf_counter() - start
        print(f"{model_type}: warm-up {name}: {warmup_s[name]:.1f} s", flush=True)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(args.rounds):
        for name, step in steps.items():
            times[name].append(timed(step, device))
        print(f"{model_type}: round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {t[-1]:.3f}s" for n, t in times.items()), flush=True)
    ref = times["reference"]
    out: dict[str, Any] = {
        "model_type": model_type,
        "parameters": params,
        "same_function_max_abs_diff": max_diff,
        "warmup_seconds": warmup_s,
        "median_step_s": {n: statistics.median(t) for n, t in times.items()},
        "step_times_s": times,
        "ratio_to_reference": {},
    }
    for name, t in times.items():
        if name == "reference":
            continue
        per_round = [a / b for a, b in zip(t, ref)]
        out["ratio_to_reference"][name] = {
            "median_of_round_ratios": statistics.median(per_round),
            "ratio_of_medians": statistics.median(t) / statistics.median(ref),
            "min_round_ratio": min(per_round),
            "max_round_ratio": max(per_round),
        }
    return out


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output JSON file")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--model-types", default=None, help="comma list of incepu, gsta (default: those the reference has)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default: 7 on CPU, 30 on CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps of each variant first (default: 2 on CPU, 10 on CUDA)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile variants (minutes of compiling on a CPU)")
    parser.add_argument("--reference-opt-ins", action="store_true", help="also time the reference with bf16 + channels_last")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    args = parser.parse_args()
    root = os.environ.get(ENV)
    if not root:
        raise SystemExit(f"error: set {ENV} to a checkout of OpenSTL or A4Bio/SimVP (outside this repository)")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no CUDA device")
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    args.rounds = args.rounds or (30 if device.type == "cuda" else 7)
    args.warmup = args.warmup if args.warmup is not None else (10 if device.type == "cuda" else 2)
    torch.set_num_threads(args.threads)
    kind, builders, sources = load_reference(Path(root))
    types = args.model_types.split(",") if args.model_types else list(builders)
    unknown = [t for t in types if t not in builders]
    if unknown:
        raise SystemExit(f"error: the reference ({kind}) has no model type {', '.join(unknown)}; it has {', '.join(builders)}")
    results = [compare(t, builders[t], device, args) for t in types]
    report = {
        "benchmark": "sparse-video-loss SimVP training step vs the reference implementation",
        "reference": {"kind": kind, "path": str(Path(root).resolve()), "sources_sha256": {p.name: _sha256(p) for p in sources}},
        "device": device_name(device),
        "device_type": device.type,
        "cpu_bf16": "avx512_bf16" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else None,
        "torch": torch.__version__,
        "threads": args.threads if device.type == "cpu" else None,
        "batch_size": args.batch_size,
        "in_shape": list(IN_SHAPE),
        "model_sizes": SIZES,
        "warmup_steps": args.warmup,
        "rounds": args.rounds,
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for r in results:
        print(f"{r['model_type']} (same function: max |diff| {r['same_function_max_abs_diff']}):")
        for name, v in r["ratio_to_reference"].items():
            print(f"  {name:<32} ours / reference = {v['median_of_round_ratios']:.3f} (range {v['min_round_ratio']:.2f}-{v['max_round_ratio']:.2f})")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
